"""userfaultfd's UFFDIO_COPY (mm/userfaultfd.c: mfill_atomic() -> mfill_atomic_pte_copy() and
shmem_mfill_atomic_pte() -> mfill_atomic_install_pte(); Linux 6.6).

It installs PTEs without the lock of any folio already in the page cache: an anonymous copy in a
private VMA (after anon_vma_prepare()), or a new shmem folio in a hole of a shared one.  NULL from
pte_offset_map_lock() is -EAGAIN, which userspace retries."""

from __future__ import annotations

from pgconform.kernel.arm import update_mmu_cache_range
from pgconform.kernel.filemap import folio_put
from pgconform.kernel.memory import anon_vma_prepare, mapped_pte
from pgconform.kernel.objects import VM_UFFD_MISSING, Pte, pmd_none, pmd_trans_huge, pte_none
from pgconform.kernel.pgalloc import __pte_alloc
from pgconform.sim.effects import Atomic, DownRead, Load, Store, Unlock, UpRead

EAGAIN, EEXIST, ENOENT = "EAGAIN", "EEXIST", "ENOENT"


def _shmem_add_new(m, t, k, f, index, value):
    """shmem_mfill_atomic_pte(): a new locked folio added to the page cache, or None (-EEXIST)."""
    if index in f.pages:
        return None
    folio = k.new_folio(f"{f.name}:{index}", 1, index, f, data=[value], locked_by=t)
    folio.refcount = 2
    f.pages[index] = folio
    before, f.content[index] = f.content[index], value
    return folio, before


def _shmem_remove(m, t, k, f, index, folio, before):
    """out_delete_from_cache: filemap_remove_folio() after a failed install."""
    del f.pages[index]
    f.content[index] = before
    folio.mapping = None
    folio_put(k, folio)


def _new_anon(m, t, k, mm, addr, value):
    folio = k.new_folio(f"uffd-anon({mm.name}:{addr})", 1, anon=True, data=[value])
    folio.refcount = 1
    return folio


def mfill_atomic_install_pte(k, vma, pmdp, addr, folio, idx):
    """mm/userfaultfd.c: mfill_atomic_install_pte() (6.6): map ``folio`` at ``addr`` if the entry
    is still none, under pte_offset_map_lock(); -EAGAIN if the table cannot be mapped."""
    mm = vma.mm
    pte, ptl = yield from k.impl.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return EAGAIN
    ret = EEXIST
    if pte_none((yield Load(pte.table, pte.idx))):
        yield Store(pte.table, pte.idx, Pte(folio, idx, write=True))
        mapped_pte(k, mm, addr, folio, idx)
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vma, addr, pte)
        ret = 0
    yield from k.impl.pte_unmap_unlock(k, pte, ptl)
    return ret


def mfill_atomic_copy(k, mm, addr, value):
    """mm/userfaultfd.c: mfill_atomic_copy() (6.6) of one page holding ``value`` at ``addr``,
    retried by userspace while it returns -EAGAIN."""
    while True:
        ret = yield from _mfill_atomic_copy_once(k, mm, addr, value)
        if ret != EAGAIN:
            return ret


def _mfill_atomic_copy_once(k, mm, addr, value):
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None or VM_UFFD_MISSING not in vma.flags:
        yield UpRead(mm.mmap_lock)
        return ENOENT
    if not vma.shared:
        yield from anon_vma_prepare(k, vma)
    pmdp = mm.pmd_offset(addr, k.geo)
    if pmd_none((yield from k.impl.pmdp_get_lockless(k, pmdp))):
        yield from __pte_alloc(k, mm, pmdp)
    pmdval = yield from k.impl.pmdp_get_lockless(k, pmdp)
    if pmd_none(pmdval) or pmd_trans_huge(pmdval):
        yield UpRead(mm.mmap_lock)
        return EEXIST
    if vma.shared:
        index = vma.linear_page_index(addr)
        added = yield Atomic(f"shmem_add_to_page_cache({vma.file!r}, {index})", _shmem_add_new,
                             (k, vma.file, index, value), touches=(vma.file,))
        if added is None:
            ret = EEXIST
        else:
            folio, before = added
            ret = yield from mfill_atomic_install_pte(k, vma, pmdp, addr, folio, 0)
            if ret != 0:
                yield Atomic(f"filemap_remove_folio({folio!r})", _shmem_remove,
                             (k, vma.file, index, folio, before), touches=(vma.file,))
                folio_put(k, folio)
            yield Unlock(folio.lock)
            # on success our reference became the mapping's
    else:
        folio = yield Atomic(f"alloc anon folio for {addr}", _new_anon, (k, mm, addr, value))
        ret = yield from mfill_atomic_install_pte(k, vma, pmdp, addr, folio, 0)
        if ret != 0:
            folio_put(k, folio)
    yield UpRead(mm.mmap_lock)
    return ret
