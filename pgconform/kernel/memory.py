"""Page faults and zapping on file-backed (shmem) VMAs: mm/memory.c, mm/shmem.c and
mm/huge_memory.c, Linux 6.6.

Faults take mmap_lock for read, map page-cache pages under their folio lock, allocate a PTE table
when the PMD is none, and react to a NULL map the kernel's way (return and let the access fault
again).  Private VMAs get anonymous copies on write (do_cow_fault(), wp_page_copy()), which sets up
``anon_vma`` first.  A user access is a hardware walk of the live page tables; when it cannot be
satisfied it faults and retries, as the CPU would.

PTE markers (6.6): a fault on a non-present entry goes do_swap_page() -> handle_pte_marker(): a
poison marker is SIGBUS, a uffd-wp marker a page-missing fault whose new PTE keeps the uffd-wp
bit; a write to a uffd-wp PTE of a VM_UFFD_WP VMA is handed to the monitor (do_wp_page() ->
handle_userfault()).  Zapping keeps uffd-wp markers of file VMAs unless asked to drop them
(ZAP_FLAG_DROP_MARKER: munmap, exit).  userfaultfd missing and minor faults come from
shmem_get_folio().  Model restrictions: no swap, migration or device entries; the monitor never
resolves a fault, so a user access handed to it ends there (kernel/userfaultfd.py).
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.arm import update_mmu_cache_range
from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.filemap import PageCacheGet, folio_put, mm_counter, mm_counter_file
from pgconform.kernel.mmu_gather import (
    pt_reclaim_enabled,
    pte_free_tlb,
    tlb_finish_mmu,
    tlb_gather_mmu,
)
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import (
    PTE_MARKER_GUARD,
    PTE_MARKER_POISONED,
    PTE_MARKER_UFFD_WP,
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    VM_WRITE,
    HugePmd,
    Pte,
    PteMarker,
    pmd_none,
    pmd_trans_huge,
    pte_none,
    pte_present,
)
from pgconform.kernel.pgalloc import mm_dec_nr_ptes, pte_alloc
from pgconform.kernel.pgtable import pte_map_rw_as, set_pmd
from pgconform.sim.effects import Atomic, DownRead, Load, Lock, Store, Unlock, UpRead

VM_FAULT_OK = 0
VM_FAULT_SIGSEGV = "SIGSEGV"
VM_FAULT_NOPAGE = "NOPAGE"
VM_FAULT_FALLBACK = "FALLBACK"
VM_FAULT_RETRY = "RETRY"
VM_FAULT_SIGBUS = "SIGBUS"
VM_FAULT_HWPOISON = "HWPOISON"
#: handle_userfault(): the fault is delivered to the monitor (the model ends the access there)
VM_UFFD_RESULT = {VM_UFFD_WP: "UFFD_WP", VM_UFFD_MINOR: "UFFD_MINOR",
                  VM_UFFD_MISSING: "UFFD_MISSING"}
#: VM_FAULT_ERROR: the fault results callers such as GUP turn into an error
VM_FAULT_ERROR = frozenset({VM_FAULT_SIGSEGV, VM_FAULT_SIGBUS, VM_FAULT_HWPOISON})
#: what a user access returns when its fault is fatal or handed to userfaultfd
_FINAL = {VM_FAULT_SIGSEGV: "SIGSEGV", VM_FAULT_SIGBUS: "SIGBUS", VM_FAULT_HWPOISON: "SIGBUS",
          "UFFD_WP": "UFFD_WP", "UFFD_MINOR": "UFFD_MINOR", "UFFD_MISSING": "UFFD_MISSING"}


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
    #: FAULT_FLAG_ALLOW_RETRY: a user fault; GUP and HMM faults (the model's) lack it, so
    #: handle_userfault() fails them with VM_FAULT_SIGBUS instead of waiting for the monitor
    allow_retry: bool = False


# ------------------------------------------------------------------------------------------------
# the hardware side: a user access through the live page tables


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
    k.hooks.user_access(k, t, mm, vma, addr, write, folio, idx)
    if write:
        value = folio.data[idx] + 1
        folio.data[idx] = value
        if folio.anon:
            k.hooks.anon_written(mm, addr, value)
        else:
            vma.file.content[vma.linear_page_index(addr)] = value
    return True


def mapped_pte(k, mm, addr, folio, idx):
    """The accounting that goes with installing a PTE for ``folio`` (set_pte_range(): rss, rmap),
    done in the step of the store; an anonymous page's content becomes what the address reads."""
    mm.rss[mm_counter(folio)] += 1
    folio.mapcount += 1
    if folio.anon:
        k.hooks.anon_written(mm, addr, folio.data[idx])


