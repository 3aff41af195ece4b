"""Render a run's trace as a race diagram: one column per lane (CPU or RCU callbacks), one row per
effect, each with its kernel call path, the violating effect last."""

from __future__ import annotations

import textwrap

MAX_ROWS = 80
COLUMN = 46


def _cell(path: tuple, eff, res) -> list[str]:
    if eff is None:  # task start
        return [f"-- {path[0]} --"]
    where = " > ".join(p for p in path if not p.startswith("<"))
    what = str(eff)
    if eff.shows_result and res is not None and res != "!":
        what += f" -> {res!r}"
    if res == "!":
        what = "*** " + what
    lines = textwrap.wrap(where, COLUMN - 1, break_on_hyphens=False) if where else []
    lines += textwrap.wrap(what, COLUMN - 1, subsequent_indent="  ", break_on_hyphens=False)
    return lines


def render(m, violation=None) -> str:
    rows = m.trace
    lanes: list[str] = []
    for t, *_ in rows:
        if t.lane not in lanes:
            lanes.append(t.lane)
    lanes.sort(key=lambda lane: (lane == "RCU", lane))
    skipped = max(0, len(rows) - MAX_ROWS)
    shown = rows[skipped:]
    out = []
    header = " " * 5 + " | ".join(lane.ljust(COLUMN) for lane in lanes)
    out.append(header.rstrip())
    out.append("-" * len(header.rstrip()))
    if skipped:
        out.append(f"     ... {skipped} earlier effects not shown")
    for n, (t, path, eff, res) in enumerate(shown, start=skipped + 1):
        col = lanes.index(t.lane)
        cell = _cell(path, eff, res)
        for i, line in enumerate(cell):
            cols = [""] * len(lanes)
            cols[col] = line
            prefix = f"{n:4d} " if i == 0 else " " * 5
            out.append((prefix + " | ".join(c.ljust(COLUMN) for c in cols)).rstrip())
    if violation is not None:
        out.append("")
        out.append(f"violation: [{violation.clause}] {violation.message}")
    return "\n".join(out)
