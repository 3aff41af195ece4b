"""The schedule policies other than PCT: the preemption-bounded exhaustive explorer, the sweep
built on it, and round-robin."""

from __future__ import annotations

from pgconform.harness.scenario import Op
from pgconform.harness.sweep import WORLDS, Pair, explore_pair, pairs
from pgconform.oracle.clauses import CLAUSES
from pgconform.registry import resolve
from pgconform.sim.effects import Load, Store
from pgconform.sim.errors import Violation
from pgconform.sim.machine import Machine
from pgconform.sim.physmem import Page
from pgconform.sim.policies.exhaustive import explore, run_schedule


def _two_readers(traces):
    """Two tasks of two loads each on one page; each finished schedule's order is recorded."""

    def setup():
        m = Machine()
        page = Page(pfn=0, gen=0, entries=[0])

        def reader(name):
            yield Load(page, 0)
            yield Load(page, 0)

        tasks = [m.spawn("CPU0", reader("a"), "a"), m.spawn("CPU1", reader("b"), "b")]
        return m, tasks, lambda: traces.append(tuple(t.label for t, _, e, _ in m.trace if e))

    return setup


def test_schedule_counts_follow_the_preemption_bound():
    # bound 0: only the free choice of who starts; 1: also a switch in the middle of either;
    # 2: every interleaving of 2 + 2 effects (4 choose 2 = 6)
    for bound, expected in ((0, 2), (1, 4), (2, 6)):
        traces = []
        r = explore(_two_readers(traces), bound=bound)
        assert (r.schedules, r.complete, r.violation) == (expected, True, None)
        assert len(set(traces)) == expected  # every schedule distinct
    assert len(set(traces)) == 6  # bound 2 covered all of them


def test_limit_says_it_stopped():
    r = explore(_two_readers([]), bound=2, limit=3)
    assert (r.schedules, r.complete) == (3, False)
    assert "stopped at the limit" in r.summary()


def _lost_update():
    """Two tasks incrementing a counter with a read then a write: needs one preemption."""

    def setup():
        m = Machine()
        page = Page(pfn=0, gen=0, entries=[0])

        def inc():
            v = yield Load(page, 0)
            yield Store(page, 0, v + 1)

        tasks = [m.spawn("CPU0", inc(), "a"), m.spawn("CPU1", inc(), "b")]

        def finish():
            if page.entries[0] != 2:
                raise Violation("data.mismatch", f"counter is {page.entries[0]}, not 2")

        return m, tasks, finish

    return setup


def test_a_race_needing_one_preemption_is_found_at_bound_one_only():
    assert explore(_lost_update(), bound=0).violation is None
    r = explore(_lost_update(), bound=1)
    assert r.violation is not None and r.violation.clause == "data.mismatch"
    # the decisions replay the violating schedule
    m, tasks, finish = _lost_update()()
    run_schedule(m, tasks, r.decisions, bound=1, budget=100)
    try:
        finish()
    except Violation as v:
        assert v.clause == "data.mismatch"
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("the decisions did not replay the lost update")


def test_sweep_pairs_cover_every_kind_both_ways():
    from pgconform.harness.operations import OP_KINDS

    ps = list(pairs("shared"))
    seconds = {p.second.kind for p in ps} | {p.first.kind for p in ps}
    assert set(OP_KINDS) <= seconds
    assert Pair("shared", Op("khugepaged", 0, 4, 1), Op("read", 0, 5, 1)) in ps
    assert Pair("shared", Op("read", 0, 5, 1), Op("khugepaged", 0, 4, 1)) in ps


def test_sweep_catches_a_mutant_the_reference_survives():
    """retract without the anon_vma recheck, against UFFDIO_COPY in the private world."""
    pair = Pair("private", Op("khugepaged", 0, 4, 1), Op("uffd_copy", 0, 5, 1))
    clean = explore_pair(resolve("reference"), "x86_64", pair, bound=1)
    assert clean.violation is None and clean.complete and clean.schedules > 10
    caught = explore_pair(resolve("zoo.retract_no_anon_vma_recheck"), "x86_64", pair, bound=1)
    assert caught.violation is not None and caught.violation.clause == "pt.free-nonempty"
    assert caught.violation.clause in CLAUSES


def test_round_robin_finishes_every_task():
    m = Machine()
    page = Page(pfn=0, gen=0, entries=[0, 0])

    def writer(i):
        for _ in range(3):
            yield Store(page, i, 1)

    tasks = [m.spawn(f"CPU{i}", writer(i), f"w{i}") for i in range(2)]
    m.finish()
    assert all(t.done for t in tasks)
    # fair: the two tasks alternate
    assert [t.label for t, _, e, _ in m.trace if e][:4] == ["w0", "w1", "w0", "w1"]


def test_worlds_build():
    from pgconform.harness.scenario import build_world

    for spec in WORLDS.values():
        assert build_world(spec, resolve("reference")).mms


def test_race_windows_are_marked_and_reported():
    """The window markers are found, and a schedule known to take one (retract's recheck under
    the ptl failing: UFFDIO_COPY attached an anon_vma after the lockless check) is reported as
    reached, the others as missed."""
    import sys

    import pytest

    from pgconform.tools import windows

    found = windows.windows()
    names = {w.name for w in found}
    assert "retract_page_tables recheck under ptl fails" in names
    assert "pte_offset_map_lock retries" in names
    assert "a grace period delays an RCU callback (a free)" in names
    if sys.gettrace() is not None:
        pytest.skip("a tracer (coverage, a debugger) is already running")
    import coverage

    from tests.selftest.test_collapse import uffd_copy_before_retract_locks

    cov = coverage.Coverage(branch=True, data_file=None, config_file=False,
                            include=[str(windows.PACKAGE / s / "*") for s in windows.SOURCES])
    cov.start()
    try:
        uffd_copy_before_retract_locks(resolve("reference"))
    finally:
        cov.stop()
    result = {w.name: ok for w, ok in windows.reached(cov.get_data()).items()}
    assert result["retract_page_tables recheck under ptl fails"]
    assert not result["collapse_pte_mapped_thp step 2 recheck fails"]
    text = windows.report(windows.reached(cov.get_data()))
    assert "reached  retract_page_tables recheck under ptl fails" in text
    assert "MISSED   collapse_pte_mapped_thp step 2 recheck fails" in text
