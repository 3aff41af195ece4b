"""Linux 6.5: the code "mm: free retracted page table by RCU" replaced (mm/pgtable-generic.c
__pte_offset_map(), pte_unmap(); mm/khugepaged.c retract_page_tables(), collapse_pte_mapped_thp(),
khugepaged_collapse_pte_mapped_thps(); include/linux/mmap_lock.h mmap_write_trylock()), as a
registered implementation (``v6.5``).

6.5 already has the predecessor series (0d940a9b270b: pte_offset_map*() may fail), but
__pte_offset_map() takes no RCU read lock, and a retracted page table is freed at once.  That is
safe only because everything that frees it excludes every software walker by locks:

* retract_page_tables() holds i_mmap_rwsem for *write* (no rmap walker, no truncate, no other
  retract) and takes each mm's mmap_lock for write with a trylock (no fault, madvise, uffd, page
  walk); an mm whose lock is busy is put on khugepaged's per-mm list of PTE-mapped THPs
  (khugepaged_add_pte_mapped_thp(), at most MAX_PTE_MAPPED_THP), which the next scan of that mm
  retries under mmap_write_trylock (khugepaged_collapse_pte_mapped_thps());
* collapse_pte_mapped_thp() needs mmap_lock for write and takes i_mmap_rwsem for write;
* collapse_and_free_pmd() clears the PMD without pmd_lock or ptl, sends
  tlb_remove_table_sync_one() for GUP-fast, and pte_free()s the table through the arch's own
  allocator (``k.ops.pte_free``).

What the model leaves out, and why (the restrictions of this version):

* per-VMA locks (6.4): vma_try_start_write() and vma_start_write() are modelled as always
  succeeding, because no modelled walker takes a VMA lock (faults take mmap_lock);
* anon_vma locks: collapse_pte_mapped_thp() write-locks the anon_vma of a VMA that has one; the
  model has no anon_vma rwsem and no anon rmap walker for it to exclude;
* the architecture allocators are 6.6's (powerpc PageActive, s390 6.6 halves): pte_free() of a
  table nobody deferred behaves as in 6.5;
* khugepaged_mm_lock is folded into the atomic step that appends to an mm's list; every mm is
  assumed to have a khugepaged mm_slot (it is registered with khugepaged).

Sources: tag v6.5; the 6.5 bodies as removed by 1d65b771bc08 (patch 09), 1043173eb5eb (10),
d50791c2bee9 (11) and cf95e337cb63 (12), read in the v3 postings
<f88970d9-d347-9762-ae6d-da978e8a4df@google.com> and patch 11's, and in the patch 10 review thread.
"""

from __future__ import annotations

from pgconform.implementation import Implementation
from pgconform.kernel.filemap import folio_put, mm_counter_file
from pgconform.kernel.khugepaged_scan import _file_range, hpage_collapse_scan_file
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import PtePtr, pmd_none, pmd_trans_huge, pte_none
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.reference import POISON_LOST_CONSEQUENCES
from pgconform.reference.khugepaged import (
    SCAN_FAIL,
    SCAN_PAGE_COMPOUND,
    SCAN_PAGE_NULL,
    SCAN_PMD_MAPPED,
    SCAN_PMD_NONE,
    SCAN_PTE_MAPPED_HUGEPAGE,
    SCAN_PTE_UFFD_WP,
    SCAN_SUCCEED,
    SCAN_VMA_CHECK,
    _drop_hpage,
    _maybe_install_pmd,
    _not_hpage_subpage,
    collapse_file_as,
    madvise_collapse_as,
    set_huge_pmd,
    userfaultfd_wp,
)
from pgconform.reference.khugepaged import (
    _find_lock_page as _find_get_page,
)
from pgconform.sim.effects import (
    Atomic,
    DownReadTrylock,
    DownWrite,
    DownWriteTrylock,
    IpiSync,
    Load,
    Lock,
    UpRead,
    UpWrite,
)

SCAN_PAGE_ANON = "SCAN_PAGE_ANON"
SCAN_ANY_PROCESS = "SCAN_ANY_PROCESS"

#: mm/khugepaged.c (6.5): the size of khugepaged_mm_slot.pte_mapped_thp[]
MAX_PTE_MAPPED_THP = 8

#: where the model keeps an mm's khugepaged_mm_slot.pte_mapped_thp[] (nr_pte_mapped_thp is its
#: length): per-mm state, in mm.context
PTE_MAPPED_THP = "khugepaged.pte_mapped_thp"


