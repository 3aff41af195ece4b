"""Replay strings: a conformance machine's run as one short string, and running it again.

A conformance machine logs every rule it runs with its arguments (the world, the operations, the
schedule decisions).  Since the simulator is deterministic, those calls are the whole run: the
string ``pgc1:`` + base64url(zlib(JSON)) of the implementation spec, the architecture, the
scenario and the calls replays it exactly, with ``python -m pgconform replay STRING``, without
Hypothesis (and so across Hypothesis versions and strategy changes, unlike its database blobs).

A failure of the exhaustive sweep (:mod:`pgconform.harness.sweep`) is a :class:`SweepRun` (``"kind":
"sweep"``): the world, the pair of operations and the schedule's decisions.  The JSON also
carries the model version (``"model"``, 1 when absent: the strings recorded before it was
written); a string of another format (``pgcN:``) or model version, or whose steps no longer apply
where they are replayed (a rule whose precondition does not hold, a decision naming a task that
cannot run), is refused as :class:`StaleReplay`, not reported as passing.

Replaying twice and comparing the traces tells a nondeterministic implementation (hidden state
that survives a run, randomness) apart from a real failure: :func:`check_determinism`.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

import attrs

from pgconform.sim.errors import ImplementationErrored, Violation

#: the format of the string (the prefix names it)
FORMAT = 1
PREFIX = f"pgc{FORMAT}:"
#: the version of the model a string's steps are replayed on: raised when a change of the model
#: (its rules, their draws, the sweep's worlds) makes recorded steps mean something else
MODEL = 1


class ReplayError(ValueError):
    """A replay string that cannot be decoded."""


class StaleReplay(ReplayError):
    """A replay string that decodes but no longer applies: recorded with another format or model
    version, or its steps do not apply where they are replayed."""

    def __init__(self, why: str):
        super().__init__(f"the replay string no longer applies: {why}; record the failure "
                         "again with this version of pgconform")


@attrs.frozen
class Run:
    """What a conformance machine's replay string holds."""

    spec: str
    arch: str
    scenario: str
    steps: tuple  # ((rule name, kwargs), ...)


@attrs.frozen
class SweepRun:
    """What an exhaustive sweep failure's replay string holds: the world, the two operations
    started in it (CPU0, CPU1) and the schedule's decisions (task index per step, -1 an RCU
    callback; the default decisions after them)."""

    spec: str
    arch: str
    world: str
    first: Any  # pgconform.harness.scenario.Op
    second: Any
    decisions: tuple


@attrs.define
class Replayed:
    """A replay's outcome: the simulated machine it ran on (None if it never got one), the
    violation raised, and why the recorded steps stopped applying, if they did."""

    machine: Any
    violation: Violation | None
    stale: str | None = None


@attrs.define
class Failure:
    """The last failure a conformance machine saw in this process (the plugin reports it)."""

    run: Run | SweepRun
    violation: Violation
    machine: Any  # the simulated Machine, for the trace picture

    @property
    def string(self) -> str:
        return encode(self.run)


#: the latest failure of any conformance machine in this process; Hypothesis replays the minimal
#: example last, so after a failed test this is the minimal one
last_failure: Failure | None = None
#: the latest conformance machine in this process, as (its class, its log): the log grows as its
#: rules run, so after a test it is the last run's; what the plugin replays when Hypothesis
#: reports a flaky test without a failure recorded (nondeterminism that changed its draws)
last_machine: tuple | None = None


def latest_run() -> Run | None:
    """The last conformance machine run of this process, as a replayable :class:`Run`."""
    if last_machine is None:
        return None
    cls, log = last_machine
    return Run(cls.spec, cls.arch, cls.scenario, tuple(log))


#: clause -> count of tolerated violations (declared known violations, the known-failures file)
#: in the machines of this process since the plugin last cleared it (at each test item)
tolerated_hits: dict[str, int] = {}


def _spec_classes() -> dict:
    from pgconform.harness.scenario import Op, VmaSpec, WorldSpec

    return {"WorldSpec": WorldSpec, "VmaSpec": VmaSpec, "Op": Op}


def _to_json(value):
    if attrs.has(type(value)):
        out = {"@": type(value).__name__}
        for f in attrs.fields(type(value)):
            v = getattr(value, f.name)
            if f.default is attrs.NOTHING or v != f.default:
                out[f.name] = _to_json(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _from_json(value, classes, in_attrs=False):
    if isinstance(value, dict) and "@" in value:
        cls = classes.get(value["@"])
        if cls is None:
            raise ReplayError(f"unknown value type {value['@']!r} in the replay string")
        fields = {k: _tuples(_from_json(v, classes, True)) for k, v in value.items() if k != "@"}
        return cls(**fields)
    if isinstance(value, list):
        return [_from_json(v, classes, in_attrs) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v, classes, in_attrs) for k, v in value.items()}
    return value


