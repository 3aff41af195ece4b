"""Page faults and zapping on file-backed (shmem) VMAs: mm/memory.c, mm/shmem.c and
mm/huge_memory.c, Linux 6.6.

Faults take mmap_lock for read, map page-cache pages under their folio lock, allocate a PTE table when
the PMD is none, and react to a NULL map the kernel's way (return and let the access fault again).
Private VMAs get anonymous copies on write (do_cow_fault(), wp_page_copy()), which sets up
``anon_vma`` first.  A user access is a hardware walk of the live page tables; when it cannot be
satisfied it faults and retries, as the CPU would.
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arm import update_mmu_cache_range
from pgconform.kernel.filemap import PageCacheGet, folio_put, mm_counter, mm_counter_file
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import HugePmd, Pte, pmd_none, pmd_trans_huge, pte_none, pte_present
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.pgtable import set_pmd
from pgconform.kernel.powerpc import assert_pte_locked
from pgconform.sim.effects import Atomic, DownRead, Load, Lock, Store, Unlock, UpRead

VM_FAULT_OK = 0
VM_FAULT_SIGSEGV = "SIGSEGV"
VM_FAULT_NOPAGE = "NOPAGE"
VM_FAULT_FALLBACK = "FALLBACK"
VM_FAULT_RETRY = "RETRY"


@attrs.define(slots=True)
class VmFault:
    """struct vm_fault, as far as the model needs it."""

    vma: object
    address: int
    write: bool
    pmd: object
    pte: object = None
    ptl: object = None
    orig_pte: object = None
    folio: object = None


# ------------------------------------------------------------------------------------------------
# the hardware side: a user access through the live page tables


def _expected(k, mm, vma, addr):
    key = (mm, addr)
    if key in k.anon_shadow:
        return k.anon_shadow[key]
    return vma.file.content[vma.linear_page_index(addr)]


def _hw_access(m, t, k, mm, vma, addr, write):
    """One access by the CPU's MMU: walk the live PMD and PTE, check the data, write if allowed.
    Returns False when the translation does not allow the access (the CPU faults)."""
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    if pmdv is None:
        return False
    if type(pmdv) is HugePmd:
        if write and not pmdv.write:
            return False
        folio, idx = pmdv.folio, addr - geo.haddr(addr)
    else:
        ent = k.pmd_table(pmdv).entries[geo.pte_index(addr)]
        if not pte_present(ent) or (write and not ent.write):
            return False
        folio, idx = ent.folio, ent.idx
    check_mapping_data(k, t, mm, vma, addr, folio, idx)
    if write:
        value = folio.data[idx] + 1
        folio.data[idx] = value
        if folio.anon:
            k.anon_shadow[(mm, addr)] = value
        else:
            vma.file.content[vma.linear_page_index(addr)] = value
    return True


def mapped_pte(k, mm, addr, folio, idx):
    """The accounting that goes with installing a PTE for ``folio`` (set_pte_range(): rss, rmap),
    done in the step of the store; an anonymous page's content becomes what the address reads."""
    mm.rss[mm_counter(folio)] += 1
    folio.mapcount += 1
    if folio.anon:
        k.anon_shadow[(mm, addr)] = folio.data[idx]


def check_mapping_data(k, t, mm, vma, addr, folio, idx):
    """The data oracle: a mapped page is the page cache's (for file pages) and reads what was last
    written at this address (file content, or the private anonymous copy)."""
    m = k.m
    if folio.freed:
        m.violation("data.stale-mapping", f"{mm!r} addr {addr} maps {folio!r}, which was freed",
                    t, folio)
    if not folio.anon:
        index = vma.linear_page_index(addr)
        cached = vma.file.pages.get(index)
        if cached is not folio or folio.index + idx != index:
            m.violation("data.stale-mapping", f"{mm!r} addr {addr} maps {folio!r}+{idx}, but the "
                        f"page cache holds {cached!r} at index {index}", t, folio)
    want = _expected(k, mm, vma, addr)
    if folio.data[idx] != want:
        m.violation("data.mismatch", f"{mm!r} addr {addr} reads {folio.data[idx]} through "
                    f"{folio!r}+{idx}, but {want} was last written there", t, folio)


