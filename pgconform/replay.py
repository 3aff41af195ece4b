"""Replay strings: a conformance machine's run as one short string, and running it again.

A conformance machine logs every rule it runs with its arguments (the world, the operations, the
schedule decisions).  Since the simulator is deterministic, those calls are the whole run: the
string ``pgc1:`` + base64url(zlib(JSON)) of the implementation spec, the architecture, the
scenario and the calls replays it exactly, with ``python -m pgconform replay STRING``, without
Hypothesis (and so across Hypothesis versions and strategy changes, unlike its database blobs).

Replaying twice and comparing the traces tells a nondeterministic implementation (hidden state
that survives a run, randomness) apart from a real failure: :func:`check_determinism`.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from typing import Any

import attrs

from pgconform.sim.errors import ImplementationErrored, Violation

PREFIX = "pgc1:"


class ReplayError(ValueError):
    """A replay string that cannot be decoded."""


@attrs.frozen
class Run:
    """What a replay string holds."""

    spec: str
    arch: str
    scenario: str
    steps: tuple  # ((rule name, kwargs), ...)


@attrs.define
class Failure:
    """The last failure a conformance machine saw in this process (the plugin reports it)."""

    run: Run
    violation: Violation
    machine: Any  # the simulated Machine, for the trace picture

    @property
    def string(self) -> str:
        return encode(self.run)


#: the latest failure of any conformance machine in this process; Hypothesis replays the minimal
#: example last, so after a failed test this is the minimal one
last_failure: Failure | None = None
#: clause -> count of tolerated violations (declared known violations, the known-failures file)
#: in the machines of this process since the plugin last cleared it (at each test item)
tolerated_hits: dict[str, int] = {}


def _spec_classes() -> dict:
    from pgconform.scenario import Op, VmaSpec, WorldSpec

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


def encode(run: Run) -> str:
    doc = {"impl": run.spec, "arch": run.arch, "scenario": run.scenario,
           "steps": [[name, _to_json(kwargs)] for name, kwargs in run.steps]}
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(string: str) -> Run:
    string = string.strip()
    if not string.startswith(PREFIX):
        raise ReplayError(f"not a pgconform replay string (it starts with {PREFIX!r})")
    body = string[len(PREFIX):]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        doc = json.loads(raw)
        classes = _spec_classes()
        steps = tuple((name, _from_json(kwargs, classes)) for name, kwargs in doc["steps"])
        return Run(doc["impl"], doc["arch"], doc["scenario"], steps)
    except ReplayError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt base64, zlib or JSON: say so, whichever it was
        raise ReplayError(f"the replay string is damaged ({type(e).__name__}: {e})") from None


def run_steps(machine_cls, steps: Sequence) -> tuple[Any, Violation | None]:
    """Run logged rule calls on a fresh ``machine_cls`` as Hypothesis would (the invariant after
    each, teardown at the end); the machine and the violation raised, if any."""
    machine = machine_cls()
    # a rule whose precondition does not hold is skipped, as Hypothesis would never have run it
    # (it happens when another implementation than the recorded one replays the steps)
    preconditions = {r.function.__name__: r.preconditions for r in machine.rules}
    try:
        for name, kwargs in steps:
            if not all(p(machine) for p in preconditions.get(name, ())):
                continue
            getattr(machine, name)(**kwargs)
            machine.no_deadlock()
        machine.teardown()
    except Violation as v:
        return machine, v
    return machine, None


def machine_for(run: Run, spec: str | None = None):
    """The conformance machine class a run was recorded on (judging ``spec`` instead, if given)."""
    from pgconform.kernel.config import ARCHES
    from pgconform.machines import SCENARIOS, make_machine
    from pgconform.registry import resolve

    if run.arch not in ARCHES:
        raise ReplayError(f"unknown architecture {run.arch!r} in the replay string")
    if run.scenario not in SCENARIOS:
        raise ReplayError(f"unknown scenario {run.scenario!r} in the replay string")
    spec = spec or run.spec
    return make_machine(resolve(spec), run.arch, scenario=run.scenario, spec=spec)


def trace_text(machine) -> list[str]:
    """A run's trace as comparable text (lane, call path, effect, result)."""
    k = getattr(machine, "k", None)
    if k is None:
        return []
    return [f"{t.lane} {'>'.join(path)} {eff} {res!r}" for t, path, eff, res in k.m.trace]


def check_determinism(run: Run, spec: str | None = None,
                      expected: str | None = None) -> ImplementationErrored | None:
    """Replay ``run`` twice; an ``impl.nondeterministic`` verdict if the two runs differ (in
    their traces or their verdicts) or do not end in the ``expected`` clause (the one the run
    gave when it was recorded), else None."""
    cls = machine_for(run, spec)
    (m1, v1), (m2, v2) = (run_steps(cls, run.steps) for _ in range(2))
    t1, t2 = trace_text(m1), trace_text(m2)
    c1 = v1.clause if v1 else "no violation"
    c2 = v2.clause if v2 else "no violation"
    if t1 == t2 and c1 == c2:
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


def confirm_hang(run: Run, hang: Violation, spec: str | None = None) -> Violation | None:
    """Replay a run that ended in ``impl.hang``, once, with the watchdog's full time (a fresh
    machine class has never hung): the hang again if it hung at the same place (the same task,
    in the same function), else None.  A hang that does not reproduce is not a verdict on the
    implementation (nor a sign of nondeterminism): the item is not judged."""
    _, again = run_steps(machine_for(run, spec), run.steps)
    if again is not None and again.clause == "impl.hang" and \
            getattr(again, "hang_place", None) == getattr(hang, "hang_place", None):
        return again
    return None