def user_access(k, mm, addr, write=False):
    """A user load or store at ``addr``: the hardware walk, and on failure handle_mm_fault() and
    retry, until the access succeeds ("ok"), the fault is fatal ("SIGSEGV", "SIGBUS") or it is
    delivered to the userfaultfd monitor ("UFFD_WP", "UFFD_MINOR", "UFFD_MISSING": the model does
    not resolve it, so the access ends there, without having read or written)."""
    while True:
        vma = mm.find_vma(addr)
        if vma is not None:
            ok = yield Atomic(f"{'store' if write else 'load'} at {addr}", _hw_access,
                              (k, mm, vma, addr, write), touches=(mm,))
            if ok:
                return "ok"
        ret = yield from handle_mm_fault(k, mm, addr, write)
        if ret in _FINAL:
            return _FINAL[ret]


def handle_userfault(k, vmf, reason):
    """fs/userfaultfd.c: handle_userfault() (6.6): a fault that may not be retried
    (!FAULT_FLAG_ALLOW_RETRY: GUP, HMM) is VM_FAULT_SIGBUS; else queue it for the monitor and
    wait.  The model's monitor never answers: the access ends with the reason (user_access())."""
    if not vmf.allow_retry:
        return VM_FAULT_SIGBUS
    return VM_UFFD_RESULT[reason]


# ------------------------------------------------------------------------------------------------
# the fault path


def handle_mm_fault(k, mm, addr, write):
    """mm/memory.c: handle_mm_fault() (6.6) under lock_mm_and_find_vma() (mmap_lock for read)."""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None or (write and VM_WRITE not in vma.flags):  # arch access_error()
        yield UpRead(mm.mmap_lock)
        return VM_FAULT_SIGSEGV
    ret = yield from __handle_mm_fault(k, vma, addr, write, allow_retry=True)
    yield UpRead(mm.mmap_lock)
    return ret


def __handle_mm_fault(k, vma, addr, write, allow_retry=False):
    """mm/memory.c: __handle_mm_fault() (6.6): a huge PMD is used or split; else handle_pte_fault().
    (create_huge_pmd() falls back for shmem: it has no ->huge_fault.)"""
    vmf = VmFault(vma, addr, write, vma.mm.pmd_offset(addr, k.geo), allow_retry=allow_retry)
    orig_pmd = yield from k.ops.pmdp_get_lockless(k, vmf.pmd)
    if pmd_trans_huge(orig_pmd):
        if write and not orig_pmd.write:
            # wp_huge_pmd(): file VMAs split the PMD (it is just cleared) and fall back
            yield from __split_huge_pmd(k, vma, vmf.pmd, addr)
        else:
            return VM_FAULT_OK  # huge_pmd_set_accessed()
    return (yield from handle_pte_fault(k, vmf))