def user_access(k, mm, addr, write=False):
    """A user load or store at ``addr``: the hardware walk, and on failure handle_mm_fault() and
    retry, until the access succeeds or the fault is fatal."""
    while True:
        vma = mm.find_vma(addr)
        if vma is not None:
            ok = yield Atomic(f"{'store' if write else 'load'} at {addr}", _hw_access,
                              (k, mm, vma, addr, write), touches=(mm,))
            if ok:
                return "ok"
        ret = yield from handle_mm_fault(k, mm, addr, write)
        if ret == VM_FAULT_SIGSEGV:
            return "SIGSEGV"


# ------------------------------------------------------------------------------------------------
# the fault path


def handle_mm_fault(k, mm, addr, write):
    """mm/memory.c: handle_mm_fault() (6.6) under lock_mm_and_find_vma() (mmap_lock for read)."""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None:
        yield UpRead(mm.mmap_lock)
        return VM_FAULT_SIGSEGV
    ret = yield from __handle_mm_fault(k, vma, addr, write)
    yield UpRead(mm.mmap_lock)
    return ret


def __handle_mm_fault(k, vma, addr, write):
    """mm/memory.c: __handle_mm_fault() (6.6): a huge PMD is used or split; else handle_pte_fault().
    (create_huge_pmd() falls back for shmem: it has no ->huge_fault.)"""
    vmf = VmFault(vma, addr, write, vma.mm.pmd_offset(addr, k.geo))
    orig_pmd = yield from k.impl.pmdp_get_lockless(k, vmf.pmd)
    if pmd_trans_huge(orig_pmd):
        if write and not orig_pmd.write:
            # wp_huge_pmd(): file VMAs split the PMD (it is just cleared) and fall back
            yield from __split_huge_pmd(k, vma, vmf.pmd, addr)
        else:
            return VM_FAULT_OK  # huge_pmd_set_accessed()
    return (yield from handle_pte_fault(k, vmf))


def handle_pte_fault(k, vmf):
    """mm/memory.c: handle_pte_fault() (6.6): pte_offset_map_nolock() and a lockless look at the
    entry; a none entry goes to do_fault(); a present one is rechecked with pte_same() under ptl."""
    mm = vmf.vma.mm
    if pmd_none((yield Load(vmf.pmd.table, vmf.pmd.idx))):
        vmf.pte = None
    else:
        vmf.pte, vmf.ptl = yield from k.impl.pte_offset_map_nolock(k, mm, vmf.pmd, vmf.address)
        if vmf.pte is None:
            return VM_FAULT_OK
        vmf.orig_pte = yield Load(vmf.pte.table, vmf.pte.idx)  # ptep_get_lockless()
        if pte_none(vmf.orig_pte):
            yield from k.impl.pte_unmap(k, vmf.pte)
            vmf.pte = None
    if vmf.pte is None:
        return (yield from do_fault(k, vmf))
    yield Lock(vmf.ptl)
    entry = yield Load(vmf.pte.table, vmf.pte.idx)
    if entry != vmf.orig_pte:  # !pte_same(): someone changed it; let the access retry
        yield from k.impl.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
        return VM_FAULT_OK
    if vmf.write and pte_present(entry) and not entry.write:
        return (yield from do_wp_page(k, vmf, entry))
    if pte_present(entry) and not entry.young:
        # ptep_set_access_flags(): a write under the nolock-derived ptl, made safe by the pte_same()
        # on a non-none entry above (a detached table is empty)
        if k.arch.debug_vm:
            yield from assert_pte_locked(k, mm, vmf.address)
        yield Store(vmf.pte.table, vmf.pte.idx, attrs.evolve(entry, young=True))
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vmf.vma, vmf.address, vmf.pte)
    yield from k.impl.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return VM_FAULT_OK


def do_fault(k, vmf):
    """mm/memory.c: do_fault() (6.6): read, COW (private write) or shared fault."""
    vma = vmf.vma
    if not vmf.write:
        return (yield from do_read_fault(k, vmf))
    if not vma.shared:
        return (yield from do_cow_fault(k, vmf))
    return (yield from do_read_fault(k, vmf))  # do_shared_fault(): shmem has no ->page_mkwrite