# ------------------------------------------------------------------------------------------------
# mm/pgtable-generic.c, include/linux/pgtable.h (6.5): no RCU


def __pte_offset_map(k, pmdp, addr):
    """mm/pgtable-generic.c: __pte_offset_map() (6.5, 0d940a9b270b): one lockless read of the pmd
    (no rcu_read_lock(), no IRQ-off section: patches 01 and 02 came in 6.6); none or trans-huge
    -> NULL, else a pointer into the table that value names.  The caller's locks alone keep that
    table alive.  Returns ``(pte, pmdval)``."""
    pmdval = yield from k.ops.pmdp_get_lockless(k, pmdp)
    if not (pmd_none(pmdval) or pmd_trans_huge(pmdval)):
        return PtePtr(k.pmd_table(pmdval), k.geo.pte_index(addr)), pmdval
    return None, pmdval


def pte_unmap(k, pte):
    """include/linux/pgtable.h: pte_unmap() (6.5) without HIGHPTE: nothing (no RCU to leave)."""
    return None
    yield


def tlb_remove_table_sync_one(k):
    """mm/mmu_gather.c: tlb_remove_table_sync_one() (6.5): with MMU_GATHER_RCU_TABLE_FREE an IPI
    to every CPU, waiting, so that no GUP-fast (IRQs off) still walks a table being freed; an empty
    stub without it (where the TLB-flush IPI of pmdp_collapse_flush() does that job)."""
    if k.arch.rcu_table_free:
        yield IpiSync()


# ------------------------------------------------------------------------------------------------
# mm/khugepaged.c (6.5)


def _mmap_assert_write_locked(k, mm):
    """mmap_assert_write_locked(): lockdep and VM_BUG_ON_MM under DEBUG_VM."""
    if mm.mmap_lock.writer is not k.m.current:
        raise AssertionError(f"mmap_assert_write_locked({mm!r}): "
                             f"{k.m.current.name} does not hold it for write")


def collapse_and_free_pmd(k, mm, vma, addr, pmdp):
    """mm/khugepaged.c: collapse_and_free_pmd() (6.5).

    The caller holds mmap_lock for write, the file's i_mmap_rwsem for write, and the anon_vma's
    rwsem for write if the VMA has one: together they exclude every software walker of this
    table except GUP-fast, so no page-table spinlock is taken.  mmu_notifier range around the
    clear; pmdp_collapse_flush() (clear the PMD, flush the TLB); tlb_remove_table_sync_one() for
    GUP-fast; mm_dec_nr_ptes(); pte_free() at once."""
    _mmap_assert_write_locked(k, mm)
    end = addr + k.geo.hpage_pmd_nr
    yield from mmu_notifier_invalidate_range_start(k, mm, addr, end)
    pgt_pmd = yield from k.ops.pmdp_collapse_flush(k, vma, addr, pmdp)
    yield from tlb_remove_table_sync_one(k)
    yield from mmu_notifier_invalidate_range_end(k, mm, addr, end)
    yield from mm_dec_nr_ptes(k, mm)
    # page_table_check_pte_clear_range(): page_table_check is not modelled
    yield from k.ops.pte_free(k, mm, k.pmd_pgtable(pgt_pmd))


def _pte_mapped_thp(mm) -> list:
    return mm.context.setdefault(PTE_MAPPED_THP, [])


def _add_pte_mapped_thp(m, t, mm, addr):
    slot = _pte_mapped_thp(mm)
    if len(slot) >= MAX_PTE_MAPPED_THP:
        return False
    slot.append(addr)
    return True


def khugepaged_add_pte_mapped_thp(k, mm, addr):
    """mm/khugepaged.c: khugepaged_add_pte_mapped_thp() (6.5): under khugepaged_mm_lock, append
    ``addr`` to the mm's mm_slot->pte_mapped_thp[] if there is room (MAX_PTE_MAPPED_THP);
    duplicates are allowed (the second collapse finds the PMD mapped).  Returns whether added."""
    return (yield Atomic(f"khugepaged_add_pte_mapped_thp({mm!r}, {addr})", _add_pte_mapped_thp,
                         (mm, addr), touches=(mm,)))


def _clear_pte_mapped_thp(m, t, mm):
    _pte_mapped_thp(mm).clear()


