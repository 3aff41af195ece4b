"""Linux 6.5 (``v6.5``, :mod:`pgconform.versions.v6_5`): the design before the series, judged by the
same oracles as the reference, through deterministic schedules driven by hand.

6.5 frees a retracted page table at once and keeps walkers away by locks (mmap_lock and
i_mmap_rwsem for write) where 6.6 uses pml + ptl and an RCU grace period.  The suite must pass it
("different"), and must still reject the mix of 6.5's immediate free with 6.6's reduced locking
("wrong").
"""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.implementation import Implementation
from pgconform.kernel.objects import TablePmd
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import (
    SCAN_PTE_MAPPED_HUGEPAGE,
    SCAN_SUCCEED,
    SCAN_VMA_CHECK,
)
from pgconform.reference.khugepaged import retract_page_tables as retract_6_6
from pgconform.registry import resolve
from pgconform.sim.effects import (
    DownRead,
    DownWrite,
    IrqDisable,
    IrqEnable,
    Lock,
    Unlock,
    UpRead,
    UpWrite,
)
from pgconform.sim.errors import Violation
from pgconform.versions import v6_5
from tests.selftest.helpers import SHARED, finish, pending_pte_table_load, run_to_end, step_until

V6_5 = v6_5.IMPLEMENTATION
THP_ARCHES = ("x86_64", "x86_pae", "powerpc64", "s390", "sparc64")

#: mm0 and mm1 both map it at [4, 12), each with a table at PMD 1
TWO_MMS = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0), VmaSpec(1, 4, 8, 0)),
                    prefault=((0, 4, False), (1, 4, False)))

KHUGEPAGED_MM0 = Op("khugepaged", 0, 4)
#: a scan of mm1 at an address no VMA covers: only the deferred list is worked on
KHUGEPAGED_MM1_ELSEWHERE = Op("khugepaged", 1, 12)
READ_MM1_5 = Op("read", 1, 5)


def _pmd1(k, i):
    return k.mms[i].pmd_table.entries[1]


def _holder(sem, write=False):
    """A task that takes ``sem`` and, stepped once more, drops it."""
    yield DownWrite(sem) if write else DownRead(sem)
    yield UpRead(sem)


def test_registered():
    impl = resolve("v6.5")
    assert impl is V6_5 and not impl.expected
    assert "retract_page_tables" in impl.overrides


# ------------------------------------------------------------------------------------------------
# 6.5 passes


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_khugepaged_retracts_under_mmap_write(arch):
    """khugepaged alone: the table goes at once (pte_free through the arch's allocator)."""
    k = build_world(SHARED, V6_5, arch)
    t = start_op(k, "CPU1", KHUGEPAGED_MM0)
    finish(k)
    assert t.result == SCAN_SUCCEED and _pmd1(k, 0) is None
    assert not k.m.callbacks  # nothing deferred past a grace period


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_madv_collapse_maps_its_own_pmd_in_retract(arch):
    """MADV_COLLAPSE: retract_page_tables() itself calls set_huge_pmd() for the target."""
    k = build_world(SHARED, V6_5, arch)
    t = start_op(k, "CPU1", Op("madv_collapse", 0, 4))
    finish(k)
    assert t.result == SCAN_SUCCEED
    assert type(_pmd1(k, 0)).__name__ == "HugePmd"


def test_busy_mm_is_deferred_then_collapsed_on_its_next_scan():
    """mm1's mmap_lock is held: retract skips mm1 (mmap_write_trylock fails) and lists PMD 1 in
    mm1's mm_slot; the next scan of mm1 runs khugepaged_collapse_pte_mapped_thps() and frees it."""
    k = build_world(TWO_MMS, V6_5)
    m = k.m
    mm1 = k.mms[1]
    holder = m.spawn("CPU2", _holder(mm1.mmap_lock), "mmap_read_lock(mm1)")
    m.step(holder)
    scan0 = start_op(k, "CPU0", KHUGEPAGED_MM0)
    run_to_end(m, scan0)
    assert scan0.result == SCAN_SUCCEED
    assert _pmd1(k, 0) is None and type(_pmd1(k, 1)) is TablePmd
    assert mm1.context[v6_5.PTE_MAPPED_THP] == [4]
    run_to_end(m, holder)
    scan1 = start_op(k, "CPU1", KHUGEPAGED_MM1_ELSEWHERE)
    run_to_end(m, scan1)
    assert scan1.result == SCAN_VMA_CHECK
    assert _pmd1(k, 1) is None and mm1.context[v6_5.PTE_MAPPED_THP] == []
    finish(k)