def shmem_get_folio(k, vma, index):
    """mm/shmem.c: shmem_get_folio_gfp() (6.6) for a fault: find the folio (allocating a new one
    in a hole), lock it, and recheck it is still this file's page at ``index``.  Returns the locked
    folio with a reference held, and the page of it to map."""
    f = vma.file
    while True:
        folio = yield PageCacheGet(f, index)
        if folio is None:
            folio = yield Atomic(f"shmem_alloc_and_add_folio({f!r}, {index})", _shmem_add,
                                 (k, f, index), touches=(f,))
            if folio is None:
                continue  # raced with another insertion: look again
            return folio
        yield Lock(folio.lock)
        if folio.mapping is f and f.pages.get(index) is folio:
            return folio
        yield Unlock(folio.lock)  # truncated or replaced (collapsed) meanwhile
        folio_put(k, folio)


def _shmem_add(m, t, k, f, index):
    if index in f.pages:
        return None
    folio = k.new_folio(f"{f.name}:{index}", 1, index, f, data=[f.content[index]], locked_by=t)
    folio.refcount = 2  # the page cache's and ours
    f.pages[index] = folio
    return folio


def do_read_fault(k, vmf):
    """mm/memory.c: do_read_fault()/do_shared_fault() (6.6): __do_fault() returns a locked folio;
    finish_fault() maps it; the fault's reference becomes the mapping's on success."""
    vma = vmf.vma
    folio = yield from shmem_get_folio(k, vma, vma.linear_page_index(vmf.address))
    vmf.folio = folio
    ret = yield from finish_fault(k, vmf)
    yield Unlock(folio.lock)
    if ret != VM_FAULT_OK:
        folio_put(k, folio)
    return ret


def finish_fault(k, vmf):
    """mm/memory.c: finish_fault() (6.6): a PMD-sized folio on a none pmd goes to do_set_pmd();
    otherwise make sure a PTE table exists and map the page under pte_offset_map_lock()."""
    vma = vmf.vma
    mm = vma.mm
    folio = vmf.folio
    if pmd_none((yield Load(vmf.pmd.table, vmf.pmd.idx))):
        if folio.nr == k.geo.hpage_pmd_nr and not folio.anon:
            ret = yield from do_set_pmd(k, vmf, folio)
            if ret != VM_FAULT_FALLBACK:
                return ret
        yield from pte_alloc(k, mm, vmf.pmd)
    vmf.pte, vmf.ptl = yield from k.impl.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        return VM_FAULT_NOPAGE
    ret = VM_FAULT_NOPAGE
    if pte_none((yield Load(vmf.pte.table, vmf.pte.idx))):  # !vmf_pte_changed()
        idx = 0 if folio.anon else vma.linear_page_index(vmf.address) - folio.index
        write = vma.shared or folio.anon
        yield Store(vmf.pte.table, vmf.pte.idx, Pte(folio, idx, write=write))  # set_pte_range()
        mapped_pte(k, mm, vmf.address, folio, idx)
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vma, vmf.address, vmf.pte)
        ret = VM_FAULT_OK
    yield from k.impl.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return ret


def do_set_pmd(k, vmf, folio):
    """mm/memory.c: do_set_pmd() (6.6): map a PMD-sized file folio by a huge PMD if the range fits
    the VMA and the pmd is still none (checked under pmd_lock)."""
    vma = vmf.vma
    mm = vma.mm
    haddr = k.geo.haddr(vmf.address)
    if haddr < vma.start or haddr + k.geo.hpage_pmd_nr > vma.end:
        return VM_FAULT_FALLBACK  # !transhuge_vma_suitable()
    if vma.linear_page_index(haddr) != folio.index:
        return VM_FAULT_FALLBACK
    ptl = yield from k.impl.pmd_lock(k, mm, vmf.pmd)
    ret = VM_FAULT_FALLBACK
    if pmd_none((yield Load(vmf.pmd.table, vmf.pmd.idx))):
        mm.rss[mm_counter_file(folio)] += k.geo.hpage_pmd_nr
        folio.mapcount += 1  # page_add_file_rmap(compound)
        yield from set_pmd(k, vmf.pmd, HugePmd(folio, write=vma.shared))  # set_pmd_at()
        ret = VM_FAULT_OK
    yield Unlock(ptl)
    return ret