def khugepaged_collapse_pte_mapped_thps(k, mm):
    """mm/khugepaged.c: khugepaged_collapse_pte_mapped_thps() (6.5), at the start of a scan of the
    mm: nothing if its list is empty; else mmap_write_trylock() (busy: leave the list for the next
    scan), and unless the mm is exiting collapse_pte_mapped_thp(install_pmd=false) at every listed
    address; then empty the list (nr_pte_mapped_thp = 0, under mmap_lock, not khugepaged_mm_lock)
    and unlock."""
    if not _pte_mapped_thp(mm):
        return
    if not (yield DownWriteTrylock(mm.mmap_lock)):
        return
    if not (yield from k.ops.hpage_collapse_test_exit(k, mm)):
        i = 0
        while i < len(_pte_mapped_thp(mm)):  # re-reads nr_pte_mapped_thp each time round
            yield from k.ops.collapse_pte_mapped_thp(k, mm, _pte_mapped_thp(mm)[i], False)
            i += 1
    yield Atomic(f"{mm!r} mm_slot->nr_pte_mapped_thp = 0", _clear_pte_mapped_thp, (mm,),
                 touches=(mm,))
    yield UpWrite(mm.mmap_lock)


def _retract_one(k, vma, mm, addr, pmdp, hpage, is_khugepaged, is_target):
    """The part of retract_page_tables() (6.5) done under the mm's mmap_lock for write: recheck
    what the racy look could not see, collapse_and_free_pmd(), and for MADV_COLLAPSE's own mm
    set_huge_pmd()."""
    # vma_try_start_write(vma): per-VMA locks are not modelled (no walker takes one): succeeds
    if vma.anon_vma is not None:  # stable now: anon_vma_prepare() needs mmap_lock
        return SCAN_PAGE_ANON
    if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
        return SCAN_ANY_PROCESS
    if userfaultfd_wp(vma):
        return SCAN_PTE_UFFD_WP
    yield from collapse_and_free_pmd(k, mm, vma, addr, pmdp)
    if not is_khugepaged and is_target:
        return (yield from set_huge_pmd(k, vma, addr, pmdp, hpage))
    return SCAN_SUCCEED


def retract_page_tables(k, mapping, pgoff, target_mm, target_addr, hpage, is_khugepaged):
    """mm/khugepaged.c: retract_page_tables() (6.5) (the ``cc`` argument is its ``is_khugepaged``).

    Under i_mmap_rwsem for write, for each VMA mapping ``pgoff``: skip one with an anon_vma
    (racy look) or that does not map the whole aligned PMD range, or whose pmd is not a table;
    then, for khugepaged (any mm) or MADV_COLLAPSE (its own mm only), mmap_write_trylock() and
    retract under it (:func:`_retract_one`).  When the trylock fails, or MADV_COLLAPSE meets
    another mm, that mm's address goes on its khugepaged list for later, except for the target,
    whose result (SCAN_PTE_MAPPED_HUGEPAGE) goes back to the caller.  Returns the target's
    result (SCAN_FAIL if no VMA was the target)."""
    geo = k.geo
    target_result = SCAN_FAIL
    yield DownWrite(mapping.i_mmap_rwsem)  # i_mmap_lock_write()
    for vma in list(mapping.i_mmap):
        if not vma.pgoff <= pgoff < vma.pgoff + (vma.end - vma.start):
            continue  # vma_interval_tree_foreach(pgoff, pgoff)
        is_target = False
        if vma.anon_vma is not None:  # READ_ONCE(vma->anon_vma)
            continue  # result SCAN_PAGE_ANON, not the target's
        addr = vma.start + (pgoff - vma.pgoff)
        if addr % geo.hpage_pmd_nr or vma.end < addr + geo.hpage_pmd_nr:
            continue  # SCAN_VMA_CHECK
        mm = vma.mm
        is_target = mm is target_mm and addr == target_addr
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, addr)
        if result == SCAN_SUCCEED:
            result = SCAN_PTE_MAPPED_HUGEPAGE
            # trylock: the fault path takes mmap_lock, then the page lock we hold
            if (is_khugepaged or is_target) and (yield DownWriteTrylock(mm.mmap_lock)):
                result = yield from _retract_one(k, vma, mm, addr, pmdp, hpage, is_khugepaged,
                                                 is_target)
                yield UpWrite(mm.mmap_lock)
            elif not is_target:
                yield from khugepaged_add_pte_mapped_thp(k, mm, addr)
                continue
        if is_target:
            target_result = result
    yield UpWrite(mapping.i_mmap_rwsem)  # i_mmap_unlock_write()
    return target_result


