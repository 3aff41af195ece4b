"""Reference: mm/khugepaged.c as merged in Linux 6.6 (patches 09-11 of "mm: free retracted page
table by RCU", plus a98460494b16 "fix collapse_pte_mapped_thp() versus uffd").

``collapse_file()`` is modelled for shmem ranges whose pages are all present in the page cache
(holes are not filled); the rest follows the kernel step by step (retract_page_tables() of
1d65b771bc08, collapse_pte_mapped_thp() of 1043173eb5eb and a98460494b16, v6.6.0).
"""

from __future__ import annotations

from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.filemap import PageCacheGet, folio_get, folio_put, mm_counter_file
from pgconform.kernel.khugepaged_scan import (
    _file_range,
    hpage_collapse_scan_file,
    hugepage_vma_revalidate,
)
from pgconform.kernel.memory import VM_FAULT_OK, VmFault, do_set_pmd
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import (
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    pmd_none,
    pmd_trans_huge,
    pte_none,
    pte_present,
)
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.kernel.rmap import mm_find_pmd, try_to_unmap
from pgconform.sim.effects import (
    Atomic,
    DownRead,
    DownReadTrylock,
    DownWrite,
    Load,
    Lock,
    Store,
    Trylock,
    Unlock,
    UpRead,
    UpWrite,
)

SCAN_SUCCEED = "SCAN_SUCCEED"
SCAN_FAIL = "SCAN_FAIL"
SCAN_PMD_NULL = "SCAN_PMD_NULL"
SCAN_PMD_NONE = "SCAN_PMD_NONE"
SCAN_PMD_MAPPED = "SCAN_PMD_MAPPED"
SCAN_VMA_CHECK = "SCAN_VMA_CHECK"
SCAN_PAGE_NULL = "SCAN_PAGE_NULL"
SCAN_PAGE_LOCK = "SCAN_PAGE_LOCK"
SCAN_PAGE_COUNT = "SCAN_PAGE_COUNT"
SCAN_PAGE_COMPOUND = "SCAN_PAGE_COMPOUND"
SCAN_TRUNCATED = "SCAN_TRUNCATED"
SCAN_EXCEED_NONE_PTE = "SCAN_EXCEED_NONE_PTE"
SCAN_PTE_NON_PRESENT = "SCAN_PTE_NON_PRESENT"
SCAN_PTE_UFFD_WP = "SCAN_PTE_UFFD_WP"
SCAN_PTE_MAPPED_HUGEPAGE = "SCAN_PTE_MAPPED_HUGEPAGE"


def userfaultfd_wp(vma) -> bool:
    return VM_UFFD_WP in vma.flags


def userfaultfd_armed(vma) -> bool:
    """include/linux/userfaultfd_k.h: userfaultfd_armed() (6.6): any of __VM_UFFD_FLAGS."""
    return bool(vma.flags & {VM_UFFD_MISSING, VM_UFFD_WP, VM_UFFD_MINOR})


def find_pmd_or_thp_or_none(k, mm, addr):
    """mm/khugepaged.c: find_pmd_or_thp_or_none() (6.6): a lockless look at the PMD for ``addr``.
    Returns ``(result, pmdp)``."""
    pmdp = yield from mm_find_pmd(k, mm, addr)
    pmde = yield from k.ops.pmdp_get_lockless(k, pmdp)
    if pmd_none(pmde):
        return SCAN_PMD_NONE, pmdp
    if pmd_trans_huge(pmde):
        return SCAN_PMD_MAPPED, pmdp
    return SCAN_SUCCEED, pmdp


def hpage_collapse_test_exit(k, mm):
    """mm/khugepaged.c: hpage_collapse_test_exit() (6.6): atomic_read(&mm->mm_users) == 0."""
    return mm.users == 0
    yield


def retract_page_tables(k, mapping, pgoff):
    """mm/khugepaged.c: retract_page_tables() (6.6, patch 09 = 1d65b771bc08).

    Under i_mmap_rwsem for read only (no mmap_lock, no VMA lock), for every VMA mapping ``pgoff``:
    racy pre-checks, mmu_notifier start, pml then nested ptl, the anon_vma/uffd-wp recheck under
    ptl, pmdp_collapse_flush() + pmdp_get_lockless_sync(), unlock, notifier end, then
    mm_dec_nr_ptes() and pte_free_defer().  The caller holds the new huge folio's lock, which keeps
    file PTEs out of the range; the rechecks cover what is inserted without it."""
    yield from retract_page_tables_as(k, mapping, pgoff)