def test_deferred_list_is_kept_while_the_mm_is_busy():
    """khugepaged_collapse_pte_mapped_thps() only trylocks: a busy mm keeps its list."""
    k = build_world(TWO_MMS, V6_5)
    m = k.m
    mm1 = k.mms[1]
    holder = m.spawn("CPU2", _holder(mm1.mmap_lock), "mmap_read_lock(mm1)")
    m.step(holder)
    run_to_end(m, start_op(k, "CPU0", KHUGEPAGED_MM0))
    run_to_end(m, start_op(k, "CPU1", Op("khugepaged", 1, 12)))  # read trylock ok, write fails
    assert mm1.context[v6_5.PTE_MAPPED_THP] == [4] and type(_pmd1(k, 1)) is TablePmd
    run_to_end(m, holder)
    finish(k)


def test_deferred_list_holds_max_pte_mapped_thp():
    k = build_world(SHARED, V6_5)
    mm = k.mms[0]

    def add_many():
        added = []
        for i in range(v6_5.MAX_PTE_MAPPED_THP + 1):
            added.append((yield from v6_5.khugepaged_add_pte_mapped_thp(k, mm, 4 * i)))
        return added

    t = k.m.spawn("CPU0", add_many(), "add")
    run_to_end(k.m, t)
    assert t.result == [True] * v6_5.MAX_PTE_MAPPED_THP + [False]
    assert len(mm.context[v6_5.PTE_MAPPED_THP]) == v6_5.MAX_PTE_MAPPED_THP


def test_other_mms_spinlock_holders_are_not_readers_of_the_table():
    """A task of another mm inside a spinlocked section when 6.5 frees the table at once: it
    cannot have read a PMD of mm0 (every walker of mm0 but GUP-fast is locked out), so the free
    is not a reuse before a grace period (the oracle used to count it as a reader)."""
    k = build_world(TWO_MMS, V6_5)
    m = k.m
    ptl = k.mms[1].pmd_table.ptl

    def spin():
        yield Lock(ptl)
        yield Unlock(ptl)

    other = m.spawn("CPU2", spin(), "spin_lock(mm1 pmd ptl)")
    other.mm = k.mms[1]
    m.step(other)
    run_to_end(m, start_op(k, "CPU0", KHUGEPAGED_MM0))
    assert _pmd1(k, 0) is None
    finish(k)


def test_gup_fast_is_waited_for_by_the_tlb_flush_ipi():
    """GUP-fast of mm0 (IRQs off) is the one walker the locks do not exclude: on x86 the TLB
    flush of pmdp_collapse_flush() waits for it to re-enable interrupts before the table goes."""
    k = build_world(SHARED, V6_5, "x86_64")
    m = k.m

    def irqs_off():
        yield IrqDisable()
        yield IrqEnable()

    gup = m.spawn("CPU2", irqs_off(), "GUP-fast(mm0)")
    gup.mm = k.mms[0]
    m.step(gup)
    scan = start_op(k, "CPU0", KHUGEPAGED_MM0)
    m.run(scan, m.step_bound)
    assert not scan.done and m.blocker(scan) is not None  # waiting in the IPI
    assert type(_pmd1(k, 0)) is not TablePmd  # already cleared, not yet freed
    finish(k)
    assert scan.result == SCAN_SUCCEED


# ------------------------------------------------------------------------------------------------
# readers: excluded by locks in 6.5, by RCU in 6.6, by neither in the mix


def _reader_in_mm1_then_khugepaged(impl):
    """A read fault in mm1 has mapped its PTE table (pte_offset_map_nolock) and is about to read
    an entry; khugepaged collapses the range from mm0; then the fault goes on."""
    k = build_world(TWO_MMS, impl)
    m = k.m
    fault = start_op(k, "CPU1", READ_MM1_5)
    step_until(m, fault, pending_pte_table_load)
    table = fault.pending.page
    scan = start_op(k, "CPU0", KHUGEPAGED_MM0)
    run_to_end(m, scan)
    return k, fault, table


def test_6_5_reader_holding_mmap_lock_keeps_its_table():
    """6.5: retract cannot take mm1's mmap_lock for write while the fault holds it for read, so
    mm1's table stays (deferred to khugepaged's list) and the reader is safe without RCU."""
    k, fault, table = _reader_in_mm1_then_khugepaged(V6_5)
    assert fault.rcu == 0  # no RCU read-side section in 6.5's __pte_offset_map()
    assert not table.freed and k.mms[1].context[v6_5.PTE_MAPPED_THP] == [4]
    finish(k)