def _retract_with_target(k, file, start, mm, addr, hpage, is_khugepaged):
    """collapse_file() (6.5): ``result = retract_page_tables(mapping, start, mm, addr, hpage,
    cc)``: the caller's result is its own mm's."""
    return (yield from k.ops.retract_page_tables(k, file, start, mm, addr, hpage, is_khugepaged))


def collapse_file(k, mm, addr, file, start, is_khugepaged=True):
    """mm/khugepaged.c: collapse_file() (6.5): as 6.6 (the reference's collapse_file_as()) but
    retract_page_tables() gets the target mm, address and hpage, and its result is the result."""
    return (yield from collapse_file_as(k, mm, addr, file, start, is_khugepaged,
                                        _retract_with_target))


def _find_lock_page(k, mapping, index):
    """find_lock_page(): look the page up with a reference, lock it, and look again if it was
    truncated meanwhile (pagecache_get_page() with FGP_LOCK)."""
    while True:
        page = yield Atomic("find_lock_page()", _find_get_page, (mapping, index))
        if page is None:
            return None
        yield Lock(page.lock)
        if page.mapping is mapping and mapping.pages.get(index) is page:
            return page
        yield from _drop_hpage(k, page, None)


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """mm/khugepaged.c: collapse_pte_mapped_thp() (6.5). Requires mmap_lock for write.

    The pmd is looked up first (find_pmd_or_thp_or_none(): safe under mmap_lock for write), then
    the VMA; the THP is found and locked in the page cache; then i_mmap_rwsem for write, and under
    the ptl step 1 checks that every PTE maps the matching subpage and step 2 removes their rmap
    (the PTEs themselves are left in the table, which nobody can reach any more); step 3 drops
    the references and counters; step 4 collapse_and_free_pmd(); step 5 optionally maps the THP
    by PMD.  The VMA write lock and the anon_vma lock of step 4 are not modelled."""
    geo = k.geo
    haddr = geo.haddr(addr)
    vma = mm.find_vma(haddr)  # vma_lookup()
    _mmap_assert_write_locked(k, mm)
    result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
    if result == SCAN_PMD_MAPPED:
        return result
    if vma is None or vma.file is None or haddr < vma.start or haddr + geo.hpage_pmd_nr > vma.end:
        return SCAN_VMA_CHECK
    if userfaultfd_wp(vma):
        return SCAN_PTE_UFFD_WP
    mapping = vma.file
    index = vma.linear_page_index(haddr)
    hpage = yield from _find_lock_page(k, mapping, index)
    if hpage is None:
        return SCAN_PAGE_NULL
    if hpage.index != index:  # !PageHead()
        return (yield from _drop_hpage(k, hpage, SCAN_FAIL))
    if hpage.nr != geo.hpage_pmd_nr:  # compound_order() != HPAGE_PMD_ORDER
        return (yield from _drop_hpage(k, hpage, SCAN_PAGE_COMPOUND))
    if result == SCAN_PMD_NONE:
        return (yield from _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd))
    if result != SCAN_SUCCEED:
        return (yield from _drop_hpage(k, hpage, result))

    # vma_start_write(vma): per-VMA locks are not modelled
    yield DownWrite(mapping.i_mmap_rwsem)  # i_mmap_lock_write()
    result = SCAN_FAIL
    start_pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, haddr)
    if start_pte is None:
        yield UpWrite(mapping.i_mmap_rwsem)  # drop_immap
        return (yield from _drop_hpage(k, hpage, result))
    # step 1: every mapped PTE maps the right subpage of hpage
    count = 0
    for i in range(geo.hpage_pmd_nr):
        ent = yield Load(start_pte.table, start_pte.idx + i)
        bad = _not_hpage_subpage(ent, hpage, i)
        if bad:  # abort: pte_unmap_unlock(), then drop_immap
            yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
            yield UpWrite(mapping.i_mmap_rwsem)
            return (yield from _drop_hpage(k, hpage, bad))
        count += not pte_none(ent)
    # step 2: adjust rmap; the PTEs stay (the table goes in step 4, unreachable meanwhile)
    for i in range(geo.hpage_pmd_nr):
        ent = yield Load(start_pte.table, start_pte.idx + i)
        if not pte_none(ent):
            hpage.mapcount -= 1  # page_remove_rmap(page, vma, false)
    yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
    # step 3: set proper refcount and mm_counters
    if count:
        folio_put(k, hpage, count)  # page_ref_sub()
        mm.rss[mm_counter_file(hpage)] -= count
    # step 4: remove the page table (anon_vma_lock_write() around it if vma->anon_vma)
    yield from collapse_and_free_pmd(k, mm, vma, haddr, pmdp)
    yield UpWrite(mapping.i_mmap_rwsem)
    # step 5: install the PMD mapping
    return (yield from _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd))