def handle_pte_fault(k, vmf):
    """mm/memory.c: handle_pte_fault() (6.6): pte_offset_map_nolock() and a lockless look at the
    entry; a none entry goes to do_fault(); a present one is rechecked with pte_same() under ptl.
    From 6.13 (7.0) the map is pte_offset_map_rw_nolock(), the snapshot unused: the pte_same()
    on a non-none entry is its recheck (a detached table is empty)."""
    mm = vmf.vma.mm
    if pmd_none((yield Load(vmf.pmd.table, vmf.pmd.idx))):
        vmf.pte = None
    else:
        vmf.pte, _, vmf.ptl = yield from pte_map_rw_as(k, mm, vmf.pmd, vmf.address)
        if vmf.pte is None:
            return VM_FAULT_OK
        vmf.orig_pte = yield Load(vmf.pte.table, vmf.pte.idx)  # ptep_get_lockless()
        if pte_none(vmf.orig_pte):
            yield from k.ops.pte_unmap(k, vmf.pte)
            vmf.pte = None
    if vmf.pte is None:
        return (yield from do_pte_missing(k, vmf))
    if not pte_present(vmf.orig_pte):
        return (yield from do_swap_page(k, vmf))
    yield Lock(vmf.ptl)
    entry = yield Load(vmf.pte.table, vmf.pte.idx)
    if entry != vmf.orig_pte:  # !pte_same(): someone changed it; let the access retry
        yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
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
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return VM_FAULT_OK


def do_pte_missing(k, vmf):
    """mm/memory.c: do_pte_missing() (6.6; 7.0): do_anonymous_page() for an anonymous VMA,
    else do_fault()."""
    if vmf.vma.file is None:
        return (yield from do_anonymous_page(k, vmf))
    return (yield from do_fault(k, vmf))


def do_anonymous_page(k, vmf):
    """mm/memory.c: do_anonymous_page() (6.6; 7.0) for an order-0 page: pte_alloc() a none PMD,
    anon_vma_prepare() (vmf_anon_prepare()), a new zeroed anonymous folio, then under
    pte_offset_map_lock() (NULL: return, the access retries) map it if the entry is still what
    the fault saw (vmf_pte_changed()); a VM_UFFD_MISSING VMA hands the fault to the monitor
    instead.  Model restriction: a read fault maps a new zeroed folio too, as where
    mm_forbids_zeropage() (the shared zero page is not modelled), so the oracles count it as an
    anonymous page (rss, mapcount, refcount, and a shadow of 0)."""
    vma = vmf.vma
    mm = vma.mm
    yield from pte_alloc(k, mm, vmf.pmd)
    yield from anon_vma_prepare(k, vma)
    folio = k.new_folio(f"anon({mm.name}:{vmf.address})", 1, anon=True, data=[0])
    folio.refcount = 1
    vmf.pte, vmf.ptl = yield from k.ops.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        folio_put(k, folio)
        return VM_FAULT_OK
    if (yield Load(vmf.pte.table, vmf.pte.idx)) != vmf.orig_pte:  # vmf_pte_changed()
        yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
        folio_put(k, folio)
        return VM_FAULT_OK
    if VM_UFFD_MISSING in vma.flags:  # userfaultfd_missing()
        yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
        folio_put(k, folio)
        return handle_userfault(k, vmf, VM_UFFD_MISSING)
    # folio_add_new_anon_rmap() + set_ptes(): writable if the VMA is (the page is its own)
    yield Store(vmf.pte.table, vmf.pte.idx, Pte(folio, 0, write=pte_write_allowed(vma, folio)))
    mapped_pte(k, mm, vmf.address, folio, 0)
    if k.arch.vivt_cache:
        yield from update_mmu_cache_range(k, vma, vmf.address, vmf.pte)
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return VM_FAULT_OK


def do_swap_page(k, vmf):
    """mm/memory.c: do_swap_page() (6.6) for the non-swap entries of the model: PTE markers
    (pte_unmap_same() ends the map of handle_pte_fault(); then handle_pte_marker())."""
    yield from k.ops.pte_unmap(k, vmf.pte)
    vmf.pte = None
    if type(vmf.orig_pte) is PteMarker:
        return (yield from handle_pte_marker(k, vmf))
    return VM_FAULT_SIGBUS  # no other swap entry exists in the model


