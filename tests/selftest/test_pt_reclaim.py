"""PT reclaim (6.14+, as in 7.0: 6375e95f381e, mm/memory.c): MADV_DONTNEED frees the
PTE tables it empties, through its mmu_gather, after a grace period (pgconform/kernel/memory.py
zap_pte_range(), pgconform/kernel/mmu_gather.py).

Hand-driven schedules, as in test_munmap.py: the fast path (pml taken by trylock, or already held as
the ptl) and the slow path (pml busy: rescan under pml and ptl), a table a fault refills before the
slow path keeps, lockless readers (an RCU-only fault, GUP-fast with IRQs off, and every reader kind
of the sweep) racing the reclaim; broken variants are caught; under 6.6, and on arches without
ARCH_SUPPORTS_PT_RECLAIM, nothing is reclaimed.
"""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.harness.sweep import Pair, explore_pair
from pgconform.implementation import Implementation
from pgconform.kernel import memory, mmu_gather
from pgconform.kernel.objects import PTE_MARKER_UFFD_WP, Pte
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.kernel.pgtable import pmd_clear
from pgconform.oracle.pagetable import DETACHED, LINKED, life
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.sim.effects import IpiSync, Load, Lock, Trylock, Unlock
from pgconform.sim.machine import call_path
from pgconform.versions import v7_0
from pgconform.versions.v7_0 import PT_RECLAIM_ARCHES
from tests.selftest.helpers import (
    SHARED,
    SHARED_TWO_TABLES,
    assert_clause,
    explore_both_ways,
    finish,
    in_path,
    pending_pte_table_load,
    step_until,
)

IMPL_7_0 = Implementation(name="pt-reclaim-7.0", kernel="7.0")

#: registered for uffd-wp and write-protected: page 4 is a uffd-wp PTE, 5-7 are uffd-wp markers
UFFD_WP = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, uffd_wp=True),), prefault=((0, 4, False),),
                    writeprotect=((0, 4, 4),))

#: the whole of PMD 1
DONTNEED_PMD1 = Op("dontneed", 0, 4, 4)
READ_5 = Op("read", 0, 5)
READ_9 = Op("read", 0, 9)

X86_64_PT_RECLAIM = list(PT_RECLAIM_ARCHES)


def run_tracing(m, t):
    """Step ``t`` while it can run; return the names of the functions it ran in."""
    seen = set()
    while not t.done and m.blocker(t) is None:
        seen.update(call_path(t.gen))
        m.step(t)
    return seen


def trylocks(m, t):
    """The outcomes of ``t``'s spin_trylock()s so far."""
    return [res for task, _path, eff, res in m.trace if task is t and type(eff) is Trylock]


# ------------------------------------------------------------------------------------------------
# the fast path


@pytest.mark.parametrize("arch", X86_64_PT_RECLAIM)
def test_dontneed_frees_the_empty_table_after_a_grace_period(arch):
    """MADV_DONTNEED of all of PMD 1 zaps page 4 and, still under the ptl, detaches the table
    (zap_empty_pte_table(): pml by trylock, or no trylock at all when pml is the ptl); nr_ptes
    drops at once, the table goes to the gather's batch and is freed after a grace period."""
    k = build_world(SHARED_TWO_TABLES, IMPL_7_0, arch)
    m, mm = k.m, k.mms[0]
    t1, t2 = k.tables
    assert mm.nr_ptes == 2
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    seen = run_tracing(m, zap)
    assert zap.done and zap.result == "ok"
    assert "zap_empty_pte_table" in seen and "zap_pte_table_if_empty" not in seen
    # split ptlocks: pml is another lock, taken by trylock; without them it is the ptl, held
    assert trylocks(m, zap) == ([] if arch == "x86_64-nosplit" else [True])
    assert mm.pmd_table.entries[1] is None and mm.pmd_table.entries[2] is not None
    assert mm.nr_ptes == 1 and mm.rss["MM_SHMEMPAGES"] == 1
    assert life(t1).state == DETACHED and not t1.freed and life(t2).state == LINKED
    # MMU_GATHER_RCU_TABLE_FREE (x86-64 in 7.0): one batch, queued with call_rcu()
    assert len(m.callbacks) == 1 and m.callbacks[0].fn is mmu_gather.tlb_remove_table_rcu
    finish(k)
    assert t1.freed and t1.released and not t2.released
    # the range faults in again through a new table
    r = start_op(k, "CPU1", READ_5)
    finish(k)
    assert r.result == "ok" and mm.nr_ptes == 2 and mm.pmd_table.entries[1] is not None


