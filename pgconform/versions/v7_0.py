"""Linux 7.0: the series' functions as mainline has them now, run in a 7.0 kernel (``v7.0``).

What changed since 6.6 in the code the series wrote (mm/khugepaged.c, mm/pgtable-generic.c,
mm/memory.c):

* C1 (6.13, Qi Zheng): pte_offset_map_nolock() split into pte_offset_map_ro_nolock() and
  pte_offset_map_rw_nolock(); every caller converted (the 7.0 environment,
  :data:`pgconform.kernel.version.V7_0`, makes the callers use them);
* C2 (6.14): retract_page_tables() rechecks the pmd's state under pml (6c18ec9af86c), because
  MADV_DONTNEED may now reclaim the empty table (and a fault install a new one) meanwhile;
* file_backed_vma_is_retractable() (Lorenzo Stoakes, 2025): the anon_vma and uffd-wp checks,
  plus VMA_MAYBE_GUARD_BIT for guard regions in file-backed VMAs, made before and under the ptl;
* try_collapse_pte_mapped_thp(): step 2 maps with pte_offset_map_rw_nolock() and rechecks
  pmd_same() under the ptl; the RCU read lock is held from step 2 to step 4; step 4 rechecks
  pmd_same() when it takes pml and ptl afresh, and skips the clear if the table changed.

The arches are 7.0's (kernel/version.py): x86-64 frees page tables by RCU and reclaims empty PTE
tables; s390 has one table per page.  The v1/v2-era pieces (powerpc PageActive, sparc64) are 6.6's
and unchanged since.

Not modelled: folio batching in step 2 (folio_pte_batch(), clear_ptes(): the model clears one
entry per step, which only adds interleavings) and userfaultfd RWP (after 7.0).  UFFDIO_MOVE is
part of the 7.0 environment (kernel/userfaultfd.py, on anonymous VMAs).

Sources: v7.0 (the v7.0.0 tree of github julianw1010/hydra-7.0.0-fork, 826db671768a),
mm/khugepaged.c: retract_page_tables(),
file_backed_vma_is_retractable(), try_collapse_pte_mapped_thp(), check_pmd_state().
"""

from __future__ import annotations

from pgconform.implementation import Implementation
from pgconform.kernel.arch import arches_except, arches_where
from pgconform.kernel.filemap import folio_put, mm_counter_file
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.mprotect import (
    PLAIN_READ_RACE,
    PLAIN_READ_RACE_CONSEQUENCES,
    PLAIN_READ_RACE_WHY,
)
from pgconform.kernel.objects import VMA_MAYBE_GUARD, pmd_none, pmd_trans_huge
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.kernel.rmap import mm_find_pmd
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import (
    SCAN_FAIL,
    SCAN_PMD_MAPPED,
    SCAN_PMD_NONE,
    SCAN_PTE_UFFD_WP,
    SCAN_SUCCEED,
    SCAN_VMA_CHECK,
    _abort,
    _maybe_install_pmd,
    _noop,
    folio_and_step1_as,
    i_mmap_lock_read,
    i_mmap_unlock_read,
    step2_as,
    userfaultfd_armed,
    userfaultfd_wp,
)
from pgconform.sim.effects import Atomic, Load, Lock, Unlock

#: 7.0 renamed SCAN_PMD_NONE; the model keeps one name for both
SCAN_NO_PTE_TABLE = SCAN_PMD_NONE


def check_pmd_state(k, pmdp):
    """mm/khugepaged.c: check_pmd_state() (6.14+, 7.0): the lockless classification of a pmd that
    find_pmd_or_thp_or_none() does after its walk: none -> SCAN_NO_PTE_TABLE, huge ->
    SCAN_PMD_MAPPED, a table -> SCAN_SUCCEED (the model has no migration or bad pmds)."""
    pmde = yield from k.ops.pmdp_get_lockless(k, pmdp)
    if pmd_none(pmde):
        return SCAN_NO_PTE_TABLE
    if pmd_trans_huge(pmde):
        return SCAN_PMD_MAPPED
    return SCAN_SUCCEED