def handle_pte_marker(k, vmf):
    """mm/memory.c: handle_pte_marker() (6.6; 7.0): a poison marker is VM_FAULT_HWPOISON (SIGBUS);
    a guard marker (7.0: only MADV_GUARD_INSTALL puts one there) is always VM_FAULT_SIGSEGV; a
    uffd-wp marker goes to pte_marker_handle_uffd_wp(); anything else is SIGBUS."""
    marker = vmf.orig_pte
    if marker == PTE_MARKER_POISONED:
        return VM_FAULT_HWPOISON
    if marker == PTE_MARKER_GUARD:
        return VM_FAULT_SIGSEGV
    if marker == PTE_MARKER_UFFD_WP:
        return (yield from pte_marker_handle_uffd_wp(k, vmf))
    return VM_FAULT_SIGBUS


def pte_marker_handle_uffd_wp(k, vmf):
    """mm/memory.c: pte_marker_handle_uffd_wp() (6.6): a page-missing fault on a PTE that was
    write-protected while none; a leftover marker in a VMA no longer registered for WP is cleared
    (pte_marker_clear())."""
    if VM_UFFD_WP not in vmf.vma.flags:
        return (yield from pte_marker_clear(k, vmf))
    return (yield from do_pte_missing(k, vmf))


def pte_marker_clear(k, vmf):
    """mm/memory.c: pte_marker_clear() (6.6): under pte_offset_map_lock(), clear the entry only if
    it is still the marker the fault saw (pte_same)."""
    mm = vmf.vma.mm
    vmf.pte, vmf.ptl = yield from k.ops.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        return VM_FAULT_OK
    if (yield Load(vmf.pte.table, vmf.pte.idx)) == vmf.orig_pte:
        yield Store(vmf.pte.table, vmf.pte.idx, None)  # pte_clear()
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return VM_FAULT_OK


def do_fault(k, vmf):
    """mm/memory.c: do_fault() (6.6): read, COW (private write) or shared fault."""
    vma = vmf.vma
    if not vmf.write:
        return (yield from do_read_fault(k, vmf))
    if not vma.shared:
        return (yield from do_cow_fault(k, vmf))
    return (yield from do_read_fault(k, vmf))  # do_shared_fault(): shmem has no ->page_mkwrite


def shmem_get_folio(k, vma, index, vmf=None, noalloc=False):
    """mm/shmem.c: shmem_get_folio_gfp() (6.6): find the folio (allocating a new one in a hole,
    unless ``noalloc``: SGP_NOALLOC, then None), lock it, and recheck it is still this file's page
    at ``index``.  Returns the locked folio with a reference held.

    For a fault (``vmf`` given) userfaultfd comes first: a page-cache hit
    in a VM_UFFD_MINOR VMA, or a hole in a VM_UFFD_MISSING one, is handed to the monitor
    (handle_userfault()): the fault code is returned instead of a folio."""
    f = vma.file
    while True:
        folio = yield PageCacheGet(f, index)
        if vmf is not None and folio is not None and VM_UFFD_MINOR in vma.flags:
            folio_put(k, folio)
            return handle_userfault(k, vmf, VM_UFFD_MINOR)
        if folio is None:
            if noalloc:
                return None
            if vmf is not None and VM_UFFD_MISSING in vma.flags:
                return handle_userfault(k, vmf, VM_UFFD_MISSING)
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
    folio = yield from shmem_get_folio(k, vma, vma.linear_page_index(vmf.address), vmf)
    if type(folio) is str:
        return folio
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
    vmf.pte, vmf.ptl = yield from k.ops.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        return VM_FAULT_NOPAGE
    ret = VM_FAULT_NOPAGE
    if (yield Load(vmf.pte.table, vmf.pte.idx)) == vmf.orig_pte:  # !vmf_pte_changed()
        idx = 0 if folio.anon else vma.linear_page_index(vmf.address) - folio.index
        # set_pte_range(): the uffd-wp bit of a marker carries over (vmf_orig_pte_uffd_wp()), and
        # pte_mkuffd_wp() write-protects
        uffd_wp = vmf.orig_pte == PTE_MARKER_UFFD_WP
        write = pte_write_allowed(vma, folio) and not uffd_wp
        yield Store(vmf.pte.table, vmf.pte.idx, Pte(folio, idx, write=write, uffd_wp=uffd_wp))
        mapped_pte(k, mm, vmf.address, folio, idx)
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vma, vmf.address, vmf.pte)
        ret = VM_FAULT_OK
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    return ret


