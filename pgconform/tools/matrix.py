"""The version matrix: for each registered kernel version, which clauses it fails on which arch.

Two sources, both deterministic:

* the history's schedules: the stored failing schedule of every zoo mutant (``data/
  history_schedules.json``; each a bug of the series' history found by the suite), and a schedule
  of every finding a version declares (``data/finding_schedules.json``), replayed under each
  version on the arch it was found on;
* the exhaustive sweep (:mod:`pgconform.harness.sweep`) of every version on every arch it applies
  to, at a preemption bound (0 by default: every pair of operations, run one after the other at
  every switch a blocking forces).

A cell lists the clauses the version fails there; after each failure the sweep goes on with that
clause tolerated, so a version with two bugs shows both.  ``known`` lists the violations the
version declares (``Implementation.known_violations``) that happened.  ``python -m pgconform
matrix`` prints it (Markdown); the README shows it; ``tests/selftest/test_versions.py`` holds the
expected one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from importlib import resources

import attrs

from pgconform.harness import replay, runs
from pgconform.kernel.arch import ARCHES
from pgconform.registry import resolve
from pgconform.versions import VERSIONS

#: how many clauses one cell may collect before the sweep gives up tolerating them
MAX_CLAUSES = 8


def history_schedules() -> dict[str, str]:
    """Mutant name -> its stored failing schedule (a ``pgc1:`` replay string)."""
    text = resources.files("pgconform").joinpath("data/history_schedules.json").read_text()
    return json.loads(text)


def finding_schedules() -> dict[str, str]:
    """Known-violation key of a registered version's declared finding -> a schedule that commits
    it (a ``pgc1:`` replay string naming the version), so that the matrix shows each finding as
    ``known`` where it is declared and as a failure where it is not."""
    text = resources.files("pgconform").joinpath("data/finding_schedules.json").read_text()
    return json.loads(text)


@attrs.define
class Cell:
    """What one version did on one arch."""

    failed: dict[str, str] = attrs.field(factory=dict)   # clause -> where (schedule or sweep)
    known: set[str] = attrs.field(factory=set)           # known-violation keys that happened
    applies: bool = True

    def text(self) -> str:
        if not self.applies:
            return "n/a"
        parts = [", ".join(sorted(self.failed))] if self.failed else ["pass"]
        if self.known:
            parts.append("known: " + ", ".join(sorted(self.known)))
        return "; ".join(parts)


def replay_outcome(run: replay.Run, spec: str, tolerated: Mapping[str, str] | None = None):
    """Replay ``run`` under the implementation ``spec``: ``(clause or None, known keys hit)``."""
    from pgconform.harness.machines import make_machine

    runs.tolerated_hits.clear()
    machine = make_machine(resolve(spec), run.arch, scenario=run.scenario, spec=spec,
                           xfails={c: ("", why) for c, why in (tolerated or {}).items()})
    _, v = replay.run_steps(machine, run.steps)
    return (v.clause if v is not None else None), set(runs.tolerated_hits) - set(tolerated or ())


def schedule_clauses(run: replay.Run, spec: str) -> tuple[list[str], set[str]]:
    """Every clause ``run``'s schedule shows ``spec`` failing, in order: each replay tolerates
    the clauses found before it.  And the known violations that happened."""
    failed: list[str] = []
    known: set[str] = set()
    while len(failed) < MAX_CLAUSES:
        clause, hit = replay_outcome(run, spec, dict.fromkeys(failed, "found"))
        known |= hit
        if clause is None:
            break
        failed.append(clause)
    return failed, known


def sweep_clauses(impl, arch: str, bound: int = 0) -> tuple[dict[str, str], set[str]]:
    """Every clause the sweep finds ``impl`` failing on ``arch``: clause -> the pair that showed
    it; and the known violations that happened."""
    from pgconform.harness.sweep import sweep

    failed: dict[str, str] = {}
    runs.tolerated_hits.clear()
    while len(failed) < MAX_CLAUSES:
        r = sweep(impl, arch, bound=bound, tolerated=dict.fromkeys(failed, "found"))
        if r.violation is None:
            break
        failed[r.violation.clause] = str(r.pair)
    known = set(runs.tolerated_hits) - set(failed)
    return failed, known


def version_matrix(versions: Iterable[str] = VERSIONS, arches: Iterable[str] = tuple(ARCHES),
                   bound: int | None = 0) -> dict[str, dict[str, Cell]]:
    """version -> arch -> :class:`Cell`.  ``bound`` None: the history's schedules only."""
    schedules = {name: replay.decode(s)
                 for name, s in {**history_schedules(), **finding_schedules()}.items()}
    matrix: dict[str, dict[str, Cell]] = {}
    for spec in versions:
        impl = resolve(spec)
        row = matrix[spec] = {}
        for arch in arches:
            cell = row[arch] = Cell(applies=not impl.arches or arch in impl.arches)
            if not cell.applies:
                continue
            for name, run in schedules.items():
                if run.arch != arch:
                    continue
                failed, known = schedule_clauses(run, spec)
                for clause in failed:
                    cell.failed.setdefault(clause, f"schedule of {name}")
                cell.known |= known
            if bound is not None:
                failed, known = sweep_clauses(impl, arch, bound)
                for clause, where in failed.items():
                    cell.failed.setdefault(clause, f"sweep: {where}")
                cell.known |= known
            # the declared violations, not the symptoms tolerated after them
            cell.known &= set(impl.known_violations_on(arch))
    return matrix


def to_markdown(matrix: Mapping[str, Mapping[str, Cell]]) -> str:
    """The matrix as a Markdown table, one row per version, one column per arch."""
    arches = list(next(iter(matrix.values())))
    lines = ["| version | " + " | ".join(arches) + " |",
             "|---|" + "---|" * len(arches)]
    for spec, row in matrix.items():
        lines.append(f"| {spec} | " + " | ".join(row[a].text() for a in arches) + " |")
    return "\n".join(lines) + "\n"


def to_json(matrix: Mapping[str, Mapping[str, Cell]]) -> dict:
    """The matrix as plain data: version -> arch -> {applies, failed: {clause: where}, known}."""
    return {spec: {arch: {"applies": c.applies, "failed": dict(c.failed),
                          "known": sorted(c.known)} for arch, c in row.items()}
            for spec, row in matrix.items()}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m pgconform matrix", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--versions", default=",".join(VERSIONS),
                   help="comma-separated registered names (default: %(default)s)")
    p.add_argument("--arch", action="append", help="limit to these arches (repeatable)")
    p.add_argument("--bound", type=int, default=0,
                   help="the sweep's preemption bound (default 0); -1: no sweep, the history's "
                        "schedules only")
    p.add_argument("--json", metavar="PATH",
                   help="also write the matrix as JSON, with where each clause failed")
    args = p.parse_args(argv)
    from pgconform.implementation import ImplementationError

    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    problem = None if versions else "--versions names no version"
    for spec in versions:
        try:
            resolve(spec)
        except ImplementationError as e:
            problem = problem or f"--versions: {e}"
    unknown = [a for a in args.arch or () if a not in ARCHES]
    if unknown and problem is None:
        problem = f"unknown --arch {', '.join(unknown)}; known: {', '.join(ARCHES)}"
    if problem is not None:  # one line, exit status 2, as argparse's own errors
        print(f"{p.prog}: error: {problem}", file=sys.stderr)
        return 2
    matrix = version_matrix(versions, args.arch or tuple(ARCHES),
                            None if args.bound < 0 else args.bound)
    print(to_markdown(matrix), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(matrix), f, indent=1, sort_keys=True)
    return 0
