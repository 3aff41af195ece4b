"""Preemption-bounded exhaustive exploration (iterative context bounding: Musuvathi and Qadeer,
"Iterative context bounding for systematic testing of multithreaded programs", PLDI 2007; the
bound loom uses), for small worlds.

A run is a sequence of decisions: at each step, which task steps (or that a ready RCU callback
runs).  The default decision keeps the current task running while it can (a switch forced by
its blocking or finishing is free); a *preemption* switches away from a task that could go on.
Every schedule with at most ``bound`` preemptions is run, from scratch (the machine is
deterministic, so a prefix of decisions replays exactly): a depth-first search over the
decision points of each run.

Which points: a preemption is tried before every effect of the running task (every effect touches
shared state: that is what an effect is).  A cheaper rule, preempting only before reads, section
exits and lock acquisitions (PCT's preemption points), saved 8% of the schedules of the
x86_64 shared sweep (25,902 to 24,000) and is not sound: it never lets a lockless reader run
between two stores of a writer (a torn PAE PMD is exactly that), so it is not used.  The
reductions kept are the ones that are sound here: a switch forced by blocking or ending is free
(it does not count against the bound), and a run's branches are only taken after the prefix that
an earlier run already explored.

Each schedule (its setup, its run and its end-of-run check) runs under the watchdog
(:mod:`pgconform.sim.watchdog`, the process's CPU time): an implementation looping without
yielding an effect is ``impl.hang``, once the same schedule run again hangs at the same place.

``explore`` returns how many schedules exist under the bound and were run (all of them, unless
a ``limit`` stops it first, which it says) and the first violation met.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from pgconform.sim.errors import Hang, ImplementationErrored, Violation
from pgconform.sim.machine import trace_rows
from pgconform.sim.policies.replay import CALLBACK, Diverged, Replay
from pgconform.sim.watchdog import first_timeout_s, hang_verdict, watchdog


@attrs.define
class Exploration:
    """What an exploration covered."""

    schedules: int = 0
    complete: bool = True
    bound: int = 0
    violation: Violation | None = None
    decisions: tuple = ()  # of the violating schedule
    #: schedules that hung once and not again at the same place when run again (not judged)
    unconfirmed_hangs: int = 0

    def summary(self) -> str:
        what = "all of them" if self.complete else "stopped at the limit"
        return (f"{self.schedules} schedules with at most {self.bound} preemptions "
                f"({what}){': ' + self.violation.clause if self.violation else ''}")


class Bounded(Replay):
    """A :class:`~.replay.Replay` of a decision prefix that records its branch points: each
    (position, alternatives) where another decision was possible, a preemption only while fewer
    than ``bound`` were taken.  A preemption is tried before every effect (see the module
    docstring)."""

    def __init__(self, tasks: list, prefix: tuple, bound: int):
        super().__init__(tasks, prefix)
        self.bound = bound
        self.branches: list[tuple[int, list[int]]] = []

    def choices(self, pos, default, runnable, ready):
        if default == self._cur:
            # a preemption, within the bound
            if self.preemptions < self.bound:
                alternatives = [i for i in runnable if i != default] + ([CALLBACK] if ready else [])
                if alternatives:
                    self.branches.append((pos, alternatives))
        else:
            # the current task blocked or ended: which runs next is a free choice
            alternatives = [i for i in runnable if i != default]
            if ready and default != CALLBACK:
                alternatives.append(CALLBACK)
            if alternatives:
                self.branches.append((pos, alternatives))


def run_schedule(m, tasks: list, prefix: tuple, bound: int, budget: int):
    """Run ``tasks`` on ``m`` following ``prefix`` (task indices, or CALLBACK), then the default
    decisions, for at most ``budget`` decisions.  Returns (decisions, branch points): see
    :class:`Bounded`."""
    schedule = Bounded(tasks, prefix, bound)
    m.drive(schedule, budget)
    return schedule.decisions, schedule.branches


def explore(setup: Callable[[], tuple], bound: int = 2, limit: int | None = None,
            budget: int = 4000) -> Exploration:
    """Run every schedule of the tasks ``setup()`` returns (``(machine, tasks, finish)``: a
    fresh machine, its tasks started, and a check run after each schedule completes) with at
    most ``bound`` preemptions; stop at the first violation or after ``limit`` schedules."""
    result = Exploration(bound=bound)
    timeout = first_timeout_s()
    # each prefix with the trace of the run it branches from (to show where runs part, should
    # the implementation not replay it: Diverged)
    stack: list[tuple] = [((), None)]
    while stack:
        if limit is not None and result.schedules >= limit:
            result.complete = False
            break
        prefix, parent = stack.pop()
        result.schedules += 1
        try:
            try:
                m, decisions, branches = _watched(setup, prefix, bound, budget, timeout)
            except Violation as hang:
                if hang.clause != "impl.hang":
                    raise
                # confirmed only if the same schedule hangs again at the same place
                try:
                    m, decisions, branches = _watched(setup, prefix, bound, budget, timeout)
                except Violation as again:
                    if again.clause != "impl.hang":
                        raise
                    if again.hang_place == hang.hang_place:
                        raise hang from None
                    result.unconfirmed_hangs += 1
                    result.complete = False
                    continue
                result.unconfirmed_hangs += 1
        except Violation as v:
            result.violation = v
            result.decisions = prefix
            return result
        except Diverged as d:
            result.violation = nondeterministic(d, d.machine, parent)
            result.decisions = prefix
            return result
        for pos, alternatives in reversed(branches):
            if pos < len(prefix):
                continue  # explored from an earlier run
            for alt in alternatives:
                stack.append(((*decisions[:pos], alt), m.trace))
    return result


def _watched(setup, prefix: tuple, bound: int, budget: int, timeout: float):
    """Set up and run one schedule and its end-of-run check under the watchdog (``timeout``
    seconds of CPU time): the machine and :func:`run_schedule`'s result; a hang raises its
    ``impl.hang``, a prefix that does not replay :class:`Diverged` with the machine."""
    m = None
    try:
        with watchdog(timeout):
            m, tasks, finish = setup()
            decisions, branches = run_schedule(m, tasks, prefix, bound, budget)
            finish()
    except Hang as h:
        raise hang_verdict(h, m, timeout) from None
    except Diverged as d:
        d.machine = m
        raise
    return m, decisions, branches


def nondeterministic(d: Diverged, m, parent: list | None) -> ImplementationErrored:
    """The ``impl.nondeterministic`` verdict on a prefix that did not replay: the first effect
    where this run and the run it was taken from part (their traces)."""
    now = trace_rows(m.trace)
    then = trace_rows(parent or [])
    at = next((i for i, (a, b) in enumerate(zip(then, now, strict=False)) if a != b),
              min(len(then), len(now)))
    first = then[at] if at < len(then) else "(the run had ended)"
    second = now[at] if at < len(now) else "(the run had ended)"
    v = ImplementationErrored(
        "impl.nondeterministic",
        f"the same decisions run again from a fresh world took another course ({d}); the runs "
        f"part at effect {at + 1}: {first!r} the first time, {second!r} the second (state kept "
        "across runs, randomness, or iteration over unordered ids in the implementation)")
    m.failed = True
    v.machine = m
    return v