def pte_write_allowed(vma, folio) -> bool:
    """Whether a PTE mapping ``folio`` in ``vma`` is writable when installed or upgraded: the VMA
    has VM_WRITE, and the page is the VMA's to write (shared, or an anonymous copy).  The model
    does not write-notify shared mappings (vma_wants_writenotify()): a shared PTE is writable
    unless uffd-wp protects it."""
    return VM_WRITE in vma.flags and (vma.shared or folio.anon)


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
    ptl = yield from k.ops.pmd_lock(k, mm, vmf.pmd)
    ret = VM_FAULT_FALLBACK
    if pmd_none((yield Load(vmf.pmd.table, vmf.pmd.idx))):
        mm.rss[mm_counter_file(folio)] += k.geo.hpage_pmd_nr
        folio.mapcount += 1  # page_add_file_rmap(compound)
        yield from set_pmd(k, vmf.pmd, HugePmd(folio, write=pte_write_allowed(vma, folio)))
        ret = VM_FAULT_OK
    yield Unlock(ptl)
    return ret


def do_cow_fault(k, vmf):
    """mm/memory.c: do_cow_fault() (6.6): anon_vma_prepare(), copy the file page into a new
    anonymous page while holding the file folio's lock, finish_fault() maps the copy."""
    vma = vmf.vma
    yield from anon_vma_prepare(k, vma)
    file_folio = yield from shmem_get_folio(k, vma, vma.linear_page_index(vmf.address), vmf)
    if type(file_folio) is str:
        return file_folio
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
    """mm/memory.c: do_wp_page() (6.6): a uffd-wp protected PTE in a VM_UFFD_WP VMA goes to the
    monitor (handle_userfault(VM_UFFD_WP)); a shared page or an anonymous page is made writable
    in place (wp_page_shared(), wp_page_reuse()); a read-only file page in a private VMA is
    copied (wp_page_copy()): drop ptl, copy into a new anonymous page, retake the lock with
    pte_offset_map_lock() and replace the entry only if it is still ``orig_pte`` (pte_same)."""
    vma = vmf.vma
    mm = vma.mm
    if entry.uffd_wp and VM_UFFD_WP in vma.flags:  # userfaultfd_pte_wp()
        yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
        return handle_userfault(k, vmf, VM_UFFD_WP)
    if vma.shared or (entry.folio.anon and entry.folio.refcount == 1):
        # wp_page_shared()/wp_page_reuse(): an anonymous page is reused only while nobody else
        # holds it (wp_can_reuse_anon_folio(): refcount 1); after fork() both mms map it, and
        # each write copies until one mapping is left
        if k.arch.debug_vm:  # ptep_set_access_flags()
            yield from assert_pte_locked(k, mm, vmf.address)
        yield Store(vmf.pte.table, vmf.pte.idx, attrs.evolve(entry, write=True, young=True))
        yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
        return VM_FAULT_OK
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    yield from anon_vma_prepare(k, vma)
    old = entry.folio
    anon = k.new_folio(f"anon({mm.name}:{vmf.address})", 1, anon=True,
                       data=[old.data[entry.idx]])
    anon.refcount = 1
    # the range of the one page being replaced (secondary MMUs drop their translation of it)
    yield from mmu_notifier_invalidate_range_start(k, mm, vmf.address, vmf.address + 1)
    vmf.pte, vmf.ptl = yield from k.ops.pte_offset_map_lock(k, mm, vmf.pmd, vmf.address)
    if vmf.pte is None:
        folio_put(k, anon)
        yield from mmu_notifier_invalidate_range_end(k, mm, vmf.address, vmf.address + 1)
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
        k.hooks.anon_written(mm, vmf.address, anon.data[0])
    else:
        folio_put(k, anon)
    yield from k.ops.pte_unmap_unlock(k, vmf.pte, vmf.ptl)
    yield from mmu_notifier_invalidate_range_end(k, mm, vmf.address, vmf.address + 1)
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
    ptl = yield from k.ops.pmd_lock(k, mm, pmdp)
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
    ptl = yield from k.ops.pmd_lock(k, mm, pmdp)
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


