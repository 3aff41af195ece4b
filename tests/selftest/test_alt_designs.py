"""The unmerged v2 designs of pte_free_defer() (pgconform.alt) and the v1/v2 mutants of the zoo,
driven through deterministic schedules by hand.

The schedules defer two tables sharing one page (two powerpc fragments, the two s390 halves) of
one mm: khugepaged collapses PMD 1, then PMD 2, of a VMA mapping both.  The correct v2 designs
must come through clean (end-of-run oracles included); the v1 designs and the v2 s390 code as
posted must raise their clause.
"""

from __future__ import annotations

import pytest

from pgconform.alt import powerpc_v2, s390_v2
from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.reference.khugepaged import SCAN_SUCCEED
from pgconform.sim.errors import Violation
from pgconform.zoo import a1_powerpc_v1, a3_s390_v1, s390_v2_posted
from tests.selftest.helpers import finish, pending_pte_table_load, run_to_end, step_until

D = powerpc_v2.PTE_FREE_DEFERRED

#: mm0 maps the 8-page shmem file, shared, at [4, 12): PMD 1 (file pages 0-3) and PMD 2 (4-7);
#: pages 0 and 4 are faulted in, so PMD 1 and PMD 2 point at two tables carved in that order from
#: one page (powerpc fragments 0 and 1, s390 lower and upper half)
TWO_TABLES = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False), (0, 8, False)))
#: only PMD 1 has a table: on s390 the page is listed for its free upper half
ONE_TABLE = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False),))

COLLAPSE_PMD1 = Op("khugepaged", 0, 4)
COLLAPSE_PMD2 = Op("khugepaged", 0, 8)
READ_9 = Op("read", 0, 9)

POWERPC = "powerpc64"
S390 = "s390"


# ------------------------------------------------------------------------------------------------
# driving a schedule by hand (helpers of test_oracles.py)


def _tables(k):
    """The two tables the world starts with, and the page they share."""
    pmds = k.mms[0].pmd_table.entries
    t1, t2 = k.pmd_table(pmds[1]), k.pmd_table(pmds[2])
    assert t1.page is t2.page and (t1.slot, t2.slot) == (0, 1)
    return t1, t2, t1.page


def two_deferrals_one_gp(impl, arch, check_mid=None):
    """Collapse PMD 1 (its table is deferred, the rcu_head queued); a read fault at 9 enters an
    RCU read-side section on PMD 2's table; collapse PMD 2 (the second table of the page is
    deferred within the same grace period); run the first callback, which is ready (the reader
    came after it was queued) while the reader is still inside; then everything, fairly."""
    k = build_world(TWO_TABLES, impl, arch)
    m = k.m
    t1, t2, page = _tables(k)
    first = start_op(k, "CPU0", COLLAPSE_PMD1)
    run_to_end(m, first)
    assert first.result == SCAN_SUCCEED
    fault = start_op(k, "CPU2", READ_9)
    step_until(m, fault, pending_pte_table_load)
    assert fault.rcu == 1 and fault.pending.page is t2
    second = start_op(k, "CPU1", COLLAPSE_PMD2)
    run_to_end(m, second)
    assert second.result == SCAN_SUCCEED
    if check_mid is not None:
        check_mid(k, page)
    ready = m.ready_callbacks()
    assert len(ready) == 1 and len(m.callbacks) == 1
    m.run_callback(ready[0])
    finish(k)
    return k, page


def deferral_during_callback(impl, arch, steps):
    """Collapse PMD 1 and let its callback run ``steps`` effects; collapse PMD 2 (its deferral
    lands while the first callback is in the middle); then everything, fairly."""
    k = build_world(TWO_TABLES, impl, arch)
    m = k.m
    _, _, page = _tables(k)
    run_to_end(m, start_op(k, "CPU0", COLLAPSE_PMD1))
    (cb,) = m.ready_callbacks()
    callback = m.run_callback(cb, budget=steps)
    assert not callback.done
    run_to_end(m, start_op(k, "CPU1", COLLAPSE_PMD2))
    finish(k)
    return k, page


# ------------------------------------------------------------------------------------------------
# the v2 designs survive


def test_powerpc_v2_two_fragments_one_grace_period():
    def mid(k, page):
        # both fragments deferred: two biases, one rcu_head queued
        assert page.frag_refcount == 2 * D

    k, page = two_deferrals_one_gp(powerpc_v2.IMPLEMENTATION, POWERPC, mid)
    assert page.freed and page.frag_refcount == 0


