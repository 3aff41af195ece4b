"""Helpers shared by the project's own tests: one copy of each, imported by the test modules.

Driving a schedule by hand (``step_until``, ``run_to_end``, ``run``, ``finish``), predicates on a
task's pending effect (``in_path``, ``in_function``, ``pending_pte_table_load``,
``pending_lock_in``), reading the page tables (``entries``, ``pte_at``), asserting a verdict's
clause (``assert_clause``), the worlds several files use (``SHARED``, ``SHARED_TWO_TABLES``),
running pytest with pgconform's plugin in a subprocess (``PLUGIN_ARGS``, ``run_suite``) and
counting the Python calls a piece of work makes (``count_calls``: a deterministic measure of
cost, where a test would otherwise time it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, start_op
from pgconform.harness.sweep import Pair, explore_pair
from pgconform.kernel.objects import PteTable
from pgconform.oracle.state import check_end_state
from pgconform.sim.effects import DownRead, Load, Lock, Store, UpRead
from pgconform.sim.errors import Violation
from pgconform.sim.machine import call_path

# ------------------------------------------------------------------------------------------------
# worlds

#: mm0 maps the whole 8-page shmem file, shared, at [4, 12): PMD 1 covers file pages 0-3; page 0
#: (address 4) is faulted in, so PMD 1 points at a PTE table that khugepaged can retract.
SHARED = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False),))
#: the same mapping with page 4 read and page 9 written: PMDs 1 and 2 both point at PTE tables
SHARED_TWO_TABLES = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),),
                              prefault=((0, 4, False), (0, 9, True)))

# ------------------------------------------------------------------------------------------------
# driving a schedule by hand


def step_until(m, t, pred, limit=2_000):
    """Step ``t`` until ``pred(t)`` holds for its pending effect; it must not block or end first."""
    for _ in range(limit):
        if pred(t):
            return
        assert not t.done, f"{t.name} ended before the point the schedule waits for"
        assert m.blocker(t) is None, f"{t.name} blocked on {m.blocker(t)!r} before that point"
        m.step(t)
    raise AssertionError(f"{t.name} did not reach the point within {limit} steps")


def run_to_end(m, t):
    """Run ``t`` alone to its end; it must not block."""
    m.run(t, m.step_bound)
    assert t.done, f"{t.name} blocked in {t.pending}"


def run(k, op: Op, lane: str = "CPU0"):
    """Start ``op`` and run it alone to its end; its result."""
    t = start_op(k, lane, op)
    run_to_end(k.m, t)
    return t.result


def finish(k):
    """Run everything fairly to completion, every RCU callback, then the end-of-run oracles."""
    k.m.finish()
    k.m.check(lambda: check_end_state(k))


def assert_clause(fn: Callable[..., Any], *args: Any) -> Violation:
    """``assert_clause(fn, clause)`` or ``assert_clause(scenario, impl, clause)``: ``fn(*args)``
    (the arguments before the last) raises a verdict of ``clause`` (the last); the verdict."""
    *fn_args, clause = args
    with pytest.raises(Violation) as excinfo:
        fn(*fn_args)
    assert excinfo.value.clause == clause, str(excinfo.value)
    return excinfo.value


def clear_entry(k, mm, addr):
    """Broken: a kernel path that clears the entry at ``addr`` under its ptl, marker or not,
    without the process asking (as a move or copy of page tables that forgets markers would)."""
    yield DownRead(mm.mmap_lock)
    pmdp = mm.pmd_offset(addr, k.geo)
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if (yield Load(pte.table, pte.idx)) is not None:
        yield Store(pte.table, pte.idx, None)
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    yield UpRead(mm.mmap_lock)


def explore_both_ways(impl, arch, world, first, seconds, bound=1):
    """The sweep of ``first`` against each of ``seconds`` in ``world``, both ways round, every
    schedule with at most ``bound`` preemptions: no violation, every sweep complete; the number
    of schedules run."""
    schedules = 0
    for second in seconds:
        for pair in (Pair(world, first, second), Pair(world, second, first)):
            r = explore_pair(impl, arch, pair, bound=bound)
            assert r.violation is None, f"{pair}: {r.violation}"
            assert r.complete
            schedules += r.schedules
    return schedules


# ------------------------------------------------------------------------------------------------
# where a task is


def in_path(t, name):
    """Whether ``t`` is inside a function whose name contains ``name`` (an override's name may
    extend the kernel name)."""
    return any(name in fn for fn in call_path(t.gen))


def in_function(name):
    return lambda t: in_path(t, name)


def pending_pte_table_load(t):
    return type(t.pending) is Load and isinstance(t.pending.page, PteTable)


def pending_lock_in(fname, subclass=None):
    def pred(t):
        eff = t.pending
        return (type(eff) is Lock and in_path(t, fname)
                and (subclass is None or eff.subclass == subclass))

    return pred


# ------------------------------------------------------------------------------------------------
# the page tables


def entries(k, mm_i=0, pmd=1):
    """The entries of the PTE table PMD ``pmd`` of mm ``mm_i`` points at."""
    mm = k.mms[mm_i]
    return list(k.pmd_table(mm.pmd_table.entries[pmd]).entries)


def pte_at(k, addr, mm_i=0):
    """The entry at ``addr`` (None also where the PMD has no table)."""
    mm = k.mms[mm_i]
    pmdv = mm.pmd_table.entries[k.geo.pmd_index(addr)]
    return None if pmdv is None else k.pmd_table(pmdv).entries[k.geo.pte_index(addr)]


# ------------------------------------------------------------------------------------------------
# pytest with the plugin, in a subprocess

#: Arguments that load pgconform's plugin explicitly in a pytester run, whether or not pgconform is
#: installed (the entry point, named "pgconform", is blocked so the module is not registered twice).
PLUGIN_ARGS = ("-p", "no:pgconform", "-p", "pgconform.plugin")


def run_suite(pytester: pytest.Pytester, *args: str, timeout: float | None = None):
    """pytest in a subprocess in ``pytester``'s directory: the plugin loaded, no cache, seed 0."""
    return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider",
                                         "--hypothesis-seed=0", *args, timeout=timeout)


# ------------------------------------------------------------------------------------------------
# cost, deterministically


def count_calls(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()``'s result and the number of Python and C function calls it made (sys.setprofile):
    the same on every run of the same code, unlike a wall-clock time."""
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(previous)
    return result, calls