def find_pmd_or_thp_or_none(k, mm, addr):
    """mm/khugepaged.c: find_pmd_or_thp_or_none() (7.0): mm_find_pmd(), then check_pmd_state().
    Returns ``(result, pmdp)``."""
    pmdp = yield from mm_find_pmd(k, mm, addr)
    return (yield from check_pmd_state(k, pmdp)), pmdp


def file_backed_vma_is_retractable(vma) -> bool:
    """mm/khugepaged.c: file_backed_vma_is_retractable() (7.0): no anon_vma (a private mapping
    that was written to, or filled by UFFDIO_COPY), no uffd-wp registration (markers), and no
    guard regions ever installed (VMA_MAYBE_GUARD_BIT, set atomically before the markers go in
    under the ptl, so the check under the ptl excludes the race)."""
    return (vma.anon_vma is None and not userfaultfd_wp(vma)
            and VMA_MAYBE_GUARD not in vma.flags)


def retract_page_tables(k, mapping, pgoff):
    """mm/khugepaged.c: retract_page_tables() (7.0).

    As 6.6 (i_mmap_rwsem for read only, mmu_notifier range, pml then nested ptl, the clear and
    pte_free_defer()), with two changes: file_backed_vma_is_retractable() before and under the
    ptl, and check_pmd_state() under pml before the ptl is even derived (6c18ec9af86c): the table
    found locklessly may have been reclaimed by MADV_DONTNEED and a new, empty one installed; the
    huge folio's lock keeps any new table empty, so the state is checked, not pmd_same()."""
    yield from retract_page_tables_as(k, mapping, pgoff)


