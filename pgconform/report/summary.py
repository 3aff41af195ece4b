"""The conformance report: per clause and architecture, how many items passed, failed (wrong
behaviour), errored (the implementation misbehaved as code) or hit a known failure; the terminal
table, JSON and Markdown; and the known-failures file (``--xfails-file``).

An item (one architecture and scenario) that passes counts as passed for every clause.  An item
that fails counts as failed (or errored) for the clause of its violation; it says nothing of the
other clauses, since the run stopped there.  A violation of a clause the implementation declares
(``Implementation.known_violations``) or the known-failures file lists is counted, not raised, so
the run goes on judging the rest: such an item counts as *known* for those clauses, and as passed
for the others.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping

import attrs

OUTCOMES = ("passed", "failed", "errored", "known")
#: The row of the items that failed or errored without a clause verdict (a test or harness error,
#: an exception that is not a :class:`~pgconform.sim.errors.Violation`): counted as errored.
NO_CLAUSE = "(no clause: not a verdict)"


@attrs.frozen
class ItemResult:
    """What one conformance item (an arch and scenario) gave."""

    nodeid: str
    arch: str
    scenario: str
    outcome: str            # passed | failed | errored | skipped
    clause: str | None = None
    message: str = ""
    replay: str = ""
    diagram_rows: int = 0
    known: Mapping[str, int] = attrs.field(factory=dict)   # tolerated clause -> hits
    xfails: tuple[int, ...] = ()                           # xfails-file entries (lines) hit

    def to_json(self) -> dict:
        return attrs.asdict(self)


def clause_of_key(key: str) -> str:
    """The clause of a known-violation key: ``clause``, ``clause[what]``, ``clause@function`` or
    ``clause[what]@function`` (see ``Machine.violation``)."""
    return key.partition("@")[0].partition("[")[0]


def tally(results: Iterable[ItemResult], clauses: Iterable[str]) -> dict:
    """clause -> arch -> outcome -> count; a known violation counts under its clause, whatever
    the scope of the key it was declared with."""
    clauses = list(clauses)
    table: dict = {c: {} for c in clauses}
    for r in results:
        if r.outcome == "skipped":
            continue
        known = {clause_of_key(key) for key in r.known}
        for c in clauses:
            cell = table[c].setdefault(r.arch, dict.fromkeys(OUTCOMES, 0))
            if r.outcome in ("failed", "errored"):
                if c == r.clause:
                    cell[r.outcome] += 1
            elif c in known:
                cell["known"] += 1
            else:
                cell["passed"] += 1
        if r.outcome in ("failed", "errored") and r.clause not in clauses:
            # no verdict (a test or harness error): errored, in a row of its own; or a clause
            # not in CLAUSES (a bug): its own row too
            row = NO_CLAUSE if r.clause is None else r.clause
            outcome = "errored" if r.clause is None else r.outcome
            table.setdefault(row, {}).setdefault(r.arch, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
    return table


def _arches(results: Iterable[ItemResult]) -> list[str]:
    """The architectures judged, in the order of ``pgconform.kernel.arch.ARCHES``."""
    from pgconform.kernel.arch import ARCHES

    order = list(ARCHES)
    seen = {r.arch for r in results if r.outcome != "skipped"}
    return sorted(seen, key=lambda a: (order.index(a) if a in order else len(order), a))


def _cell(counts: Mapping[str, int] | None) -> str:
    if not counts:
        return "-"
    text = f"{counts['passed']}/{counts['failed']}/{counts['errored']}"
    return text + (f" +{counts['known']}k" if counts["known"] else "")


def summary_lines(results: list[ItemResult], header: str, verbose: bool = False) -> list[str]:
    """The terminal table: one row per clause, one column per architecture, each cell
    passed/failed/errored (+N known).  Without ``verbose``, clauses that only passed are
    counted in one line instead of listed."""
    from pgconform.oracle.clauses import CLAUSES

    arches = _arches(results)
    table = tally(results, CLAUSES)
    width = max(len(c) for c in table) + 2
    cols = [max(len(a), 9) for a in arches]
    lines = [header, ("cells: passed/failed/errored items (+N known: counted violations of "
             "declared or --xfails-file clauses)")]
    lines.append("clause".ljust(width) + "  ".join(a.ljust(w) for a, w in zip(arches, cols,
                                                                              strict=True)))
    quiet = 0
    for clause, per_arch in table.items():
        bad = any(v["failed"] or v["errored"] or v["known"] for v in per_arch.values())
        if not bad and not verbose:
            quiet += 1
            continue
        cells = [_cell(per_arch.get(a)).ljust(w) for a, w in zip(arches, cols, strict=True)]
        lines.append(clause.ljust(width) + "  ".join(cells).rstrip())
    passed = sum(1 for r in results if r.outcome == "passed")
    bad_items = [r for r in results if r.outcome in ("failed", "errored")]
    if quiet == len(table) and not bad_items and passed:
        held = f"every clause held on every architecture ({passed} items passed; -v lists them)"
        lines[2:] = [held]
    elif quiet == len(table) and not bad_items:
        lines[2:] = ["no item was judged: every conformance item was skipped"]
    elif quiet:
        lines.append(f"... and {quiet} clauses with no failure on any architecture "
                     "(-v lists them)")
    counts = {o: sum(1 for r in results if r.outcome == o)
              for o in ("passed", "failed", "errored", "skipped")}
    if bad_items:
        without = sum(1 for r in bad_items if r.clause is None)
        lines.append(f"items: {counts['passed']} passed, {counts['failed']} failed, "
                     f"{counts['errored']} errored, {counts['skipped']} skipped"
                     + (f" ({without} ended without a clause verdict: counted errored, in the "
                        f"row {NO_CLAUSE})" if without else ""))
    return lines


def to_json(results: list[ItemResult], implementation: Mapping[str, str]) -> dict:
    from pgconform.oracle.clauses import CLAUSES

    table = tally(results, CLAUSES)
    return {
        "implementation": dict(implementation),
        "arches": list(dict.fromkeys(r.arch for r in results)),
        "totals": {o: sum(1 for r in results if r.outcome == o)
                   for o in ("passed", "failed", "errored", "skipped")},
        "clauses": {c: {"statement": CLAUSES.get(c, ""), "per_arch": per_arch}
                    for c, per_arch in table.items()},
        "items": [r.to_json() for r in results],
    }


def to_markdown(results: list[ItemResult], implementation: Mapping[str, str]) -> str:
    from pgconform.oracle.clauses import CLAUSES

    arches = _arches(results)
    table = tally(results, CLAUSES)
    out = [f"# pgconform report: {implementation.get('spec', '?')}", "",
           (f"Implementation `{implementation.get('spec', '?')}` (from "
           f"{implementation.get('source', '?')}). Cells: passed/failed/errored items "
           "(+N known)."), "",
           "| clause | " + " | ".join(arches) + " |",
           "|---|" + "---|" * len(arches)]
    for clause, per_arch in table.items():
        out.append(f"| `{clause}` | " + " | ".join(_cell(per_arch.get(a)) for a in arches) + " |")
    failures = [r for r in results if r.outcome in ("failed", "errored")]
    if failures:
        out += ["", "## Failures", ""]
        for r in failures:
            out.append(f"- `{r.nodeid}` ({r.arch}, {r.scenario}): **{r.outcome}** "
                       f"`{r.clause}`: {r.message}")
            if r.replay:
                out.append(f"  - replay: `python -m pgconform replay {r.replay}`")
    return "\n".join(out) + "\n"


def write(path: str, results: list[ItemResult], implementation: Mapping[str, str]) -> None:
    """The report as Markdown if ``path`` ends in ``.md``, else JSON."""
    if str(path).endswith(".md"):
        text = to_markdown(results, implementation)
    else:
        text = json.dumps(to_json(results, implementation), indent=1) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------------
# the known-failures file


@attrs.frozen
class XfailEntry:
    """One line of a known-failures file: ``CLAUSE [ARCH [SCENARIO]]  # reason`` (globs)."""

    line: int
    clause: str
    arch: str = "*"
    scenario: str = "*"
    reason: str = ""

    def covers(self, arch: str, scenario: str) -> bool:
        return fnmatch.fnmatchcase(arch, self.arch) and fnmatch.fnmatchcase(scenario,
                                                                             self.scenario)

    def clauses(self, known: Iterable[str]) -> list[str]:
        return [c for c in known if fnmatch.fnmatchcase(c, self.clause)]


