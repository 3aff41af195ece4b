"""The exhaustive sweep: every pair of operations, in small worlds, under every schedule with at
most ``bound`` preemptions (:mod:`pgconform.sim.policies.exhaustive`).

A race in this protocol is mostly two operations: one that frees page tables (khugepaged's
retract, MADV_COLLAPSE) and one that walks, fills or moves them.  So the sweep takes each freer
against each operation kind of the model, both ways round, in a few small worlds of the three
scenario shapes, and runs all their interleavings up to the bound: what the random machines find
by luck, it finds by construction (within the bound), and it says how many schedules it ran.
Nothing in it names a mutant: the pairs are all the pairs.  Every schedule runs under the
watchdog (CPU time): an implementation that loops without yielding an effect is ``impl.hang``.

``tests/conformance/test_exhaustive.py`` runs it per architecture and world;
``PGCONFORM_PREEMPTION_BOUND`` raises the bound (1 by default, 2 in the nightly profile).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import attrs

from pgconform.harness import runs
from pgconform.harness.operations import FREERS, KINDS, OP_KINDS, Op, op_kinds_for
from pgconform.harness.operations import freers_for as kinds_freeing
from pgconform.harness.runs import Replayed, ReplayError, StaleReplay, judged_implementation
from pgconform.harness.scenario import build_world, start_op
from pgconform.kernel.arch import ARCHES
from pgconform.kernel.config import PLAIN_READS_ENV, plain_reads_form
from pgconform.kernel.version import VERSIONS
from pgconform.oracle.state import check_end_state
from pgconform.sim.errors import Violation
from pgconform.sim.policies.exhaustive import Exploration, explore
from pgconform.sim.policies.replay import Diverged, Replay
from pgconform.strategies.sweep_worlds import WORLD_NEEDS, WORLDS, worlds_for

__all__ = ["RECLAIM_FREER", "WORLDS", "WORLD_NEEDS", "Pair", "explore_pair", "freers_for",
           "pairs", "replay_schedule", "sweep", "worlds_for"]

#: steps one replayed sweep schedule may take (explore()'s budget)
SCHEDULE_BUDGET = 4000

#: ... and from 6.14, MADV_DONTNEED of a whole PMD range (the PTE-table reclaim,
#: KernelVersion.pt_reclaim): its argument is the length
RECLAIM_FREER = Op("dontneed", 0, 4, KINDS["dontneed"].freer_arg)


def freers_for(version) -> tuple[Op, ...]:
    """The operations of the sweep that free page tables in a kernel version (operations.py:
    OpKind.frees), each at the PMD range [4, 8)."""
    return tuple(Op(kind.name, 0, 4, kind.freer_arg) for kind in kinds_freeing(version))


#: the environment variable that sets the sweep's preemption bound (empty or unset: 1)
BOUND_ENV_VAR = "PGCONFORM_PREEMPTION_BOUND"


def default_bound() -> int:
    """The preemption bound from ``PGCONFORM_PREEMPTION_BOUND`` (1 when unset or empty).

    Raises ValueError, with a message fit for a user, for a value that is not an integer >= 0:
    a negative bound would run no schedule at all, so every implementation would pass.  The
    plugin calls this at configure, so a bad value is a usage error before the run."""
    raw = os.environ.get(BOUND_ENV_VAR, "").strip()
    if not raw:
        return 1
    try:
        bound = int(raw)
    except ValueError:
        bound = -1
    if bound < 0:
        raise ValueError(f"{BOUND_ENV_VAR}={raw!r}: the preemption bound must be an integer "
                         ">= 0 (default 1)")
    return bound


@attrs.frozen
class Pair:
    """Two operations started in this order (CPU0, CPU1) in a world."""

    world: str
    first: Op
    second: Op

    def __str__(self) -> str:
        return f"{self.world}: CPU0 {self.first}, CPU1 {self.second}"


def pairs(world: str, kinds: tuple[str, ...] = OP_KINDS,
          freers: tuple[Op, ...] = tuple(Op(kind, 0, 4, 1) for kind in FREERS)) -> Iterator[Pair]:
    """Each freer against each operation kind (at each of its sweep addresses, with each of its
    sweep arguments: operations.py), both ways round."""
    for a in freers:
        for kind in kinds:
            for addr in KINDS[kind].sweep_addrs:
                for arg in KINDS[kind].sweep_args:
                    b = Op(kind, 0, addr, arg)
                    yield Pair(world, a, b)
                    yield Pair(world, b, a)


def _setup(impl, arch: str, pair: Pair, tolerated=None, hits=None):
    """A fresh world of ``pair`` with its two operations started: (machine, tasks, finish);
    tolerated violations counted in ``hits`` (by default the item's, runs.tolerated_hits)."""
    k = build_world(WORLDS[pair.world], impl, arch, tolerated=tolerated,
                    hits=runs.tolerated_hits if hits is None else hits)
    tasks = [start_op(k, "CPU0", pair.first), start_op(k, "CPU1", pair.second)]

    def finish():
        k.m.finish()
        k.m.check(lambda: check_end_state(k))

    return k.m, tasks, finish


def explore_pair(impl, arch: str, pair: Pair, bound: int, limit: int | None = None,
                 tolerated=None) -> Exploration:
    """Every schedule of ``pair`` with at most ``bound`` preemptions, end-of-run oracles included;
    violations of the ``tolerated`` clauses (a known-failures file) are counted, not raised."""
    return explore(lambda: _setup(impl, arch, pair, tolerated), bound=bound, limit=limit)


def replay_schedule(run, spec=None, tolerated=None):
    """Run a sweep failure's replay string (:class:`pgconform.harness.runs.SweepRun`) again, judging
    ``spec`` instead of the recorded implementation if given: its world, its pair, its
    decisions, then the default ones (the current task runs on), and the end-of-run checks;
    violations of the ``tolerated`` clauses (the item's known-failures file) counted apart."""
    if run.arch not in ARCHES:
        raise ReplayError(f"unknown architecture {run.arch!r} in the replay string")
    if run.world not in WORLDS:
        raise ReplayError(f"unknown sweep world {run.world!r} in the replay string")
    impl, spec = judged_implementation(run, spec)
    kinds = op_kinds_for(VERSIONS[impl.kernel])
    for op in (run.first, run.second):
        if not isinstance(op, Op) or op.kind not in kinds:
            raise StaleReplay(f"the operation kind {getattr(op, 'kind', op)!r} is none of kernel "
                              f"{impl.kernel}'s")
    if run.world not in worlds_for(VERSIONS[impl.kernel]):
        raise StaleReplay(f"kernel {impl.kernel} is not swept in world {run.world}")
    pair = Pair(run.world, run.first, run.second)
    m = None
    try:
        m, tasks, finish = _setup(impl, run.arch, pair, tolerated, hits={})
        m.drive(Replay(tasks, run.decisions), SCHEDULE_BUDGET)
        finish()
    except Violation as v:
        v.run = run
        v.context = _context(v, spec, run.arch, pair, run.decisions, run)
        return Replayed(v.machine or m, v)
    except Diverged as d:
        return Replayed(m, None, str(d))
    return Replayed(m, None)


def _context(v: Violation, spec: str, arch: str, pair: Pair, decisions, run,
             found: str = "") -> list[str]:
    """The lines of a sweep verdict saying what was judged, the schedule, and its replay."""
    judged = f"implementation: {spec} on {arch}, exhaustive sweep ({v.outcome}: {v.clause})"
    if plain_reads_form() == "split":
        judged += f", plain page-table reads split ({PLAIN_READS_ENV}=split)"
    return [judged,
            f"schedule: {pair}; decisions {list(decisions)} (task index per step, -1 an RCU "
            f"callback){found}",
            f"replay: python -m pgconform replay {runs.encode(run)}"]


@attrs.define
class SweepResult:
    pairs: int = 0
    schedules: int = 0
    complete: bool = True
    violation: Violation | None = None
    pair: Pair | None = None
    #: schedules that hung once but not again at the same place (see explore)
    unconfirmed_hangs: int = 0


def sweep(impl, arch: str, worlds=tuple(WORLDS), bound: int | None = None,
          limit_per_pair: int | None = 20000, tolerated=None,
          spec: str | None = None) -> SweepResult:
    """Explore every pair of every world; stop at the first violation, which names the pair and
    the decisions (task indices, -1 for an RCU callback) of its schedule, and carries its replay
    string (naming the implementation as ``spec``, by default its name).  A failing schedule is
    run again twice from a fresh world first: if the runs differ, the verdict is
    ``impl.nondeterministic`` (:func:`pgconform.harness.runs.compare_replays`).

    Iterative context bounding: every pair of every world without preemption first, then every
    pair with at most one, and so on up to ``bound``; a bug that needs fewer preemptions is
    found before the sweep spends its time on deep schedules.  (Each round re-runs the shallower
    schedules of a pair: at most twice the work, for the shallow bugs first.)"""
    bound = default_bound() if bound is None else bound
    out = SweepResult()
    # the worlds' pairs interleaved: the first pairs of every world before the last of any
    version = VERSIONS[impl.kernel]
    kinds, freers = op_kinds_for(version), freers_for(version)
    worlds = worlds_for(version, worlds)
    todo = [p for group in itertools.zip_longest(*(pairs(w, kinds, freers) for w in worlds))
            for p in group if p is not None]
    for b in range(bound + 1):
        out.pairs = 0
        for pair in todo:
            r = explore_pair(impl, arch, pair, b, limit_per_pair, tolerated)
            out.pairs += 1
            out.schedules += r.schedules
            out.complete &= r.complete
            out.unconfirmed_hangs += r.unconfirmed_hangs
            if r.violation is not None:
                v = r.violation
                run = runs.SweepRun(spec or impl.name, arch, pair.world, pair.first,
                                    pair.second, tuple(r.decisions))
                # a hang was confirmed by running its schedule again (explore), and a replay
                # of it here would run outside the watchdog
                odd = (runs.compare_replays(
                    lambda run=run: replay_schedule(run, impl, tolerated), expected=v.clause)
                       if v.clause not in ("impl.nondeterministic", "impl.hang") else None)
                if odd is not None:  # shown with the diagram of the run that failed
                    odd.machine, v = v.machine, odd
                v.run = run
                v.context = _context(v, run.spec, arch, pair, r.decisions, run,
                                     f", found among {r.schedules} schedules with at most {b} "
                                     "preemptions")
                runs.last_failure = runs.Failure(run, v, v.machine)
                out.violation, out.pair = v, pair
                return out
    return out