def retract_page_tables_as(k, mapping, pgoff, retractable=file_backed_vma_is_retractable,
                           pmd_state_recheck=True):
    """retract_page_tables() (7.0) with its retractable test and its pmd-state recheck under pml
    as parameters, for the mutants of 7.0 behaviour (pgconform.zoo)."""
    geo = k.geo
    yield from i_mmap_lock_read(mapping)
    for vma in list(mapping.i_mmap):
        addr = vma.start + (pgoff - vma.pgoff)
        if addr % geo.hpage_pmd_nr or addr < vma.start or vma.end < addr + geo.hpage_pmd_nr:
            continue
        mm = vma.mm
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, addr)
        if result != SCAN_SUCCEED:
            continue  # window: retract_page_tables finds no table
        if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
            continue  # window: retract_page_tables finds the mm exiting
        if not retractable(vma):
            continue
        end = addr + geo.hpage_pmd_nr
        yield from mmu_notifier_invalidate_range_start(k, mm, addr, end)
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        success = False
        if not pmd_state_recheck or (yield from check_pmd_state(k, pmdp)) == SCAN_SUCCEED:
            ptl = yield from k.ops.pte_lockptr(k, mm, (yield Load(pmdp.table, pmdp.idx)))
            if ptl is not pml:
                yield Lock(ptl, 1)  # spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
            if retractable(vma):
                pgt_pmd = yield from k.ops.pmdp_collapse_flush(k, vma, addr, pmdp)
                yield from k.ops.pmdp_get_lockless_sync(k)
                success = True
            # else: window: retract_page_tables recheck under ptl fails
            if ptl is not pml:
                yield Unlock(ptl)
        # else: window: retract_page_tables' pmd state changed before pml
        yield Unlock(pml)
        yield from mmu_notifier_invalidate_range_end(k, mm, addr, end)
        if success:
            yield from mm_dec_nr_ptes(k, mm)
            yield from k.ops.pte_free_defer(k, mm, k.pmd_pgtable(pgt_pmd))
    yield from i_mmap_unlock_read(mapping)


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """mm/khugepaged.c: try_collapse_pte_mapped_thp() (7.0), which the void
    collapse_pte_mapped_thp() wraps; the model returns its scan result to the callers.

    mmap_lock held for read.  VMA first; the locked PMD-sized folio from the page cache; step 1
    under pte_offset_map_lock(); mmu_notifier start; pml early for uffd-armed private VMAs; step 2
    maps with pte_offset_map_rw_nolock(), locks, and aborts unless pmd_same() against its
    snapshot; clears the PTEs and their rmap, keeping the RCU read lock (no pte_unmap()) through
    step 4; step 3 drops the references; step 4 takes pml and, if distinct, the ptl nested and
    rechecks pmd_same() (mismatch: flush_tlb_mm() and unlock, the references already dropped),
    clears the PMD, pte_unmap_unlock(), pte_free_defer(); step 5 optionally maps by PMD.

    Finding (unconfirmed upstream): without split PTE ptlocks (ptl == pml) step 4 has no
    recheck, and MADV_DONTNEED's PT reclaim can free the table emptied by step 2 before step 4
    takes the lock again: step 4 then clears a none PMD and frees pmd_pgtable() of it
    (tests/selftest/test_versions.py::test_finding_collapse_without_split_ptlocks)."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd))


def collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, step4_recheck=True):
    """try_collapse_pte_mapped_thp() (7.0) with step 4's pmd_same() recheck as a parameter."""
    geo = k.geo
    haddr = geo.haddr(addr)
    end = haddr + geo.hpage_pmd_nr
    vma = mm.find_vma(haddr)
    pml = None
    nr_ptes = 0
    if vma is None or vma.file is None or haddr < vma.start or end > vma.end:
        return SCAN_VMA_CHECK
    result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, haddr)
    if result == SCAN_PMD_MAPPED:
        return result
    if userfaultfd_wp(vma):
        return SCAN_PTE_UFFD_WP
    found = yield from folio_and_step1_as(k, mm, vma, haddr, install_pmd,
                                          "filemap_lock_folio()")
    if type(found) is not tuple:
        return found
    hpage, pmdp = found
    result = SCAN_FAIL

    yield from mmu_notifier_invalidate_range_start(k, mm, haddr, end)
    if userfaultfd_armed(vma) and not vma.shared:
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
    start_pte, pgt_pmd, ptl = yield from k.ops.pte_offset_map_rw_nolock(k, mm, pmdp, haddr)
    if start_pte is None:
        # window: collapse_pte_mapped_thp loses the table between steps
        return (yield from _abort(k, mm, vma, haddr, hpage, nr_ptes, None, ptl, pml, True,
                                  result))
    if pml is None:
        yield Lock(ptl)
    elif ptl is not pml:
        yield Lock(ptl, 1)
    if pgt_pmd != (yield from k.ops.pmdp_get_lockless(k, pmdp)):
        # window: collapse_pte_mapped_thp step 2 finds the pmd changed
        return (yield from _abort(k, mm, vma, haddr, hpage, nr_ptes, start_pte, ptl, pml, True,
                                  result))

    # step 2: recheck and clear under ptl
    nr_ptes, bad = yield from step2_as(k, mm, haddr, hpage, start_pte)
    if bad:
        # window: collapse_pte_mapped_thp step 2 recheck fails
        return (yield from _abort(k, mm, vma, haddr, hpage, nr_ptes, start_pte, ptl, pml, True,
                                  bad))
    if pml is None:
        yield Unlock(ptl)  # the RCU read lock stays: no pte_unmap() here in 7.0

    # step 3: set proper refcount and mm_counters
    if nr_ptes:
        folio_put(k, hpage, nr_ptes)
        mm.rss[mm_counter_file(hpage)] -= nr_ptes

    # step 4: remove the page table
    if pml is None:
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        if ptl is not pml:
            yield Lock(ptl, 1)
            if step4_recheck and pgt_pmd != (yield from k.ops.pmdp_get_lockless(k, pmdp)):
                # window: collapse_pte_mapped_thp step 4 finds the pmd changed
                yield Atomic(f"flush_tlb_mm({mm!r})", _noop)
                return (yield from _unlock(k, mm, haddr, hpage, start_pte, ptl, pml, result))
    pgt_pmd = yield from k.ops.pmdp_collapse_flush(k, vma, haddr, pmdp)
    yield from k.ops.pmdp_get_lockless_sync(k)
    yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
    if ptl is not pml:
        yield Unlock(pml)
    yield from mmu_notifier_invalidate_range_end(k, mm, haddr, end)
    yield from mm_dec_nr_ptes(k, mm)
    yield from k.ops.pte_free_defer(k, mm, k.pmd_pgtable(pgt_pmd))
    return (yield from _maybe_install_pmd(k, vma, haddr, pmdp, hpage, install_pmd))