def retract_recheck(vma) -> bool:
    """The recheck under ptl (v2 of patch 09): PTEs that appear without the huge folio's lock
    come with an anon_vma (COW, UFFDIO_COPY) or a uffd-wp registration (markers)."""
    return vma.anon_vma is not None or userfaultfd_wp(vma)


def retract_page_tables_as(k, mapping, pgoff, recheck=retract_recheck, notify=True):
    """retract_page_tables() with its recheck under ptl and its PMD notifier calls as parameters,
    for the versions and mutants that differ there (v1 of patch 09: zoo mutants A7-A9)."""
    geo = k.geo
    yield from i_mmap_lock_read(mapping)
    for vma in list(mapping.i_mmap):
        if vma.anon_vma is not None:  # READ_ONCE(vma->anon_vma)
            continue
        addr = vma.start + (pgoff - vma.pgoff)
        if addr % geo.hpage_pmd_nr or addr < vma.start or vma.end < addr + geo.hpage_pmd_nr:
            continue
        mm = vma.mm
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, addr)
        if result != SCAN_SUCCEED:
            continue  # window: retract_page_tables finds no table
        if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
            continue  # window: retract_page_tables finds the mm exiting
        if userfaultfd_wp(vma):
            continue
        end = addr + geo.hpage_pmd_nr
        if notify:
            yield from mmu_notifier_invalidate_range_start(k, mm, addr, end)
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        ptl = yield from k.ops.pte_lockptr(k, mm, (yield Load(pmdp.table, pmdp.idx)))
        if ptl is not pml:
            yield Lock(ptl, 1)  # spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
        skipped_uffd = False
        if recheck(vma):
            skipped_uffd = True  # window: retract_page_tables recheck under ptl fails
        else:
            pgt_pmd = yield from k.ops.pmdp_collapse_flush(k, vma, addr, pmdp)
            yield from k.ops.pmdp_get_lockless_sync(k)
        if ptl is not pml:
            yield Unlock(ptl)
        yield Unlock(pml)
        if notify:
            yield from mmu_notifier_invalidate_range_end(k, mm, addr, end)
        if not skipped_uffd:
            yield from mm_dec_nr_ptes(k, mm)
            yield from k.ops.pte_free_defer(k, mm, k.pmd_pgtable(pgt_pmd))
    yield from i_mmap_unlock_read(mapping)


def i_mmap_lock_read(mapping):
    """include/linux/fs.h: i_mmap_lock_read() (6.6)."""
    yield DownRead(mapping.i_mmap_rwsem)


def i_mmap_unlock_read(mapping):
    """include/linux/fs.h: i_mmap_unlock_read() (6.6)."""
    yield UpRead(mapping.i_mmap_rwsem)


# ------------------------------------------------------------------------------------------------
# collapse_file()


def _alloc_hpage(m, t, k, mapping, start):
    folio = k.new_folio(f"thp({mapping.name}:{start}-{start + k.geo.hpage_pmd_nr - 1})",
                        k.geo.hpage_pmd_nr, start, None, locked_by=t)
    folio.refcount = 1
    return folio


def _ref_freeze(m, t, folio, expected):
    """folio_ref_freeze(): succeeds only if nobody else holds a reference."""
    if folio.refcount != expected:
        return False
    folio.frozen = t
    return True


def _replace_in_page_cache(m, t, mapping, start, hpage, old):
    """Copy the old pages into the new folio and store it over the range (xas_store() under the
    xa_lock); the old folios leave the page cache."""
    hpage.data = [f.data[0] for f in old]
    hpage.mapping = mapping
    for i, f in enumerate(old):
        mapping.pages[start + i] = hpage
        f.mapping = None
        f.frozen = None
        f.refcount -= 1  # the page cache's reference, dropped as folio_ref_unfreeze(folio, 1)


def _unfreeze(m, t, folios):
    for f in folios:
        f.frozen = None


def collapse_file(k, mm, addr, file, start, is_khugepaged=True):
    """mm/khugepaged.c: collapse_file() (6.6) for a shmem range with every page in the page cache.

    Allocate and lock a PMD-sized folio; lock, unmap (try_to_unmap) and freeze each old page; copy
    and replace them in the page cache; retract_page_tables(); unlock the new folio, then the old
    ones.  MADV_COLLAPSE (``is_khugepaged`` false) then gets SCAN_PTE_MAPPED_HUGEPAGE so that it
    installs the PMD in its own mm."""
    return (yield from collapse_file_as(k, mm, addr, file, start, is_khugepaged,
                                        retract_then_result))