def test_powerpc_v2_requeue_waits_for_the_late_reader():
    """The first callback requeues; the page must not go before the reader of PMD 2's table
    leaves: a version that frees on the first callback is caught."""

    def pte_free_now_once(k, head):
        page = head.owner
        for table in powerpc_v2._deferred(k, page)[:]:
            powerpc_v2._deferred(k, page).remove(table)
            page.frag_refcount -= D - 1
            yield from k.ops.pte_fragment_free(k, powerpc_v2.PtePtr(table, 0), 0)

    broken = powerpc_v2.IMPLEMENTATION.__class__(
        name="ppc-v2-no-requeue",
        overrides={**powerpc_v2.IMPLEMENTATION.overrides, "pte_free_now": pte_free_now_once})
    with pytest.raises(Violation) as excinfo:
        two_deferrals_one_gp(broken, POWERPC)
    assert excinfo.value.clause == "pt.reuse-before-gp"


def test_powerpc_v2_deferral_during_callback():
    """The deferral lands after the callback's sub_return saw < D, before its
    pte_fragment_free(): it queues the rcu_head itself (RCU dequeued it before the callback)."""
    k, page = deferral_during_callback(powerpc_v2.IMPLEMENTATION, POWERPC, 1)
    assert page.freed


def test_s390_v2_two_halves_one_grace_period():
    def mid(k, page):
        # both halves H and P, none allocated; off the list; one rcu_head queued
        assert page.bits == 0x3C and page.on_list is None

    k, page = two_deferrals_one_gp(s390_v2.IMPLEMENTATION, S390, mid)
    assert page.freed and page.bits == 0


@pytest.mark.parametrize("steps", [1, 2])
def test_s390_v2_deferral_during_callback(steps):
    """The upper half is deferred after the lower half's callback cleared its H (1), or also
    peeked at the allocated bits (2): the upper half queues the rcu_head itself, and the lower's
    callback does not chain (its P clear then finds the upper half pending, not allocated)."""
    k, page = deferral_during_callback(s390_v2.IMPLEMENTATION, S390, steps)
    assert page.freed and page.bits == 0


def test_s390_v2_relinks_after_the_grace_period():
    """One half deferred while the other stays allocated: the page is off pgtable_list while the
    half is pending and back on it once __tlb_remove_table() has cleared P."""
    k = build_world(TWO_TABLES, s390_v2.IMPLEMENTATION, S390)
    m = k.m
    t1, t2, page = _tables(k)
    run_to_end(m, start_op(k, "CPU0", COLLAPSE_PMD1))
    assert page.bits == 0x16 and page.on_list is None
    for cb in m.ready_callbacks():
        m.run_callback(cb)
    assert page.bits == 0x02 and page.on_list is k.mms[0].context["pgtable_list"]
    finish(k)


# ------------------------------------------------------------------------------------------------
# the v1 designs and the posted v2 s390 code are caught


def test_a1_powerpc_v1_double_call_rcu():
    with pytest.raises(Violation) as excinfo:
        two_deferrals_one_gp(a1_powerpc_v1.MUTANT, POWERPC)
    assert excinfo.value.clause == "rcu.double-call_rcu"
    assert excinfo.value.clause in a1_powerpc_v1.MUTANT.expected


def test_a3_s390_v1_double_call_rcu():
    """Both halves allocated: the page is not listed, so the first call_rcu is quiet; the second
    half's deferral queues the same rcu_head again."""
    with pytest.raises(Violation) as excinfo:
        two_deferrals_one_gp(a3_s390_v1.MUTANT, S390)
    assert excinfo.value.clause == "rcu.double-call_rcu"
    assert excinfo.value.clause in a3_s390_v1.MUTANT.expected


def test_a3_s390_v1_rcu_head_on_list():
    """The other half is free, so the page is on pgtable_list: call_rcu() overwrites pt_list."""
    k = build_world(ONE_TABLE, a3_s390_v1.MUTANT, S390)
    with pytest.raises(Violation) as excinfo:
        run_to_end(k.m, start_op(k, "CPU0", COLLAPSE_PMD1))
        finish(k)
    assert excinfo.value.clause == "rcu.head-storage-in-use"


def test_s390_v2_as_posted_leaks():
    def mid(k, page):
        assert page.bits == 0x3C

    with pytest.raises(Violation) as excinfo:
        two_deferrals_one_gp(s390_v2_posted.MUTANT, S390, mid)
    assert excinfo.value.clause == "pt.leak"
    assert "pte_table@" in str(excinfo.value) and "+1" in str(excinfo.value)


def test_s390_v2_as_posted_one_half_at_a_time_is_fine():
    """The defect needs both halves pending at once: deferred one grace period apart, the posted
    code frees the page."""
    k = build_world(TWO_TABLES, s390_v2_posted.MUTANT, S390)
    m = k.m
    _, _, page = _tables(k)
    run_to_end(m, start_op(k, "CPU0", COLLAPSE_PMD1))
    for cb in m.ready_callbacks():
        m.run_callback(cb)
    run_to_end(m, start_op(k, "CPU1", COLLAPSE_PMD2))
    finish(k)
    assert page.freed