# ------------------------------------------------------------------------------------------------
# x86 table freeing in 7.0: the destructor waits for the grace period too


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/x86/mm/pgtable.c: ___pte_free_tlb() (7.0): paravirt_tlb_remove_table() ->
    tlb_remove_table() only.  Since 6.15 ("mm: pgtable: move pagetable_*_dtor() to
    __tlb_remove_table()") the destructor, and with ALLOC_SPLIT_PTLOCKS the ptlock's kfree, runs
    when the table is freed, after the grace period: a reader waiting on the ptl of a table
    MADV_DONTNEED reclaimed still finds its lock."""
    from pgconform.kernel.mmu_gather import tlb_remove_table

    yield from tlb_remove_table(k, tlb, pgtable)


def _dtor_and_free(m, t, k, table):
    k.free_pte_table(m, t, table)


def __tlb_remove_table(k, table):
    """include/asm-generic/tlb.h: __tlb_remove_table() (7.0): pagetable_dtor() (ptlock_free())
    and pagetable_free(), in the RCU callback of the table batch."""
    yield Atomic(f"pagetable_dtor_free({table!r})", _dtor_and_free, (k, table), touches=(table,))


X86_7_0 = {"__pte_free_tlb": __pte_free_tlb, "__tlb_remove_table": __tlb_remove_table}

#: the arches where 7.0 reclaims empty PTE tables (ARCH_SUPPORTS_PT_RECLAIM)
PT_RECLAIM_ARCHES = arches_where(lambda arch: arch.pt_reclaim, "7.0")

#: A finding of the suite in the 7.0 kernel around the series, not in its functions (unconfirmed
#: upstream): UFFDIO_WRITEPROTECT of a uffd-wp registered shmem range races MADV_DONTNEED's PT
#: reclaim.  change_pmd_range() allocates the table of a none PMD so that it can put markers in
#: it (change_pmd_prepare()), then looks at the PMD again and skips the range if it is none; the
#: reclaim can empty and free the table in between (the zap that emptied it ran before the VMA was
#: protected, so it left no marker).  The range ends up with neither PTEs nor markers, and a later
#: write is not reported to the monitor.  Either order of the two calls alone leaves the markers.
#: tests/selftest/test_versions.py::test_finding_uffd_writeprotect_against_pt_reclaim shows it.
#: (A table that was there already and that the zap emptied, freed between pte_alloc()'s read
#: and the pmd_none() test, is the plain-read race: kernel/mprotect.py PLAIN_READ_RACE.)
UFFD_WP_RECLAIM_FINDING = (
    "finding in the 7.0 kernel (mm/mprotect.c change_pmd_range() against MADV_DONTNEED's PT "
    "reclaim, 6.14+): the table change_pmd_prepare() allocated is reclaimed before the "
    "pmd_none() check, so UFFDIO_WRITEPROTECT skips the range and installs no markers")


#: Findings of the suite on guard regions in 7.0 (unconfirmed upstream), each scoped to where it
#: happens.  try_collapse_pte_mapped_thp() drops the ptl of a shared VMA between step 2 (PTEs
#: cleared) and step 4 (pml, ptl again, pmd_same() only), under the mmap_lock for read;
#: MADV_GUARD_INSTALL, also under a read lock and taking no folio lock, can put guard markers into
#: the emptied table there, and step 4 frees it with them
#: (tests/selftest/test_guard.py::test_guard_survives_collapse_pte_mapped_thp, a strict xfail).
GUARD_COLLAPSE_KEY = "pt.free-nonempty[PTE_MARKER_GUARD]@collapse_pte_mapped_thp"
GUARD_COLLAPSE_FINDING = (
    "finding in 7.0: try_collapse_pte_mapped_thp() drops the ptl of a shared VMA between step 2 "
    "(PTEs cleared) and step 4 (pmd_same() recheck only); MADV_GUARD_INSTALL can put guard "
    "markers into the emptied table there, and step 4 frees it with them (the guarded address "
    "then maps the THP instead of SIGSEGV)")
#: madvise_guard_install() over uffd-wp protection of a file VMA never finishes:
#: guard_install_pte_entry() takes the uffd-wp marker (or uffd-wp PTE) for a populated entry,
#: the zap keeps (or makes) the marker, and restart_syscall() loops
#: (tests/selftest/test_guard.py::test_guard_install_over_uffd_wp_finishes, a strict xfail).
#: The machine counts the no-progress and kills the task, which ends at restart_syscall().
GUARD_UFFD_WP_KEY = "sched.no-progress@madvise_guard_install"
GUARD_UFFD_WP_FINDING = (
    "finding in 7.0: MADV_GUARD_INSTALL over uffd-wp markers (or uffd-wp PTEs) of a file VMA "
    "never finishes: guard_install_pte_entry() takes them for populated entries, the zap keeps "
    "them, and restart_syscall() loops (the model kills the task there)")


def _unlock(k, mm, haddr, hpage, start_pte, ptl, pml, result):
    """try_collapse_pte_mapped_thp()'s ``unlock:`` label (7.0): as abort, without undoing the
    references and counters step 3 already dropped."""
    return (yield from _abort(k, mm, None, haddr, hpage, 0, start_pte, ptl, pml, True, result))


IMPLEMENTATION = Implementation(
    name="v7.0",
    kernel="7.0",
    overrides={
        "find_pmd_or_thp_or_none": find_pmd_or_thp_or_none,
        "retract_page_tables": retract_page_tables,
        "collapse_pte_mapped_thp": collapse_pte_mapped_thp,
    },
    arch_overrides=dict.fromkeys(arches_where(lambda arch: arch.family == "x86"), X86_7_0),
    known_violations={**POISON_KNOWN_VIOLATIONS, GUARD_COLLAPSE_KEY: GUARD_COLLAPSE_FINDING,
                      GUARD_UFFD_WP_KEY: GUARD_UFFD_WP_FINDING,
                      PLAIN_READ_RACE: PLAIN_READ_RACE_WHY},
    known_consequences={**POISON_KNOWN_CONSEQUENCES,
                        GUARD_COLLAPSE_KEY: ("pt.free-nonempty[PTE_MARKER_GUARD]",
                                             "data.guard-marker-lost"),
                        PLAIN_READ_RACE: PLAIN_READ_RACE_CONSEQUENCES},
    arch_known_violations={arch: {"data.uffd-marker-lost": UFFD_WP_RECLAIM_FINDING,
                                  "data.uffd-wp-write-unnotified": UFFD_WP_RECLAIM_FINDING}
                           for arch in PT_RECLAIM_ARCHES},
    arches=arches_except("s390-6.7"),  # s390 in 7.0 is the s390 record's 7.0 configuration
    description="Linux 7.0: retract_page_tables() with file_backed_vma_is_retractable() and the "
                "pmd-state recheck under pml; try_collapse_pte_mapped_thp() with "
                "pte_offset_map_rw_nolock() and its pmd_same() rechecks; in a 7.0 kernel (callers "
                "on the ro/rw API, MADV_DONTNEED reclaiming empty PTE tables, guard regions, x86 "
                "freeing page tables by RCU, s390 one table per page)",
    source="v7.0 mm/khugepaged.c; 6c18ec9af86c (retract recheck), Qi Zheng's "
           "pte_offset_map_{ro|rw}_nolock() series (6.13), Lorenzo Stoakes' "
           "file_backed_vma_is_retractable() (2025)",
)