def encode(run: Run | SweepRun) -> str:
    if isinstance(run, SweepRun):
        doc = {"kind": "sweep", "impl": run.spec, "arch": run.arch, "world": run.world,
               "first": _to_json(run.first), "second": _to_json(run.second),
               "decisions": list(run.decisions)}
    else:
        doc = {"impl": run.spec, "arch": run.arch, "scenario": run.scenario,
               "steps": [[name, _to_json(kwargs)] for name, kwargs in run.steps]}
    if MODEL != 1:  # absent: model 1 (as the strings recorded before the field existed)
        doc["model"] = MODEL
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(string: str) -> Run | SweepRun:
    string = string.strip()
    other = re.match(r"pgc(\d+):", string)
    if other and other.group(0) != PREFIX:
        raise StaleReplay(f"it is of format {other.group(1)} ({other.group(0)}), and this "
                          f"pgconform reads format {FORMAT} ({PREFIX})")
    if not string.startswith(PREFIX):
        raise ReplayError(f"not a pgconform replay string (it starts with {PREFIX!r})")
    body = string[len(PREFIX):]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        doc = json.loads(raw)
    except Exception as e:  # noqa: BLE001 - corrupt base64, zlib or JSON: say so, whichever it was
        raise ReplayError(f"the replay string is damaged ({type(e).__name__}: {e})") from None
    model = doc.get("model", 1) if isinstance(doc, dict) else 1
    if model != MODEL:
        raise StaleReplay(f"it was recorded on model version {model}, and this pgconform's "
                          f"model is version {MODEL}")
    try:
        classes = _spec_classes()
        if doc.get("kind", "machine") == "sweep":
            return SweepRun(doc["impl"], doc["arch"], doc["world"],
                            _from_json(doc["first"], classes), _from_json(doc["second"], classes),
                            tuple(doc["decisions"]))
        if doc.get("kind", "machine") != "machine":
            raise ReplayError(f"unknown kind of run {doc['kind']!r} in the replay string")
        steps = tuple((name, _from_json(kwargs, classes)) for name, kwargs in doc["steps"])
        return Run(doc["impl"], doc["arch"], doc["scenario"], steps)
    except ReplayError:
        raise
    except Exception as e:  # noqa: BLE001 - a JSON of the wrong shape: say so
        raise ReplayError(f"the replay string is damaged ({type(e).__name__}: {e})") from None


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
        from pgconform.harness.sweep import replay_schedule

        return replay_schedule(run, spec, tolerated)
    cls = machine_for(run, spec)
    skipped: list[str] = []
    machine, v = run_steps(cls, run.steps, skipped)
    k = getattr(machine, "k", None)
    return Replayed(k.m if k is not None else None, v, skipped[0] if skipped else None)


def judged_implementation(run: Run | SweepRun, spec=None):
    """The implementation a replay of ``run`` judges, and the name it goes by: ``spec`` if given
    (a registered name, ``module:attr``, or an :class:`~pgconform.implementation.Implementation`
    itself, such as one a test built and never registered), else the one the run recorded."""
    from pgconform.implementation import Implementation
    from pgconform.registry import resolve

    if isinstance(spec, Implementation):
        return spec, spec.name
    spec = spec or run.spec
    return resolve(spec), spec


def machine_for(run: Run, spec=None):
    """The conformance machine class a run was recorded on (judging ``spec`` instead, if given:
    see :func:`judged_implementation`)."""
    from pgconform.kernel.arch import ARCHES
    from pgconform.harness.machines import SCENARIOS, make_machine

    if run.arch not in ARCHES:
        raise ReplayError(f"unknown architecture {run.arch!r} in the replay string")
    if run.scenario not in SCENARIOS:
        raise ReplayError(f"unknown scenario {run.scenario!r} in the replay string")
    impl, spec = judged_implementation(run, spec)
    return make_machine(impl, run.arch, scenario=run.scenario, spec=spec)


def trace_rows(trace) -> list[str]:
    """A simulated machine's trace as comparable text (lane, call path, effect, result)."""
    from pgconform.sim.effects import effect_text

    return [f"{t.lane} {'>'.join(path)} {effect_text(eff)} {res!r}" for t, path, eff, res in trace]


def trace_text(machine) -> list[str]:
    """A run's trace as comparable text (lane, call path, effect, result)."""
    k = getattr(machine, "k", None)
    if k is None:
        return []
    return trace_rows(k.m.trace)


def check_determinism(run: Run | SweepRun, spec=None,
                      expected: str | None = None, tries: int = 3,
                      tolerated=None) -> ImplementationErrored | None:
    """Replay ``run`` up to ``tries`` times; an ``impl.nondeterministic`` verdict if a run differs
    from the first (in its trace, its verdict, or where its steps stopped applying) or the runs
    do not end in the ``expected`` clause (the one the run gave when it was recorded), else
    None."""
    def outcome():
        r = replay_run(run, spec, tolerated)
        rows = trace_rows(r.machine.trace) if r.machine is not None else []
        clause = r.violation.clause if r.violation else "no violation"
        return rows, clause if r.stale is None else f"{clause}, and {r.stale}"

    t1, c1 = outcome()
    for _ in range(tries - 1):
        t2, c2 = outcome()
        if t1 != t2 or c1 != c2:
            break
    else:
        if expected in (None, c1):
            return None
        return ImplementationErrored(
            "impl.nondeterministic",
            f"the failing schedule ({expected}) gave {c1} when run again in a fresh world: the "
            "implementation keeps state across runs or depends on chance")
    at = next((i for i, (a, b) in enumerate(zip(t1, t2, strict=False)) if a != b),
              min(len(t1), len(t2)))
    first = t1[at] if at < len(t1) else "(the run had ended)"
    second = t2[at] if at < len(t2) else "(the run had ended)"
    was = f" (recorded: {expected})" if expected else ""
    return ImplementationErrored(
        "impl.nondeterministic",
        f"the same schedule run twice gave different runs{was}: first {c1}, then {c2}; they "
        f"part at effect {at + 1}: {first!r} the first time, {second!r} the second (state kept "
        "across runs, randomness, or iteration over unordered ids in the implementation)")


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