class XfailsError(ValueError):
    """A known-failures file that cannot be read."""


def parse_xfails(text: str) -> list[XfailEntry]:
    """Parse a known-failures file: one entry per line, ``#`` starts a comment (the reason of the
    entry on its line), blank lines are ignored."""
    entries = []
    for n, raw in enumerate(text.splitlines(), start=1):
        body, _, comment = raw.partition("#")
        words = body.split()
        if not words:
            continue
        if len(words) > 3:
            raise XfailsError(f"line {n}: expected CLAUSE [ARCH [SCENARIO]], got {body.strip()!r}")
        entries.append(XfailEntry(n, *words, reason=comment.strip()))
    return entries


def static_warnings(entries: list[XfailEntry], clauses: Iterable[str], arches: Iterable[str],
                    scenarios: Iterable[str]) -> list[str]:
    """Entries that can match nothing: no such clause, architecture or scenario."""
    clauses, arches, scenarios = list(clauses), list(arches), list(scenarios)
    out = []
    for e in entries:
        if not e.clauses(clauses):
            out.append(f"line {e.line}: {e.clause!r} matches no clause")
        elif not any(fnmatch.fnmatchcase(a, e.arch) for a in arches):
            out.append(f"line {e.line}: {e.arch!r} matches no architecture judged")
        elif not any(fnmatch.fnmatchcase(s, e.scenario) for s in scenarios):
            out.append(f"line {e.line}: {e.scenario!r} matches no scenario")
    return out


def tolerated_for(entries: list[XfailEntry], arch: str, scenario: str,
                  clauses: Iterable[str]) -> dict[str, tuple[int, str]]:
    """clause -> (entry line, reason) for the item (``arch``, ``scenario``)."""
    clauses = list(clauses)
    out: dict[str, tuple[int, str]] = {}
    for e in entries:
        if e.covers(arch, scenario):
            for c in e.clauses(clauses):
                out.setdefault(c, (e.line, e.reason or "listed in the known-failures file"))
    return out