def test_dontneed_of_both_pmds_frees_both_tables_in_one_batch():
    k = build_world(SHARED_TWO_TABLES, IMPL_7_0, "x86_64")
    m, mm = k.m, k.mms[0]
    zap = start_op(k, "CPU0", Op("dontneed", 0, 4, 8))
    run_tracing(m, zap)
    assert zap.done and mm.nr_ptes == 0 and mm.pmd_table.entries == [None] * 4
    (cb,) = m.callbacks
    assert cb.args[1].tables == list(k.tables)
    finish(k)
    assert all(tb.freed for tb in k.tables)


def test_a_zap_of_part_of_the_table_keeps_it():
    """pte_table_reclaim_possible(): the zap must cover the whole PMD range; [4, 6) empties the
    table (only page 4 was mapped) but does not look at the rest of it."""
    k = build_world(SHARED_TWO_TABLES, IMPL_7_0, "x86_64")
    m, mm = k.m, k.mms[0]
    t1 = k.tables[0]
    zap = start_op(k, "CPU0", Op("dontneed", 0, 4, 2))
    seen = run_tracing(m, zap)
    assert zap.done and "zap_empty_pte_table" not in seen
    assert life(t1).state == LINKED and t1.is_empty() and mm.nr_ptes == 2 and not m.callbacks
    finish(k)


def test_an_entry_left_behind_keeps_the_table():
    """any_skipped: the zap of a uffd-wp range puts a marker back for the uffd-wp PTE of page 4 and
    keeps the markers of 5-7, so the table is not empty and stays."""
    k = build_world(UFFD_WP, IMPL_7_0, "x86_64")
    m, mm = k.m, k.mms[0]
    (t1,) = k.tables
    assert type(t1.entries[0]) is Pte and t1.entries[0].uffd_wp
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    seen = run_tracing(m, zap)
    assert zap.done and "zap_empty_pte_table" not in seen and "zap_pte_table_if_empty" not in seen
    assert life(t1).state == LINKED and t1.entries == [PTE_MARKER_UFFD_WP] * 4 and mm.nr_ptes == 1
    finish(k)


# ------------------------------------------------------------------------------------------------
# the slow path


def fault_holding_pml_then_zap(impl, refill=False):
    """A read fault at 9 allocates PMD 2's table and holds pml in pmd_install(); MADV_DONTNEED of
    PMD 1 empties the table, fails its trylock of pml, drops the ptl and waits for pml in
    zap_pte_table_if_empty(); with ``refill``, a read fault at 5 maps page 5 into the table
    meanwhile (it needs only the ptl); then everything runs to the end."""
    k = build_world(SHARED, impl, "x86_64")
    m, mm = k.m, k.mms[0]
    pml = mm.pmd_table.ptl
    holder = start_op(k, "CPU1", READ_9)
    step_until(m, holder, lambda t: pml.owner is t)
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    m.run(zap, m.step_bound)
    assert trylocks(m, zap) == [False]
    assert type(zap.pending) is Lock and zap.pending.lock is pml
    assert in_path(zap, "zap_pte_table_if_empty") and zap.spin == 0
    refault = None
    if refill:
        refault = start_op(k, "CPU2", READ_5)
        m.run(refault, m.step_bound)
        assert refault.done and refault.result == "ok"
    finish(k)
    assert holder.result == "ok"
    return k, refault


def test_a_busy_pml_sends_the_reclaim_the_slow_way():
    k, _ = fault_holding_pml_then_zap(IMPL_7_0)
    mm = k.mms[0]
    t1, t2 = k.tables  # PMD 1's, and the one the fault at 9 allocated
    assert mm.pmd_table.entries[1] is None and t1.freed and life(t2).state == LINKED
    assert mm.nr_ptes == 1


def test_a_table_refilled_before_the_slow_path_stays():
    """zap_pte_table_if_empty() looks at every entry again under pml and ptl: the fault at 5 put
    page 5 in the table after the zap dropped the ptl, so the table stays."""
    k, _ = fault_holding_pml_then_zap(IMPL_7_0, refill=True)
    mm = k.mms[0]
    t1 = k.tables[0]
    assert life(t1).state == LINKED and type(t1.entries[1]) is Pte and mm.nr_ptes == 2
    assert mm.rss["MM_SHMEMPAGES"] == 2


# ------------------------------------------------------------------------------------------------
# lockless readers


#: 7.0 with x86's 7.0 table freeing: the destructor (and with ALLOC_SPLIT_PTLOCKS the ptlock's
#: kfree) waits for the grace period too
IMPL_7_0_LATE_DTOR = Implementation(
    name="pt-reclaim-7.0-late-dtor", kernel="7.0",
    overrides=v7_0.X86_7_0)