def test_6_6_reader_in_rcu_keeps_its_table():
    """6.6: the table is retracted under the reader, but freed only after its grace period."""
    k, fault, table = _reader_in_mm1_then_khugepaged(REFERENCE)
    assert fault.rcu == 1 and not table.freed
    finish(k)


def _retract_6_6_locking(k, mapping, pgoff, target_mm, target_addr, hpage, is_khugepaged):
    """6.6's retract_page_tables() (i_mmap_rwsem for read, pml + ptl, no mmap_lock) in 6.5's
    calling convention."""
    yield from retract_6_6(k, mapping, pgoff)
    return SCAN_SUCCEED if is_khugepaged else SCAN_PTE_MAPPED_HUGEPAGE


def _pte_free_now(k, mm, pgtable):
    """6.5's free: pte_free() at once."""
    yield from k.ops.pte_free(k, mm, pgtable)


#: 6.5 (no RCU in __pte_offset_map, immediate free) with 6.6's reduced retract locking
MIX = Implementation(
    name="v6.5-free-with-6.6-locking",
    overrides={**V6_5.overrides, "retract_page_tables": _retract_6_6_locking,
               "pte_free_defer": _pte_free_now},
    expected=("pt.use-after-free",),
)


def test_6_5_free_with_6_6_locking_is_caught():
    """Retracting under i_mmap_rwsem for read only, without mmap_lock, and freeing at once: the
    fault in mm1 reads its table after it was freed."""
    with pytest.raises(Violation) as excinfo:
        k, fault, _ = _reader_in_mm1_then_khugepaged(MIX)
        run_to_end(k.m, fault)
    assert excinfo.value.clause == "pt.use-after-free"


# ------------------------------------------------------------------------------------------------
# where the oracles' allowances for 6.5 stop


def _clear_and_free(k, with_i_mmap_write):
    """collapse_and_free_pmd() of mm0's PMD 1, which still maps file page 0, under mmap_lock for
    write, with or without the file's i_mmap_rwsem for write."""
    mm = k.mms[0]
    vma = mm.vmas[0]
    yield DownWrite(mm.mmap_lock)
    if with_i_mmap_write:
        yield DownWrite(vma.file.i_mmap_rwsem)
    yield from v6_5.collapse_and_free_pmd(k, mm, vma, 4, mm.pmd_offset(4, k.geo))
    if with_i_mmap_write:
        yield UpWrite(vma.file.i_mmap_rwsem)
    yield UpWrite(mm.mmap_lock)


def test_pmd_clear_without_pml_needs_i_mmap_write_too():
    k = build_world(SHARED, V6_5)
    t = k.m.spawn("CPU0", _clear_and_free(k, False), "collapse_and_free_pmd")
    with pytest.raises(Violation) as excinfo:
        run_to_end(k.m, t)
    assert excinfo.value.clause == "pt.pmd-write-unlocked"


def test_stale_ptes_left_in_a_freed_table_are_still_accounted():
    """Freeing a table with a live file PTE is allowed under 6.5's locks only because step 2
    removed its rmap: without that, the end-of-run accounting catches the lost mapping."""
    k = build_world(SHARED, V6_5)
    t = k.m.spawn("CPU0", _clear_and_free(k, True), "collapse_and_free_pmd")
    run_to_end(k.m, t)
    with pytest.raises(Violation) as excinfo:
        finish(k)
    assert excinfo.value.clause.startswith("acct.")


# ------------------------------------------------------------------------------------------------
# a real 6.5 weakness the model finds


def test_6_5_scan_walks_page_tables_without_mmap_lock():
    """6.5's khugepaged_scan_mm_slot(), on SCAN_PTE_MAPPED_HUGEPAGE, calls
    find_pmd_or_thp_or_none() after mmap_read_unlock(): a walk down the page tables with no lock
    against free_pgtables() (removed in 6.6 by d50791c2bee9, which retakes mmap_read_lock).
    Here the range is already a THP in the page cache."""
    world = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), tables=((0, 4),))
    strict = attrs.evolve(V6_5, known_violations={})
    k = build_world(world, strict)
    start_op(k, "CPU0", KHUGEPAGED_MM0)
    with pytest.raises(Violation) as excinfo:
        finish(k)
    assert excinfo.value.clause == "pt.walk-without-vma"
    # registered with it as a known violation: counted, and the run goes on to be judged
    assert "pt.walk-without-vma" in V6_5.known_violations
    k = build_world(world, V6_5)
    start_op(k, "CPU0", KHUGEPAGED_MM0)
    finish(k)
    assert k.m.tolerated_hits == {"pt.walk-without-vma": 1}