def retract_then_result(k, file, start, mm, addr, hpage, is_khugepaged):
    """The retract step of collapse_file() (6.6, patch 09): retract_page_tables(mapping, start);
    for MADV_COLLAPSE the result becomes SCAN_PTE_MAPPED_HUGEPAGE (the caller maps its own PMD)."""
    yield from k.ops.retract_page_tables(k, file, start)
    return SCAN_SUCCEED if is_khugepaged else SCAN_PTE_MAPPED_HUGEPAGE


def collapse_file_as(k, mm, addr, file, start, is_khugepaged, retract):
    """collapse_file() with its retract step as a parameter: ``retract(k, file, start, mm, addr,
    hpage, is_khugepaged)`` retracts and returns collapse_file()'s result (6.5 passed the target
    mm, address and hpage to retract_page_tables() and returned its result: pgconform.versions)."""
    nr = k.geo.hpage_pmd_nr
    hpage = yield Atomic("alloc_charge_hpage() + __folio_set_locked()", _alloc_hpage,
                         (k, file, start))
    old: list = []
    frozen: list = []
    result = SCAN_SUCCEED
    for index in range(start, start + nr):
        folio = yield PageCacheGet(file, index)
        if folio is None:
            result = SCAN_EXCEED_NONE_PTE  # holes are not filled in this model
            break
        if folio.nr > 1:
            folio_put(k, folio)
            result = (SCAN_PTE_MAPPED_HUGEPAGE if folio.nr == nr and folio.index == start
                      else SCAN_PAGE_COMPOUND)
            break
        if not (yield Trylock(folio.lock)):
            folio_put(k, folio)
            result = SCAN_PAGE_LOCK
            break
        old.append(folio)
        if folio.mapping is not file:
            result = SCAN_TRUNCATED
            break
        if folio.mapcount:
            yield from try_to_unmap(k, folio)
        # page cache + ours; a racing fault or GUP holds more
        if not (yield Atomic(f"folio_ref_freeze({folio!r}, 2)", _ref_freeze, (folio, 2))):
            result = SCAN_PAGE_COUNT
            break
        frozen.append(folio)
    if result == SCAN_SUCCEED:
        yield Atomic(f"copy + xas_store({hpage!r}) over [{start}, {start + nr})",
                     _replace_in_page_cache, (file, start, hpage, old), touches=(file,))
        result = yield from retract(k, file, start, mm, addr, hpage, is_khugepaged)
        yield Unlock(hpage.lock)
    else:
        if frozen:
            yield Atomic("folio_ref_unfreeze() (rollback)", _unfreeze, (frozen,))
        yield Unlock(hpage.lock)
        folio_put(k, hpage)
    for folio in old:
        yield Unlock(folio.lock)
        folio_put(k, folio)
    return result


# ------------------------------------------------------------------------------------------------
# collapse_pte_mapped_thp()


def set_huge_pmd(k, vma, addr, pmdp, hpage):
    """mm/khugepaged.c: set_huge_pmd() (6.6): do_set_pmd() under mmap_lock (read suffices)."""
    vmf = VmFault(vma, addr, False, pmdp)
    if (yield from do_set_pmd(k, vmf, hpage)) != VM_FAULT_OK:
        return SCAN_FAIL
    folio_get(hpage)  # the mapping's reference
    return SCAN_SUCCEED