def rcu_reader_across_reclaim(impl, arch="x86_64"):
    """A read fault at 5 maps PMD 1's table (pte_offset_map_rw_nolock(): RCU only, IRQs on) and
    stops before reading its entry; MADV_DONTNEED reclaims the table and returns; the fault goes
    on in the detached table, finds the entry none and faults the page in through a new table."""
    k = build_world(SHARED_TWO_TABLES, impl, arch)
    m, mm = k.m, k.mms[0]
    t1 = k.tables[0]
    fault = start_op(k, "CPU1", READ_5)
    step_until(m, fault, pending_pte_table_load)
    assert fault.rcu == 1 and not fault.irq and fault.pending.page is t1
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    m.run(zap, m.step_bound)
    assert zap.done and life(t1).state != LINKED and mm.pmd_table.entries[1] is None
    # the grace period waits for the fault: the table is still there to read
    assert not t1.freed and not m.ready_callbacks()
    finish(k)
    assert fault.result == "ok" and t1.freed and mm.nr_ptes == 2
    return k


def test_an_rcu_reader_keeps_the_reclaimed_table_until_it_leaves():
    rcu_reader_across_reclaim(IMPL_7_0)


def test_gup_fast_with_irqs_off_holds_back_the_flush_and_the_free():
    """GUP-fast has mapped PMD 1's table with IRQs off; the reclaim clears the PMD and then waits
    in the TLB-flush IPI until GUP-fast re-enables IRQs (having found the entry none, it falls
    back to the slow path, which faults the page in again); the table goes after a grace
    period."""
    k = build_world(SHARED_TWO_TABLES, IMPL_7_0, "x86_64")
    m, mm = k.m, k.mms[0]
    t1 = k.tables[0]
    gup = start_op(k, "CPU1", Op("gup_fast", 0, 4, 1))
    step_until(m, gup, pending_pte_table_load)
    assert gup.irq and gup.pending.page is t1
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    m.run(zap, m.step_bound)
    assert type(zap.pending) is IpiSync and in_path(zap, "tlb_finish_mmu")
    assert mm.pmd_table.entries[1] is None and not t1.freed
    finish(k)
    assert zap.result == "ok" and gup.result == 1 and t1.freed


def test_a_ptl_waiter_of_the_reclaimed_table_with_alloc_split_ptlocks():
    """/proc/pid/smaps walks PMD 1 (pte_offset_map_lock()) and stops before spin_lock() of the
    snapshot table's ptl; the reclaim detaches the table and returns; the walk takes the old
    table's ptl, finds the PMD changed and gives up.  With ALLOC_SPLIT_PTLOCKS that ptlock is a
    separate allocation: it must live until the grace period, as it does when the destructor
    runs in __tlb_remove_table() (7.0)."""
    k = build_world(SHARED_TWO_TABLES, IMPL_7_0_LATE_DTOR, "x86_64-alloc-ptlocks")
    m = k.m
    t1 = k.tables[0]
    walk = start_op(k, "CPU1", Op("smaps", 0, 4))
    step_until(m, walk, lambda t: type(t.pending) is Lock and in_path(t, "pte_offset_map_lock"))
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    m.run(zap, m.step_bound)
    assert zap.done and life(t1).state != LINKED and t1.ptl.alive
    finish(k)
    assert t1.freed and not t1.ptl.alive


READERS = ("read", "write", "gup_fast", "gup", "smaps", "referenced", "punch_hole")


@pytest.mark.parametrize("arch", ["x86_64", "x86_64-nosplit"])
def test_every_schedule_of_a_reader_against_the_reclaim(arch):
    """The sweep's pairs of MADV_DONTNEED of PMD 1 with each walker, filler and zapper kind, both
    ways round, every schedule with at most one preemption: no violation."""
    seconds = [Op(kind, 0, 5, arg) for kind in READERS for arg in (1, 6)]
    assert explore_both_ways(IMPL_7_0, arch, "shared", DONTNEED_PMD1, seconds) > 500


# ------------------------------------------------------------------------------------------------
# broken variants are caught


def test_freeing_the_table_at_once_is_caught(monkeypatch):
    """free_pte() with pte_free() instead of pte_free_tlb(): the table and its page go while the
    fault is still in its RCU read-side section in it."""

    def free_pte_at_once(k, mm, addr, tlb, pmdval):
        yield from k.ops.pte_free(k, mm, k.pmd_pgtable(pmdval))
        yield from mm_dec_nr_ptes(k, mm)

    monkeypatch.setattr(memory, "free_pte", free_pte_at_once)
    assert_clause(lambda: rcu_reader_across_reclaim(IMPL_7_0), "pt.reuse-before-gp")


