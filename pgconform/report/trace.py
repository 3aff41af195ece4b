"""Render a run's trace as a race diagram, in the style of a kernel commit message: one column per
lane (CPU or RCU callbacks), one row per effect that matters, each with the innermost kernel
functions of its call path and the values read or replaced, the violating effect last.

Only effects that touch the objects the violation concerns (named in its message, its object,
the violating effect's objects, a PMD value pointing at a table among them, that table's lock)
are shown, with the synchronisation around them (RCU sections, IRQ-off sections, call_rcu, IPIs,
spinlocks and rwsems) as room allows; the rest is folded into one line per gap saying how many
effects of which functions were left out.  Rendering runs only on failure.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter

from pgconform.sim.effects import effect_text
from pgconform.sim.names import aliases, find_names, is_plumbing
from pgconform.sim.sync import RcuHead

#: effect rows a diagram shows at most (folded gaps are one line each, not counted)
MAX_ROWS = 30
COLUMN = 44
#: innermost kernel functions of a call path shown per row
PATH_DEPTH = 2
#: effects of the violating task shown however little they touch the objects involved
RECENT = 4

#: effects that open or close a section or wait for one: context for any race
_SYNC = frozenset({"RcuReadLock", "RcuReadUnlock", "IrqDisable", "IrqEnable", "CallRcu",
                   "SynchronizeRcu", "IpiSync"})
_LOCKS = frozenset({"Lock", "Trylock", "Unlock", "DownRead", "DownWrite", "DownReadTrylock",
                    "DownWriteTrylock", "UpRead", "UpWrite", "DowngradeWrite"})


def where(path: tuple) -> str:
    """The innermost kernel functions of a call path: the frames that are plumbing (generator
    expressions, and what declares itself so: :func:`pgconform.sim.names.plumbing`) left out, and
    a repeat folded (an implementation's function called under its kernel name, ``checked()``)."""
    names = [p for i, p in enumerate(path)
             if not is_plumbing(p) and (i == 0 or path[i - 1] != p)]
    return " > ".join(names[-PATH_DEPTH:])


def describe(eff, res) -> str:
    """One effect as the diagram shows it: what it did, the value read or the value replaced."""
    what = effect_text(eff)
    if res == "!":
        return "*** " + what
    if type(eff).__name__ == "Store":
        if res is not None:
            what += f"  (was {res!r})"
    elif eff.shows_result and res is not None:
        what += f" -> {res!r}"
    return what


def _cell(path: tuple, eff, res) -> list[str]:
    if eff is None:  # task start
        return [f"-- {path[0]} --"]
    w = where(path)
    lines = textwrap.wrap(w, COLUMN - 1, break_on_hyphens=False) if w else []
    lines += textwrap.wrap(describe(eff, res), COLUMN - 1, subsequent_indent="  ",
                           break_on_hyphens=False)
    return lines


def focus_tokens(violation, trace) -> set[str]:
    """The names of the objects a violation concerns: those its message names, its object and the
    violating effect's objects, with the aliases they go by (a PTE table's: the PMD value linking
    it, ``table@PFN``).  Names are found by the forms their classes declare
    (:mod:`pgconform.sim.names`)."""
    objs = []
    if violation is not None:
        objs.append(violation.obj)
    if trace and trace[-1][3] == "!" and trace[-1][2] is not None:
        try:
            objs.extend(trace[-1][2].objects())
        except Exception:  # noqa: BLE001 - a malformed effect: its message names the objects
            pass
    tokens = set(find_names(violation.message)) if violation is not None else set()
    for obj in objs:
        if obj is None:
            continue
        obj = obj.owner if isinstance(obj, RcuHead) else obj
        tokens.update(find_names(repr(obj)))
    for tok in list(tokens):
        tokens.update(aliases(tok))
    return tokens


def _mentions(text: str, tokens: set[str]) -> bool:
    return bool(tokens) and any(tok in tokens for tok in find_names(text))


def select(trace, tokens: set[str], limit: int = MAX_ROWS, task=None) -> list[int]:
    """Indices of the rows to show: the violating row, the last :data:`RECENT` effects of the
    violating task (``task``, if the violation was not raised at a row), the rows touching the
    focus objects, then synchronisation rows, latest first, up to ``limit``; a task's start row
    when any of its rows is shown."""
    last = len(trace) - 1
    touching, context = [], []
    # the violating task's last few effects: what it did just before
    culprit = trace[last][0] if trace and trace[last][3] == "!" else task
    recent = set([i for i, row in enumerate(trace) if row[0] is culprit and row[2] is not None]
                 [-RECENT:])
    for i, (_t, _path, eff, res) in enumerate(trace):
        if eff is None:
            continue
        what = effect_text(eff)
        text = what if res is None or res == "!" else f"{what} {res!r}"
        if i == last or res == "!" or i in recent or _mentions(text, tokens):
            touching.append(i)
        elif type(eff).__name__ in _SYNC or (type(eff).__name__ in _LOCKS
                                              and not eff.sleeps):
            context.append(i)
    tasks_touching = {trace[i][0] for i in touching[-limit:]}
    limit -= len(tasks_touching)  # room for their start rows
    chosen = set(touching[-max(limit, 1):])
    lanes = {trace[i][0].lane for i in chosen}
    # context on the lanes involved first, then on any lane; the latest first
    for pool in ([i for i in context if trace[i][0].lane in lanes], context):
        for i in reversed(pool):
            tasks = {trace[j][0] for j in chosen} | {trace[i][0]}
            if len(chosen) + len(tasks) >= limit + len(tasks_touching):
                break
            chosen.add(i)
    tasks = {trace[i][0] for i in chosen}
    starts = [i for i, row in enumerate(trace) if row[2] is None and row[0] in tasks]
    return sorted(chosen.union(starts))


def _fold(trace, lo: int, hi: int) -> str:
    """One line for the rows ``lo..hi-1`` left out: per lane, how many and in which functions."""
    per_lane: dict[str, Counter] = {}
    for t, path, eff, _res in trace[lo:hi]:
        fn = path[0] if eff is None else (where(path).split(" > ")[-1] or t.label)
        per_lane.setdefault(t.lane, Counter())[fn] += 1
    parts = []
    for lane, fns in per_lane.items():
        n = sum(fns.values())
        top = ", ".join(f"{fn}" + (f" x{c}" if c > 1 else "") for fn, c in fns.most_common(3))
        more = ", ..." if len(fns) > 3 else ""
        parts.append(f"{lane}: {n} effect{'s' if n > 1 else ''} in {top}{more}")
    return "     ...   (" + "; ".join(parts) + ")"


def render(m, violation=None, limit: int = MAX_ROWS, full: bool = False) -> str:
    """The race diagram of ``m``'s trace for ``violation`` (None: the last ``limit`` rows;
    ``full``: every row).  A violation raised as a task reached an effect (taking a lock it
    holds, a lock of a freed table) ends with that effect, marked, in the task's column."""
    trace = m.trace
    lanes: list[str] = []
    for t, *_ in trace:
        if t.lane not in lanes:
            lanes.append(t.lane)
    lanes.sort(key=lambda lane: (lane == "RCU", lane))
    pending = _pending_row(trace, violation)
    if pending is not None and pending[0].lane not in lanes:
        lanes.append(pending[0].lane)
    if full:
        shown = list(range(len(trace)))
    elif violation is None:
        shown = list(range(max(0, len(trace) - limit), len(trace)))
    else:
        shown = select(trace, focus_tokens(violation, trace), limit - (pending is not None),
                       task=violation.task)
    header = (" " * 5 + " | ".join(lane.ljust(COLUMN) for lane in lanes)).rstrip()
    out = [header, "-" * len(header)]
    prev = -1
    for i in shown:
        if i > prev + 1:
            out.append(_fold(trace, prev + 1, i))
        prev = i
        t, path, eff, res = trace[i]
        col = lanes.index(t.lane)
        for j, line in enumerate(_cell(path, eff, res)):
            cols = [""] * len(lanes)
            cols[col] = line
            prefix = f"{i + 1:4d} " if j == 0 else " " * 5
            out.append((prefix + " | ".join(c.ljust(COLUMN) for c in cols)).rstrip())
    if prev < len(trace) - 1:
        out.append(_fold(trace, prev + 1, len(trace)))
    if pending is not None:
        t, path, eff = pending
        col = lanes.index(t.lane)
        for j, line in enumerate(_cell(path, eff, "!")):
            cols = [""] * len(lanes)
            cols[col] = line.replace("*** ", "*** (reaching) ", 1)
            prefix = "next " if j == 0 else " " * 5
            out.append((prefix + " | ".join(c.ljust(COLUMN) for c in cols)).rstrip())
    if violation is not None:
        out.append("")
        out.append(f"violation: [{violation.clause}] {violation.message}")
    return "\n".join(out)


def _pending_row(trace, violation):
    """(task, call path, effect) of the effect a violation was raised at as its task reached it
    (the effect never ran, so the trace does not end with it), or None."""
    if violation is None or (trace and trace[-1][3] == "!"):
        return None
    t = violation.task
    if t is None or getattr(t, "pending", None) is None or t.done:
        return None
    from pgconform.sim.machine import call_path

    path = call_path(t.gen) if t.gen.gi_frame is not None else (t.label,)
    return t, path, t.pending


def count_rows(diagram: str) -> int:
    """How many effect rows a rendered diagram shows (for tests and the report)."""
    return sum(1 for line in diagram.splitlines() if re.match(r"\s*\d+ |next ", line))