@attrs.frozen(slots=True)
class ZapDetails:
    """struct zap_details (6.6): ``even_cows`` zaps private COW pages and poison markers too;
    ``zap_flags`` ZAP_FLAG_DROP_MARKER drops the uffd-wp markers of file VMAs; ``reclaim_pt``
    (6.14+, MADV_DONTNEED only) frees a PTE table the zap leaves empty (zap_pte_range())."""

    even_cows: bool = False
    zap_flags: int = 0
    reclaim_pt: bool = False


ZAP_FLAG_DROP_MARKER = 1
ZAP_FLAG_UNMAP = 2
#: what unmap_vmas() passes for munmap and exit_mmap (mm/memory.c, 6.6)
UNMAP_DETAILS = ZapDetails(even_cows=True, zap_flags=ZAP_FLAG_DROP_MARKER | ZAP_FLAG_UNMAP)
#: what madvise_dontneed_single_vma() passes from 6.14 (6375e95f381e; .even_cows from 6.15): zap
#: as with no details (NULL, 6.6) and reclaim the PTE tables left empty
DONTNEED_DETAILS = ZapDetails(even_cows=True, reclaim_pt=True)


def should_zap_cows(details) -> bool:
    """mm/memory.c: should_zap_cows() (6.6): by default (no details) zap everything."""
    return details is None or details.even_cows


def zap_drop_file_uffd_wp(details) -> bool:
    """mm/memory.c: zap_drop_file_uffd_wp() (6.6): only when asked (ZAP_FLAG_DROP_MARKER)."""
    return details is not None and bool(details.zap_flags & ZAP_FLAG_DROP_MARKER)


def pte_install_uffd_wp_if_needed(k, vma, ptep, addr, pteval):
    """include/linux/mm_inline.h: pte_install_uffd_wp_if_needed() (6.6): once a uffd-wp protected
    entry of a file VMA registered for WP has been cleared, put a PTE_MARKER_UFFD_WP in its place
    so the protection survives the unmap.  Returns whether it installed one."""
    if VM_UFFD_WP not in vma.flags:
        return False
    if (pte_present(pteval) and pteval.uffd_wp) or pteval == PTE_MARKER_UFFD_WP:
        yield Store(ptep.table, ptep.idx, PTE_MARKER_UFFD_WP)
        return True
    return False


def zap_install_uffd_wp_if_needed(k, vma, ptep, addr, details, pteval):
    """mm/memory.c: zap_install_uffd_wp_if_needed() (6.6): unless the zap drops markers, keep the
    uffd-wp protection of a file VMA's entry (the model's VMAs are all file-backed)."""
    if zap_drop_file_uffd_wp(details):
        return False
    return (yield from pte_install_uffd_wp_if_needed(k, vma, ptep, addr, pteval))