def do_cow_fault(k, vmf):
    """mm/memory.c: do_cow_fault() (6.6): anon_vma_prepare(), copy the file page into a new
    anonymous page while holding the file folio's lock, finish_fault() maps the copy."""
    vma = vmf.vma
    yield from anon_vma_prepare(k, vma)
    file_folio = yield from shmem_get_folio(k, vma, vma.linear_page_index(vmf.address))
    src = file_folio.data[vma.linear_page_index(vmf.address) - file_folio.index]
    anon = k.new_folio(f"anon({vma.mm.name}:{vmf.address})", 1, anon=True, data=[src])
    anon.refcount = 1
    vmf.folio = anon
    ret = yield from finish_fault(k, vmf)
    if ret != VM_FAULT_OK:
        folio_put(k, anon)
    yield Unlock(file_folio.lock)
    folio_put(k, file_folio)
    return ret


def _set_anon_vma(m, t, k, vma):
    if vma.anon_vma is None:
        vma.anon_vma = k.new_anon_vma()


def anon_vma_prepare(k, vma):
    """mm/rmap.c: __anon_vma_prepare() (6.6): attach an anon_vma (under mm->page_table_lock) before
    the first anonymous page is mapped; lockless readers see it at once."""
    if vma.anon_vma is None:
        yield Lock(vma.mm.page_table_lock)
        yield Atomic(f"{vma!r}->anon_vma = new", _set_anon_vma, (k, vma), touches=(vma,))
        yield Unlock(vma.mm.page_table_lock)


def do_wp_page(k, vmf, entry):
    """mm/memory.c: do_wp_page() -> wp_page_copy() (6.6) for a read-only file page in a private
    VMA: drop ptl, copy into a new anonymous page, retake the lock with pte_offset_map_lock() and
    replace the entry only if it is still ``orig_pte`` (pte_same)."""
    vma = vmf.vma
    mm = vma.mm
    yield from k.impl.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    yield from anon_vma_prepare(k, vma)
    old = entry.folio
    anon = k.new_folio(f"anon({mm.name}:{vmf.address})", 1, anon=True,
                       data=[old.data[entry.idx]])
    anon.refcount = 1
    vmf.pte, vmf.ptl = yield from k.impl.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        folio_put(k, anon)
        return VM_FAULT_OK
    if (yield Load(vmf.pte.table, vmf.pte.idx)) == vmf.orig_pte:
        if k.arch.debug_vm:  # ptep_clear_flush() -> pte_update()
            yield from assert_pte_locked(k, mm, vmf.address)
        yield Store(vmf.pte.table, vmf.pte.idx, Pte(anon, 0, write=True))  # set_pte_at_notify()
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vma, vmf.address, vmf.pte)
        mm.rss[mm_counter(old)] -= 1
        mm.rss["MM_ANONPAGES"] += 1
        anon.mapcount += 1
        old.mapcount -= 1  # page_remove_rmap()
        folio_put(k, old)
        k.anon_shadow[(mm, vmf.address)] = anon.data[0]
    else:
        folio_put(k, anon)
    yield from k.impl.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return VM_FAULT_OK


# ------------------------------------------------------------------------------------------------
# huge PMDs and zap