# ------------------------------------------------------------------------------------------------
# the callers (mm/khugepaged.c, 6.5)


def khugepaged_scan_mm_slot(k, mm, haddr):
    """mm/khugepaged.c: khugepaged_scan_mm_slot() (6.5) for one PMD range of a file VMA.

    The scan of the mm begins with khugepaged_collapse_pte_mapped_thps() (the list left by
    earlier retracts); then mmap_read_trylock, dropped around the file scan and collapse_file().
    On SCAN_PTE_MAPPED_HUGEPAGE (a THP already in the page cache, or retract could not take this
    mm's mmap_lock) the address is checked with find_pmd_or_thp_or_none() -- holding no lock, as
    in 6.5 -- and put on the list; that counts as success."""
    yield from khugepaged_collapse_pte_mapped_thps(k, mm)
    if not (yield DownReadTrylock(mm.mmap_lock)):
        return "mmap_lock busy"
    found = _file_range(k, mm, haddr)
    yield UpRead(mm.mmap_lock)
    if found is None:
        return SCAN_VMA_CHECK
    file, start = found
    result = yield from hpage_collapse_scan_file(k, mm, haddr, file, start, True)
    if result == SCAN_PTE_MAPPED_HUGEPAGE:
        result, _ = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
        if result == SCAN_SUCCEED:
            yield from khugepaged_add_pte_mapped_thp(k, mm, haddr)
    return result


def madvise_collapse(k, mm, start, end):
    """mm/khugepaged.c: madvise_collapse() (6.5) over [start, end): as 6.6, but
    SCAN_PTE_MAPPED_HUGEPAGE leads to mmap_write_lock() around
    collapse_pte_mapped_thp(install_pmd=true)."""
    return (yield from madvise_collapse_as(k, mm, start, end, write_locked=True))


#: the 6.6 finding on UFFDIO_POISON (pgconform.reference.POISON_RETRACT_FINDING), in 6.5 for a
#: marker already there: retract_page_tables() holds each mm's mmap_lock for write, so no
#: UFFDIO_POISON races it, but it does not look for poison markers either
#: (tests/selftest/test_uffd.py::test_poison_lost_by_retract_is_free_nonempty)
POISON_6_5_KEY = "pt.free-nonempty[PTE_MARKER_POISONED]@retract_page_tables"
POISON_6_5_FINDING = (
    "finding in 6.5 (as in 6.6): retract_page_tables() frees, with collapse_and_free_pmd(), a "
    "table holding a PTE_MARKER_POISONED that UFFDIO_POISON installed in a file VMA before the "
    "collapse: its checks do not cover poison markers; the next access reads the page instead "
    "of SIGBUS")


IMPLEMENTATION = Implementation(
    name="v6.5",
    overrides={
        "__pte_offset_map": __pte_offset_map,
        "pte_unmap": pte_unmap,
        "retract_page_tables": retract_page_tables,
        "collapse_file": collapse_file,
        "collapse_pte_mapped_thp": collapse_pte_mapped_thp,
        "khugepaged_scan_mm_slot": khugepaged_scan_mm_slot,
        "madvise_collapse": madvise_collapse,
    },
    description="Linux 6.5, before the series: __pte_offset_map() without RCU; retract under "
                "i_mmap_rwsem for write and mmap_write_trylock() of each mm (busy mms deferred "
                "to khugepaged's per-mm list), collapse_pte_mapped_thp() under mmap_lock for "
                "write; collapse_and_free_pmd() clears the PMD without spinlocks and pte_free()s "
                "the table at once",
    source="tag v6.5; mm/khugepaged.c and mm/pgtable-generic.c before a349d72fd9ef, 146b42e07494, "
           "1d65b771bc08, 1043173eb5eb, d50791c2bee9, cf95e337cb63",
    known_violations={
        "pt.walk-without-vma": "a real 6.5 bug: on SCAN_PTE_MAPPED_HUGEPAGE, "
                               "khugepaged_scan_mm_slot() calls find_pmd_or_thp_or_none() after "
                               "mmap_read_unlock(), walking page tables that munmap or exit may "
                               "be freeing (patch 11 of the series removed it with the deferred "
                               "list)",
        POISON_6_5_KEY: POISON_6_5_FINDING,
    },
    known_consequences={POISON_6_5_KEY: POISON_LOST_CONSEQUENCES},
)