def zap_pte_table_if_empty_no_rescan(k, mm, pmdp, addr):
    """zap_pte_table_if_empty() that trusts the zap's finding instead of looking at the entries
    again under pml and ptl (the check 6.14's try_to_free_pte() makes for a reason)."""
    pml = yield from k.ops.pmd_lock(k, mm, pmdp)
    start_pte, pmdval, ptl = yield from k.ops.pte_offset_map_rw_nolock(k, mm, pmdp, addr)
    if start_pte is None:
        yield Unlock(pml)
        return None
    if ptl is not pml:
        yield Lock(ptl, 1)
    yield from k.ops.pte_unmap(k, start_pte)
    yield from pmd_clear(k, pmdp)
    if ptl is not pml:
        yield Unlock(ptl)
    yield Unlock(pml)
    return pmdval


def zap_empty_pte_table_without_pml(k, mm, pmdp, ptl):
    """zap_empty_pte_table() that clears the PMD under the ptl alone, without pml: a PMD changer
    that holds only pml (retract_page_tables(), a fault's pmd_install()) is not excluded."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    yield from pmd_clear(k, pmdp)
    return pmdval


def test_a_slow_path_without_the_rescan_is_caught():
    """A plugged-in zap_pte_table_if_empty() without the rescan frees the table the fault at 5
    refilled; the reference's keeps it (test_a_table_refilled_before_the_slow_path_stays)."""
    impl = attrs.evolve(IMPL_7_0, name="no-rescan",
                        overrides={"zap_pte_table_if_empty": zap_pte_table_if_empty_no_rescan})
    assert_clause(lambda: fault_holding_pml_then_zap(impl, refill=True), "pt.free-nonempty")


def test_a_fast_path_without_pml_is_caught():
    """A plugged-in zap_empty_pte_table() that clears the PMD under the ptl alone is caught by
    the sweep of MADV_DONTNEED against a device read (the PMD written without pmd_lock); the
    reference passes the same sweep."""
    pair = Pair("shared", DONTNEED_PMD1, Op("device", 0, 4, 1))
    impl = attrs.evolve(IMPL_7_0, name="no-pml",
                        overrides={"zap_empty_pte_table": zap_empty_pte_table_without_pml})
    r = explore_pair(impl, "x86_64", pair, bound=1)
    assert r.violation is not None and r.violation.clause == "pt.pmd-write-unlocked", r.violation
    clean = explore_pair(IMPL_7_0, "x86_64", pair, bound=1)
    assert clean.violation is None and clean.complete


def _no_batch_page():
    return None


def test_the_no_batch_fallback_waits_for_a_grace_period(monkeypatch):
    """With no page for a table batch, tlb_remove_table_one() under CONFIG_PT_RECLAIM call_rcu()s
    the table itself: the RCU-only reader is still covered."""
    monkeypatch.setattr(mmu_gather, "_alloc_batch", _no_batch_page)
    k = rcu_reader_across_reclaim(IMPL_7_0_LATE_DTOR)
    assert k.tables[0].freed


def test_the_6_6_no_batch_fallback_is_caught(monkeypatch):
    """6.6's tlb_remove_table_one() (an IPI, then __tlb_remove_table() at once) waits only for
    CPUs with IRQs off: a table MADV_DONTNEED reclaims goes under the RCU-only reader."""
    monkeypatch.setattr(mmu_gather, "_alloc_batch", _no_batch_page)
    monkeypatch.setattr(mmu_gather, "pt_reclaim_enabled", lambda k: False)
    assert_clause(lambda: rcu_reader_across_reclaim(IMPL_7_0_LATE_DTOR), "pt.reuse-before-gp")


# ------------------------------------------------------------------------------------------------
# where there is no PT reclaim


@pytest.mark.parametrize(("impl", "arch"), [(REFERENCE, "x86_64"), (REFERENCE, "x86_64-nosplit"),
                                            (IMPL_7_0, "powerpc64"), (IMPL_7_0, "s390"),
                                            (IMPL_7_0, "arm")],
                         ids=["6.6-x86_64", "6.6-x86_64-nosplit", "7.0-powerpc64", "7.0-s390",
                              "7.0-arm"])
def test_no_reclaim_without_pt_reclaim(impl, arch):
    """6.6 passes no zap_details (and has no PT reclaim); 7.0 only reclaims where the arch
    supports it: the emptied table stays linked, and nothing goes to a gather."""
    k = build_world(SHARED_TWO_TABLES, impl, arch)
    m, mm = k.m, k.mms[0]
    tables = list(k.tables)
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    seen = run_tracing(m, zap)
    assert zap.done and zap.result == "ok"
    assert not seen & {"zap_empty_pte_table", "zap_pte_table_if_empty", "tlb_finish_mmu"}
    assert mm.nr_ptes == 2 and life(tables[0]).state == LINKED and tables[0].is_empty()
    assert not m.callbacks
    finish(k)
    assert not any(tb.released for tb in tables)