# ------------------------------------------------------------------------------------------------
# reclaim of empty PTE tables (6.14+: Qi Zheng, "synchronously scan and reclaim empty user PTE
# pages", 6375e95f381e).  6.14 has them in mm/pt_reclaim.c as try_get_and_clear_pmd(),
# try_to_free_pte() and free_pte(); 7.0 has them in mm/memory.c.  The two that detach the table,
# zap_empty_pte_table() and zap_pte_table_if_empty(), are functions of the implementation table
# (their reference is pgconform/reference/memory.py).


def pte_table_reclaim_possible(k, start, end, details) -> bool:
    """mm/memory.c: pte_table_reclaim_possible() (7.0; 6.14: reclaim_pt_is_enabled()):
    CONFIG_PT_RECLAIM, the caller asked (details->reclaim_pt: MADV_DONTNEED) and the zap covers
    the whole table (end - start >= PMD_SIZE)."""
    return (details is not None and details.reclaim_pt and pt_reclaim_enabled(k)
            and end - start >= k.geo.ptrs_per_pte)


def free_pte(k, mm, addr, tlb, pmdval):
    """mm/pt_reclaim.c: free_pte() (6.14; inline in 7.0's zap_pte_range()): pte_free_tlb() of the
    table ``pmdval`` named, through the caller's gather (freed after a grace period: PT_RECLAIM
    implies MMU_GATHER_RCU_TABLE_FREE), and mm_dec_nr_ptes().  7.0 passes the zap's end as
    ``addr`` (6.14 its start): only the range the gather flushes differs."""
    yield from pte_free_tlb(k, tlb, k.pmd_pgtable(pmdval), addr)
    yield from mm_dec_nr_ptes(k, mm)


def zap_pte_range(k, vma, pmdp, addr, end, details=None, tlb=None):
    """mm/memory.c: zap_pte_range() (6.6; 7.0): under pte_offset_map_lock(), clear every entry of
    [addr, end); returns ``addr`` unchanged if the table could not be mapped (the caller retries).
    ``details`` is struct zap_details (None: MADV_DONTNEED's in 6.6, zap everything but file
    uffd-wp markers):

    * with ``even_cows`` false, anonymous (COW) pages stay mapped (should_zap_page(): truncation
      keeps private copies), and so do poison markers (should_zap_cows());
    * a uffd-wp marker of a file VMA stays unless ZAP_FLAG_DROP_MARKER (munmap, exit);
    * a present uffd-wp PTE leaves a uffd-wp marker behind (zap_install_uffd_wp_if_needed()).

    With ``details.reclaim_pt`` (MADV_DONTNEED, 6.14+) and CONFIG_PT_RECLAIM, a zap of the whole
    table that left nothing behind (!any_skipped) also frees the table through ``tlb`` (the
    caller's mmu_gather): detached still under ptl by zap_empty_pte_table(), or, if pml was busy,
    after the unlock by zap_pte_table_if_empty().  The model's loop never drops ptl midway (no
    need_resched() or full batch: the kernel's other reasons to go the slow way)."""
    mm = vma.mm
    can_reclaim_pt = tlb is not None and pte_table_reclaim_possible(k, addr, end, details)
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return addr
    for a in range(addr, end):
        ptep = pte + (a - addr)
        ent = yield Load(ptep.table, ptep.idx)
        if pte_none(ent):
            continue
        if type(ent) is PteMarker:
            if ent == PTE_MARKER_UFFD_WP:
                if not zap_drop_file_uffd_wp(details):
                    continue
            elif ent == PTE_MARKER_GUARD:
                # 7.0 zap_nonpresent_ptes(): an ordinary zap (MADV_DONTNEED, hole punch, guard
                # install's own zap) keeps guard markers; only one that drops markers
                # (zap_drop_markers(): munmap, exit, unmap_mapping_folio()) clears them
                if not zap_drop_file_uffd_wp(details):
                    continue
            elif not should_zap_cows(details):  # poisoned
                continue
            yield Store(ptep.table, ptep.idx, None)  # pte_clear_not_present_full()
            # the process asked for the range to go (MADV_DONTNEED, munmap) or the page itself
            # went (a truncated folio): the marker's promise ends with it
            if ent == PTE_MARKER_GUARD:
                k.hooks.guard_removed(mm, a)
            else:
                k.hooks.marker_replaced(mm, a)
            continue
        if details is not None and not details.even_cows and ent.folio.anon:
            continue
        yield Store(ptep.table, ptep.idx, None)  # ptep_get_and_clear_full()
        if k.arch.debug_vm:  # not a full (exit) zap: pte_update()
            yield from assert_pte_locked(k, mm, a)
        folio = ent.folio
        mm.rss[mm_counter(folio)] -= 1
        folio.mapcount -= 1  # page_remove_rmap()
        folio_put(k, folio)  # tlb_remove_page(): the reference goes after the TLB flush
        if folio.anon:
            k.hooks.anon_dropped(mm, a)
        if ent.uffd_wp and not (yield from zap_install_uffd_wp_if_needed(k, vma, ptep, a,
                                                                         details, ent)):
            k.hooks.marker_replaced(mm, a)  # dropped on request (ZAP_FLAG_DROP_MARKER)
    pmdval = None
    if can_reclaim_pt:
        # any_skipped: an entry the loop kept (a COW page, a marker) or put back (a uffd-wp
        # marker); with ptl held throughout, those are exactly the entries still non-none
        if any(e is not None for e in pte.table.entries):
            can_reclaim_pt = False
        else:
            pmdval = yield from k.ops.zap_empty_pte_table(k, mm, pmdp, ptl)
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    if can_reclaim_pt:
        if pmdval is None:
            pmdval = yield from k.ops.zap_pte_table_if_empty(k, mm, pmdp, addr)
        if pmdval is not None:
            yield from free_pte(k, mm, end, tlb, pmdval)
    return end


