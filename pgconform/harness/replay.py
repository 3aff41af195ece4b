"""Replaying a run: a replay string (:mod:`pgconform.harness.runs`) run again, on the
conformance machine it was recorded on (:mod:`pgconform.harness.machines`) or as the sweep's
schedule (:mod:`pgconform.harness.sweep`).

A string of another format (``pgcN:``) or model version, or whose steps no longer apply where they
are replayed (a rule whose precondition does not hold, a decision naming a task that cannot run),
is refused as :class:`StaleReplay`, not reported as passing.

Replaying twice and comparing the traces tells a nondeterministic implementation (hidden state
that survives a run, randomness) apart from a real failure: :func:`check_determinism`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from pgconform.harness.machines import SCENARIOS, make_machine
from pgconform.harness.runs import (  # noqa: F401 - the records and codec, re-exported
    FORMAT,
    MODEL,
    PREFIX,
    Failure,
    Replayed,
    ReplayError,
    Run,
    StaleReplay,
    SweepRun,
    compare_replays,
    decode,
    encode,
    judged_implementation,
    trace_rows,
)
from pgconform.harness.sweep import replay_schedule
from pgconform.kernel.arch import ARCHES
from pgconform.sim.errors import ImplementationErrored, Violation


def run_steps(machine_cls, steps: Sequence, skipped: list | None = None
              ) -> tuple[Any, Violation | None]:
    """Run logged rule calls on a fresh ``machine_cls`` as Hypothesis would (the invariant after
    each, teardown at the end); the machine and the violation raised, if any.

    A rule whose precondition does not hold is skipped, as Hypothesis would never have run it
    (it happens when another implementation than the recorded one replays the steps); each is
    appended to ``skipped`` (its position and why), for whoever must tell a string that no longer
    applies.  A step naming no rule of the machine, or arguments it does not take, is
    :class:`StaleReplay`."""
    machine = machine_cls()
    preconditions = {r.function.__name__: r.preconditions for r in machine.rules}
    try:
        for i, (name, kwargs) in enumerate(steps):
            rule = getattr(machine, name, None) if not name.startswith("_") else None
            if not callable(rule) or not isinstance(kwargs, dict):
                raise StaleReplay(f"step {i + 1} runs {name!r}, which is no rule of the "
                                  "conformance machine")
            try:
                inspect.signature(rule).bind(**kwargs)
            except TypeError as e:
                raise StaleReplay(f"step {i + 1} calls {name} with arguments it does not take "
                                  f"({e})") from None
            if not all(p(machine) for p in preconditions.get(name, ())):
                if skipped is not None:
                    skipped.append(f"step {i + 1} ({name}): its precondition does not hold "
                                   "there")
                continue
            rule(**kwargs)
            machine.no_deadlock()
        machine.teardown()
    except Violation as v:
        return machine, v
    return machine, None


def replay_run(run: Run | SweepRun, spec=None, tolerated=None) -> Replayed:
    """Run a decoded string again (judging ``spec`` instead of the recorded implementation, if
    given): a conformance machine's steps, or a sweep pair's schedule (with the ``tolerated``
    clauses of the known-failures file it was found with, if given)."""
    if isinstance(run, SweepRun):
        return replay_schedule(run, spec, tolerated)
    cls = machine_for(run, spec)
    skipped: list[str] = []
    machine, v = run_steps(cls, run.steps, skipped)
    k = getattr(machine, "k", None)
    return Replayed(k.m if k is not None else None, v, skipped[0] if skipped else None)


def machine_for(run: Run, spec=None):
    """The conformance machine class a run was recorded on (judging ``spec`` instead, if given:
    see :func:`judged_implementation`)."""
    if run.arch not in ARCHES:
        raise ReplayError(f"unknown architecture {run.arch!r} in the replay string")
    if run.scenario not in SCENARIOS:
        raise ReplayError(f"unknown scenario {run.scenario!r} in the replay string")
    impl, spec = judged_implementation(run, spec)
    return make_machine(impl, run.arch, scenario=run.scenario, spec=spec)


def trace_text(machine) -> list[str]:
    """A run's trace as comparable text (lane, call path, effect, result)."""
    k = getattr(machine, "k", None)
    if k is None:
        return []
    return trace_rows(k.m.trace)


def check_determinism(run: Run | SweepRun, spec=None,
                      expected: str | None = None, tries: int = 3,
                      tolerated=None) -> ImplementationErrored | None:
    """Replay ``run`` up to ``tries`` times: :func:`pgconform.harness.runs.compare_replays`."""
    return compare_replays(lambda: replay_run(run, spec, tolerated), expected, tries)


def confirm_hang(run: Run, hang: Violation, spec=None) -> Violation | None:
    """Replay a run that ended in ``impl.hang``, once, with the watchdog's full time (a fresh
    machine class has never hung): the hang again if it hung at the same place (the same task,
    in the same function), else None.  A hang that does not reproduce is not a verdict on the
    implementation (nor a sign of nondeterminism): the item is not judged."""
    _, again = run_steps(machine_for(run, spec), run.steps)
    if again is not None and again.clause == "impl.hang" and \
            getattr(again, "hang_place", None) == getattr(hang, "hang_place", None):
        return again
    return None
