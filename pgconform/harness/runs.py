"""A run as a record, and the replay string that holds it.

A conformance machine logs every rule it runs with its arguments (the world, the operations, the
schedule decisions).  Since the simulator is deterministic, those calls are the whole run: the
string ``pgc1:`` + base64url(zlib(JSON)) of the implementation spec, the architecture, the
scenario and the calls (a :class:`Run`) replays it exactly, with ``python -m pgconform replay
STRING``, without Hypothesis (and so across Hypothesis versions and strategy changes, unlike its
database blobs).  A failure of the exhaustive sweep (:mod:`pgconform.harness.sweep`) is a
:class:`SweepRun` (``"kind": "sweep"``): the world, the pair of operations and the schedule's
decisions.

This module is the records, the string codec and what the process last ran and failed; it
imports neither the machines nor the sweep, which both record their runs here.  Running a
string again is :mod:`pgconform.harness.replay`.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable
from typing import Any

import attrs

from pgconform.sim.errors import ImplementationErrored, Violation
from pgconform.sim.machine import trace_rows

__all__ = ["FORMAT", "MODEL", "PREFIX", "Failure", "ReplayError", "Replayed", "Run", "StaleReplay",
           "SweepRun", "compare_replays", "decode", "encode", "judged_implementation",
           "latest_run", "trace_rows"]

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


def compare_replays(replay_once: Callable[[], Replayed], expected: str | None = None,
                    tries: int = 3) -> ImplementationErrored | None:
    """Replay a run up to ``tries`` times (``replay_once()``: one replay from a fresh world); an
    ``impl.nondeterministic`` verdict if a run differs from the first (in its trace, its verdict,
    or where its steps stopped applying) or the runs do not end in the ``expected`` clause (the
    one the run gave when it was recorded), else None."""
    def outcome():
        r = replay_once()
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