def zap_page_range_single(k, vma, start, end, details=None):
    """mm/memory.c: zap_page_range_single() (6.6; 6.14) -> unmap_single_vma() -> zap_pmd_range():
    within an mmu_notifier range; a huge PMD is zapped whole or split; a NULL map retries the pmd.
    ``details`` (struct zap_details, or None) goes down to zap_pte_range().

    The model drops folio references in the zap itself, so only a zap that may reclaim tables
    (``details.reclaim_pt``) has the kernel's mmu_gather: tlb_gather_mmu() first, tlb_finish_mmu()
    after the notifier range ends (the TLB flush, then the table batch to call_rcu())."""
    mm = vma.mm
    geo = k.geo
    tlb = None
    if details is not None and details.reclaim_pt:
        tlb = yield from tlb_gather_mmu(k, mm)
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
        addr = yield from zap_pte_range(k, vma, pmdp, addr, nxt, details, tlb)
    yield from mmu_notifier_invalidate_range_end(k, mm, start, end)
    if tlb is not None:
        yield from tlb_finish_mmu(k, tlb)


def madvise_dontneed(k, mm, start, end):
    """mm/madvise.c: madvise_dontneed_single_vma() (6.6) under mmap_lock for read; from 6.14
    (6375e95f381e) it passes a struct zap_details with .reclaim_pt, so the zap frees the PTE tables
    it empties where CONFIG_PT_RECLAIM is set (in 6.6 it passes NULL).  (7.0 takes the per-VMA lock
    instead where it can, and one mmu_gather for the whole call; the model keeps mmap_lock.)"""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(start)
    if vma is not None:
        details = DONTNEED_DETAILS if k.version.pt_reclaim else None
        yield from zap_page_range_single(k, vma, max(start, vma.start), min(end, vma.end),
                                         details)
    yield UpRead(mm.mmap_lock)
    return "ok" if vma is not None else "ENOMEM"