def _find_lock_page(m, t, mapping, index):
    folio = mapping.pages.get(index)
    if folio is not None:
        folio.refcount += 1
    return folio


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """mm/khugepaged.c: collapse_pte_mapped_thp() (6.6 = 1043173eb5eb + a98460494b16).

    With mmap_lock held for read: check the VMA first; find the locked THP in the page cache;
    step 1 checks under ptl that every PTE maps the matching subpage; mmu_notifier start; pml is
    taken early for uffd-armed private VMAs; step 2 rechecks and clears the PTEs and their rmap;
    step 3 drops the references; step 4 clears the PMD under pml + ptl and pte_free_defer()s the
    table; step 5 optionally maps the THP by PMD."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd))


def collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, vma_first=True, uffd_pml=True):
    """collapse_pte_mapped_thp() with the two points that changed after v1 of patch 10 as
    parameters: ``vma_first`` (v2: look the VMA up before walking the page tables; without it the
    6.5 order, zoo mutant A11) and ``uffd_pml`` (a98460494b16: pml held from step 2 to
    step 4 in uffd-armed private VMAs, and ptl re-derived with pte_offset_map_nolock(); without it
    v3 as first merged, which takes pte_offset_map_lock() for step 2 and drops it before step 4,
    B1)."""
    geo = k.geo
    haddr = geo.haddr(addr)
    end = haddr + geo.hpage_pmd_nr
    vma = mm.find_vma(haddr)
    pml = None
    notified = False
    nr_ptes = 0
    if not vma_first:
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
        if result == SCAN_PMD_MAPPED:
            return result
    if vma is None or vma.file is None or haddr < vma.start or end > vma.end:
        return SCAN_VMA_CHECK
    if vma_first:
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
        if result == SCAN_PMD_MAPPED:
            return result
    if userfaultfd_wp(vma):
        return SCAN_PTE_UFFD_WP
    found = yield from folio_and_step1_as(k, mm, vma, haddr, install_pmd)
    if type(found) is not tuple:
        return found
    hpage, pmdp = found
    result = SCAN_FAIL

    yield from mmu_notifier_invalidate_range_start(k, mm, haddr, end)
    notified = True
    # a98460494b16: an anon PTE can be inserted at any time in a uffd-armed private VMA
    if uffd_pml and userfaultfd_armed(vma) and not vma.shared:
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
    if uffd_pml:
        start_pte, ptl = yield from k.ops.pte_offset_map_nolock(k, mm, pmdp, haddr)
    else:
        start_pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, haddr)
    if start_pte is None:
        # window: collapse_pte_mapped_thp loses the table between steps
        return (yield from _abort(k, mm, vma, haddr, hpage, nr_ptes, None, ptl, pml, notified,
                                  result))
    if uffd_pml:  # (else pte_offset_map_lock() took ptl)
        if pml is None:
            yield Lock(ptl)
        elif ptl is not pml:
            yield Lock(ptl, 1)

    nr_ptes, bad = yield from step2_as(k, mm, haddr, hpage, start_pte)
    if bad:
        # window: collapse_pte_mapped_thp step 2 recheck fails
        return (yield from _abort(k, mm, vma, haddr, hpage, nr_ptes, start_pte, ptl, pml,
                                  notified, bad))
    yield from k.ops.pte_unmap(k, start_pte)
    if pml is None:
        yield Unlock(ptl)

    # step 3: set proper refcount and mm_counters
    if nr_ptes:
        folio_put(k, hpage, nr_ptes)
        mm.rss[mm_counter_file(hpage)] -= nr_ptes

    # step 4: remove the page table
    if pml is None:
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        if ptl is not pml:
            yield Lock(ptl, 1)
    pgt_pmd = yield from k.ops.pmdp_collapse_flush(k, vma, haddr, pmdp)
    yield from k.ops.pmdp_get_lockless_sync(k)
    if ptl is not pml:
        yield Unlock(ptl)
    yield Unlock(pml)
    yield from mmu_notifier_invalidate_range_end(k, mm, haddr, end)
    yield from mm_dec_nr_ptes(k, mm)
    yield from k.ops.pte_free_defer(k, mm, k.pmd_pgtable(pgt_pmd))
    return (yield from _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd))


def folio_and_step1_as(k, mm, vma, haddr, install_pmd, lookup="find_lock_page()"):
    """The part of collapse_pte_mapped_thp() that 6.6 and 7.0 (try_collapse_pte_mapped_thp())
    share: find and lock the PMD-sized folio in the page cache, look at the pmd again (no table:
    straight to step 5), then step 1: under pte_offset_map_lock(), every mapped PTE maps the
    matching page of the folio.  Returns the scan result if the collapse ends here, else
    ``(hpage, pmdp)`` with the folio locked and the ptl dropped."""
    geo = k.geo
    mapping = vma.file
    hpage = yield Atomic(lookup, _find_lock_page, (mapping, vma.linear_page_index(haddr)))
    if hpage is None:
        return SCAN_PAGE_NULL
    yield Lock(hpage.lock)
    if hpage.mapping is not mapping or mapping.pages.get(hpage.index) is not hpage:
        return (yield from _drop_hpage(k, hpage, SCAN_FAIL))
    if hpage.nr != geo.hpage_pmd_nr or hpage.index != vma.linear_page_index(haddr):
        return (yield from _drop_hpage(k, hpage, SCAN_PAGE_COMPOUND))
    result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
    if result == SCAN_PMD_NONE:
        return (yield from _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd))
    if result != SCAN_SUCCEED:
        return (yield from _drop_hpage(k, hpage, result))
    start_pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, haddr)
    if start_pte is None:
        return (yield from _drop_hpage(k, hpage, SCAN_FAIL))
    # step 1: read-only check under ptl
    for i in range(geo.hpage_pmd_nr):
        bad = _not_hpage_subpage((yield Load(start_pte.table, start_pte.idx + i)), hpage, i)
        if bad:
            return (yield from _abort(k, mm, vma, haddr, hpage, 0, start_pte, ptl, None, False,
                                      bad))
    yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
    return hpage, pmdp


def step2_as(k, mm, haddr, hpage, start_pte):
    """Step 2 of collapse_pte_mapped_thp() (6.6 and 7.0), under the ptl: each entry again must be
    none or the matching page of the folio; clear it (ptep_clear(); 7.0 batches them with
    clear_ptes()) and drop its rmap.  Returns ``(cleared, None)``, or ``(cleared so far, the scan
    result to abort with)`` at the first entry that is neither."""
    nr_ptes = 0
    for i in range(k.geo.hpage_pmd_nr):
        ptep = start_pte + i
        ent = yield Load(ptep.table, ptep.idx)
        bad = _not_hpage_subpage(ent, hpage, i)
        if bad:
            return nr_ptes, bad
        if pte_none(ent):
            continue
        yield Store(ptep.table, ptep.idx, None)
        if k.arch.debug_vm:  # pte_update(), the pmd still present
            yield from assert_pte_locked(k, mm, haddr + i)
        hpage.mapcount -= 1  # page_remove_rmap()
        nr_ptes += 1
    return nr_ptes, None


def _not_hpage_subpage(ent, hpage, i):
    """The check of steps 1 and 2: None if entry ``i`` is none or maps page ``i`` of ``hpage``,
    else the scan result to abort with (a swap/migration entry, or another page: anon COW, ...)."""
    if pte_none(ent):
        return None
    if not pte_present(ent):
        return SCAN_PTE_NON_PRESENT
    if ent.folio is not hpage or ent.idx != i:  # vm_normal_page() != folio_page(folio, i)
        return SCAN_FAIL
    return None


def _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd):
    # step 5: install the PMD mapping
    result = (yield from set_huge_pmd(k, vma, haddr, pmdp, hpage)) if install_pmd else SCAN_SUCCEED
    return (yield from _drop_hpage(k, hpage, result))


def _abort(k, mm, vma, haddr, hpage, nr_ptes, start_pte, ptl, pml, notified, result):
    if nr_ptes:
        yield Atomic(f"flush_tlb_mm({mm!r})", _noop)
        folio_put(k, hpage, nr_ptes)
        mm.rss[mm_counter_file(hpage)] -= nr_ptes
    if start_pte is not None:
        yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
    if pml is not None and pml is not ptl:
        yield Unlock(pml)
    if notified:
        yield from mmu_notifier_invalidate_range_end(k, mm, haddr, haddr + k.geo.hpage_pmd_nr)
    return (yield from _drop_hpage(k, hpage, result))


def _noop(m, t):
    return None


def _drop_hpage(k, hpage, result):
    yield Unlock(hpage.lock)
    folio_put(k, hpage)
    return result


# ------------------------------------------------------------------------------------------------
# the callers of collapse_file() and collapse_pte_mapped_thp(), which changed with the series
# (patch 11, 1043173eb5eb "mm/khugepaged: collapse_pte_mapped_thp() with mmap_read_lock()": no
# deferred list, mmap_lock for read)


def khugepaged_scan_mm_slot(k, mm, haddr):
    """mm/khugepaged.c: khugepaged_scan_mm_slot() (6.6, after patch 11 = 1043173eb5eb) for one PMD
    range of a file VMA: mmap_read_trylock, drop it around the file scan and collapse_file(); on
    SCAN_PTE_MAPPED_HUGEPAGE retake it and collapse_pte_mapped_thp(install_pmd=false) directly."""
    if not (yield DownReadTrylock(mm.mmap_lock)):
        return "mmap_lock busy"
    found = _file_range(k, mm, haddr)
    yield UpRead(mm.mmap_lock)
    if found is None:
        return SCAN_VMA_CHECK
    file, start = found
    result = yield from hpage_collapse_scan_file(k, mm, haddr, file, start, True)
    if result == SCAN_PTE_MAPPED_HUGEPAGE:
        yield DownRead(mm.mmap_lock)
        if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
            yield UpRead(mm.mmap_lock)
            return "exiting"
        result = yield from k.ops.collapse_pte_mapped_thp(k, mm, haddr, False)
        yield UpRead(mm.mmap_lock)
    return result


#: the results after which madvise_collapse() goes on to the next extent (its "whitelisted set of
#: results where continuing OK"); any other failure ends the loop
MADVISE_COLLAPSE_CONTINUE = frozenset({
    "SCAN_PMD_NULL", SCAN_PTE_NON_PRESENT, SCAN_PTE_UFFD_WP, "SCAN_PAGE_RO",
    "SCAN_LACK_REFERENCED_PAGE", SCAN_PAGE_NULL, SCAN_PAGE_COUNT, SCAN_PAGE_LOCK,
    SCAN_PAGE_COMPOUND, "SCAN_PAGE_LRU", "SCAN_DEL_PAGE_LRU"})


def madvise_collapse(k, mm, start, end):
    """mm/khugepaged.c: madvise_collapse() (6.6, 7d8faaf15545 "mm/madvise: introduce
    MADV_COLLAPSE sync hugepage collapse", with patch 11 = 1043173eb5eb) over [start, end), called
    by madvise() under mmap_lock for read.

    The VMA at ``start`` must map a file over its first PMD extent (hugepage_vma_check(); else
    -EINVAL).  Then for each PMD-aligned extent of [start, end) (clipped to the VMA's end): when
    mmap_lock was dropped by the previous extent, take it again and hugepage_vma_revalidate() the
    VMA at the extent (it may have been unmapped or replaced meanwhile: the loop ends with
    SCAN_VMA_CHECK), and clip the end to the revalidated VMA; take the file and page offset from
    it, drop mmap_lock around hpage_collapse_scan_file() (collapse_file()); on
    SCAN_PTE_MAPPED_HUGEPAGE take mmap_lock for read around collapse_pte_mapped_thp(install_pmd=
    true).  SCAN_SUCCEED and SCAN_PMD_MAPPED count, the results of MADVISE_COLLAPSE_CONTINUE go on
    to the next extent, any other ends the loop.  Returns the first failure's result, else the
    last extent's (the model's stand-in for 0 or madvise_collapse_errno()).  (Before returning,
    the kernel takes mmap_lock again for madvise(), which drops it at once: not modelled.)"""
    return (yield from madvise_collapse_as(k, mm, start, end))


def madvise_collapse_as(k, mm, start, end, write_locked=False):
    """madvise_collapse() with the mmap_lock mode around collapse_pte_mapped_thp() as a
    parameter (6.5 takes it for write)."""
    nr = k.geo.hpage_pmd_nr
    hstart = -(-start // nr) * nr
    yield DownRead(mm.mmap_lock)  # madvise(): mmap_read_lock()
    if _file_range(k, mm, hstart) is None:  # hugepage_vma_check()
        yield UpRead(mm.mmap_lock)
        return "EINVAL"
    vma = mm.find_vma(hstart)
    hend = min(end, vma.end) // nr * nr
    mmap_locked = True
    result, last_fail = None, None
    addr = hstart
    while addr < hend:
        if not mmap_locked:
            yield DownRead(mm.mmap_lock)
            mmap_locked = True
            vma = hugepage_vma_revalidate(k, mm, addr)
            if vma is None:
                last_fail = SCAN_VMA_CHECK
                break
            hend = min(hend, vma.end // nr * nr)
        file, pgoff = vma.file, vma.linear_page_index(addr)
        yield UpRead(mm.mmap_lock)
        mmap_locked = False
        result = yield from hpage_collapse_scan_file(k, mm, addr, file, pgoff, False)
        if result == SCAN_PTE_MAPPED_HUGEPAGE:
            yield (DownWrite if write_locked else DownRead)(mm.mmap_lock)
            result = yield from k.ops.collapse_pte_mapped_thp(k, mm, addr, True)
            yield (UpWrite if write_locked else UpRead)(mm.mmap_lock)
        if result not in (SCAN_SUCCEED, SCAN_PMD_MAPPED):
            last_fail = result
            if result not in MADVISE_COLLAPSE_CONTINUE:
                break
        addr += nr
    if mmap_locked:
        yield UpRead(mm.mmap_lock)  # madvise()'s mmap_read_unlock()
    return last_fail if last_fail is not None else result