def __split_huge_pmd(k, vma, pmdp, addr):
    """mm/huge_memory.c: __split_huge_pmd() (6.6) for a file VMA: under an mmu_notifier range and
    pmd_lock, a still-huge PMD is just cleared (the page cache keeps the THP)."""
    mm = vma.mm
    haddr = k.geo.haddr(addr)
    end = haddr + k.geo.hpage_pmd_nr
    yield from mmu_notifier_invalidate_range_start(k, mm, haddr, end)
    ptl = yield from k.impl.pmd_lock(k, mm, pmdp)
    old = yield Load(pmdp.table, pmdp.idx)
    if pmd_trans_huge(old):
        yield from set_pmd(k, pmdp, None)  # pmdp_huge_clear_flush()
        old.folio.mapcount -= 1  # page_remove_rmap(compound)
        folio_put(k, old.folio)
        mm.rss[mm_counter_file(old.folio)] -= k.geo.hpage_pmd_nr
    yield Unlock(ptl)
    yield from mmu_notifier_invalidate_range_end(k, mm, haddr, end)


def zap_huge_pmd(k, vma, pmdp):
    """mm/huge_memory.c: zap_huge_pmd() (6.6): under __pmd_trans_huge_lock(), clear a huge file PMD.
    Returns False if the PMD was no longer huge."""
    mm = vma.mm
    ptl = yield from k.impl.pmd_lock(k, mm, pmdp)
    old = yield Load(pmdp.table, pmdp.idx)
    if not pmd_trans_huge(old):
        yield Unlock(ptl)
        return False
    yield from set_pmd(k, pmdp, None)  # pmdp_huge_get_and_clear_full()
    mm.rss[mm_counter_file(old.folio)] -= k.geo.hpage_pmd_nr
    old.folio.mapcount -= 1
    folio_put(k, old.folio)
    yield Unlock(ptl)
    return True


def zap_pte_range(k, vma, pmdp, addr, end):
    """mm/memory.c: zap_pte_range() (6.6): under pte_offset_map_lock(), clear every entry of
    [addr, end); returns ``addr`` unchanged if the table could not be mapped (the caller retries)."""
    mm = vma.mm
    pte, ptl = yield from k.impl.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return addr
    for a in range(addr, end):
        ptep = pte + (a - addr)
        ent = yield Load(ptep.table, ptep.idx)
        if pte_none(ent):
            continue
        yield Store(ptep.table, ptep.idx, None)  # ptep_get_and_clear_full()
        if k.arch.debug_vm:  # not a full (exit) zap: pte_update()
            yield from assert_pte_locked(k, mm, a)
        if pte_present(ent):
            folio = ent.folio
            mm.rss[mm_counter(folio)] -= 1
            folio.mapcount -= 1  # page_remove_rmap()
            folio_put(k, folio)  # tlb_remove_page(): the reference goes after the TLB flush
            if folio.anon:
                k.anon_shadow.pop((mm, a), None)
    yield from k.impl.pte_unmap_unlock(k, pte, ptl)
    return end


def zap_page_range_single(k, vma, start, end):
    """mm/memory.c: zap_page_range_single() (6.6) -> unmap_single_vma() -> zap_pmd_range(): within
    an mmu_notifier range; a huge PMD is zapped whole or split; a NULL map retries the pmd."""
    mm = vma.mm
    geo = k.geo
    yield from mmu_notifier_invalidate_range_start(k, mm, start, end)
    addr = start
    while addr < end:
        nxt = min(end, geo.haddr(addr) + geo.ptrs_per_pte)
        pmdp = mm.pmd_offset(addr, geo)
        pmdv = yield Load(pmdp.table, pmdp.idx)
        if pmd_trans_huge(pmdv):
            if nxt - addr != geo.hpage_pmd_nr:
                yield from __split_huge_pmd(k, vma, pmdp, addr)
            elif (yield from zap_huge_pmd(k, vma, pmdp)):
                addr = nxt
                continue
        if pmd_none((yield Load(pmdp.table, pmdp.idx))):
            addr = nxt
            continue
        addr = yield from zap_pte_range(k, vma, pmdp, addr, nxt)
    yield from mmu_notifier_invalidate_range_end(k, mm, start, end)


def madvise_dontneed(k, mm, start, end):
    """mm/madvise.c: madvise_dontneed_single_vma() (6.6) under mmap_lock for read."""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(start)
    if vma is not None:
        yield from zap_page_range_single(k, vma, max(start, vma.start), min(end, vma.end))
    yield UpRead(mm.mmap_lock)
    return "ok" if vma is not None else "ENOMEM"

