"""Render a run's trace as a self-contained HTML timeline of the failing schedule.

The text race diagram of :mod:`pgconform.report.trace` shows one effect per line; this page shows
the same schedule as a picture, for the long traces where the text is hard to follow:

* one horizontal lane per lane of the trace (``CPU0``, ``CPU1``, ..., ``RCU`` for RCU callbacks
  last), time running left to right, one column per trace row;
* every effect as a small mark in its lane, coloured by kind (read, write, lock, RCU, IRQ, other),
  with a tooltip giving the kernel call path and the effect (and its result where the text diagram
  shows one); a task start as a flag with the task's label; the violating effect in red, with a
  red line through every lane; the effect each unfinished task was about to run, hollow, in an
  extra column after the last row;
* lock hold spans as labelled bars under the marks, from the acquisition to the release (read
  holds of an rw_semaphore lighter than write holds; a hold still open at the end runs to it);
* rcu_read_lock() sections and interrupts-off sections as shaded bands on the lane;
* grace periods in a strip under the lanes: each call_rcu() from its row to the row where its
  callback starts on the RCU lane, each synchronize_rcu() from the row at which the task reached it
  to the row at which it returned.

The page has no script and loads nothing: one ``<style>`` block and inline ``<svg>``.  The markup is
well-formed XML, and every element that stands for something of the trace carries ``data-``
attributes a test can read back:

* ``<g class="lane" data-lane="CPU0">`` per lane, in display order;
* ``<rect class="effect k-KIND" data-row data-lane data-effect>`` per effect (``data-effect`` is
  the effect's class name, the row names the task), with ``violation`` added to the class of the
  violating one (a ``pending`` one if the violation was raised as a task reached an effect);
* ``<path class="start" data-row data-lane data-task data-label>`` per task start;
* ``<rect class="pending" data-lane data-task data-effect>`` per effect not run;
* ``<rect class="hold" data-lock data-lane data-task data-mode data-start data-end>``;
* ``<rect class="rcu-section" ...>`` and ``<rect class="irq-off" ...>`` with ``data-lane``,
  ``data-task``, ``data-start``, ``data-end``;
* ``<rect class="grace-period" data-kind data-lane data-task data-start data-end>``, with
  ``data-callback`` for call_rcu().

``data-row``, ``data-start`` and ``data-end`` are indices into ``Machine.trace`` (the text diagram
and the numbers drawn on the page count from 1, so row ``N`` is drawn as ``N + 1``); spans include
both ends, and a span still open when the trace ends carries ``data-open="true"`` and ends at the
last row.
"""

from __future__ import annotations

import html
import math
import re
from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path

from pgconform.sim.effects import (
    Atomic,
    CallRcu,
    DowngradeWrite,
    DownRead,
    DownReadTrylock,
    DownWrite,
    DownWriteTrylock,
    IpiSync,
    IrqDisable,
    IrqEnable,
    Load,
    Lock,
    RcuReadLock,
    RcuReadUnlock,
    SpinIsLocked,
    Store,
    SynchronizeRcu,
    Trylock,
    Unlock,
    UpRead,
    UpWrite,
)

#: at most this many rows are drawn (the last ones); spans are still computed over the whole trace
MAX_ROWS = 5000
#: and only as many of the last rows as keep the page near this size (characters)
MAX_BYTES = 1_800_000
#: the estimated size of a row's markup besides its tooltip, spans included
ROW_BYTES = 260
#: tooltips cut their call path and effect text to this many characters each
MAX_TEXT = 300

COL = 14            # width of one trace row
LEFT = 6            # space before the first row
AXIS_H = 24         # the row-number axis at the top
LABEL_H = 13        # the line of task labels at the top of a lane
MARK_H = 18         # the line of effect marks
TRACK_H = 14        # one track of hold bars
LANE_PAD = 6        # space under a lane's last track
GAP = 4             # space between lanes
NAMES_W = 86        # the lane-name column
CHAR_W = 5.6        # estimated width of a character of the 9px labels
TICK_EVERY = 10     # row numbers on the axis

_KIND = {
    Load: "read",
    Store: "write",
    Lock: "lock",
    Trylock: "lock",
    Unlock: "lock",
    SpinIsLocked: "lock",
    DownRead: "lock",
    DownWrite: "lock",
    DownReadTrylock: "lock",
    DownWriteTrylock: "lock",
    UpRead: "lock",
    UpWrite: "lock",
    DowngradeWrite: "lock",
    RcuReadLock: "rcu",
    RcuReadUnlock: "rcu",
    CallRcu: "rcu",
    SynchronizeRcu: "rcu",
    IrqDisable: "irq",
    IrqEnable: "irq",
    IpiSync: "irq",
    Atomic: "other",
}

#: acquisitions: effect type -> (hold mode, whether it holds only when it returned True)
_ACQUIRE = {
    Lock: ("exclusive", False),
    Trylock: ("exclusive", True),
    DownWrite: ("write", False),
    DownWriteTrylock: ("write", True),
    DownRead: ("read", False),
    DownReadTrylock: ("read", True),
}
#: releases: effect type -> the hold mode it ends
_RELEASE = {Unlock: "exclusive", UpWrite: "write", UpRead: "read"}

_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

_CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 12px 16px; color: #222; background: #fff; }
h1 { font-size: 17px; margin: 0 0 6px; }
.verdict { margin: 4px 0; padding: 6px 10px; background: #fdecea; border-left: 4px solid #c62828; }
.verdict .clause { font-family: monospace; font-weight: bold; color: #b71c1c; }
.where, .summary, .note { margin: 4px 0; color: #444; }
.where code { font-size: 12px; }
ul.legend { list-style: none; padding: 0; margin: 8px 0; display: flex; flex-wrap: wrap;
            gap: 4px 16px; }
ul.legend li { display: flex; align-items: center; gap: 5px; }
.sw { display: inline-block; width: 14px; height: 10px; border: 1px solid #0003; }
.chart { display: flex; align-items: flex-start; border: 1px solid #ccc; }
.scroll { overflow-x: auto; flex: 1; }
svg { display: block; font-family: monospace; font-size: 9px; }
svg.names { flex: none; border-right: 1px solid #ccc; background: #fafafa; }
.lane-name, .gp-name { font-size: 12px; font-weight: bold; fill: #333; }
.gp-name { fill: #185c2c; }
.lane-bg { fill: #fff; }
.lane-bg.odd { fill: #f6f7f9; }
.grid { stroke: #0000000f; stroke-width: 1; }
.tick { fill: #777; }
.effect { stroke: #0005; stroke-width: 0.5; }
.effect:hover, .start:hover, .hold:hover, .pending:hover { stroke: #000; stroke-width: 1.5; }
.k-read, .sw.k-read { fill: #3b78c4; background: #3b78c4; }
.k-write, .sw.k-write { fill: #8e44ad; background: #8e44ad; }
.k-lock, .sw.k-lock { fill: #666; background: #666; }
.k-rcu, .sw.k-rcu { fill: #2a9d4a; background: #2a9d4a; }
.k-irq, .sw.k-irq { fill: #e07b00; background: #e07b00; }
.k-other, .sw.k-other { fill: #16a5a5; background: #16a5a5; }
.effect.violation { fill: #d50000; stroke: #000; stroke-width: 1.5; }
.sw.violation { background: #d50000; }
.violation-line { stroke: #d50000; stroke-width: 2; stroke-dasharray: 4 3; }
.start, .sw.start { fill: #222; background: #222; }
.task-label { fill: #222; }
.pending, .sw.pending { fill: #fff; background: #fff; stroke: #444; stroke-dasharray: 2 1; }
.pending.violation { stroke: #d50000; stroke-width: 2; }
.hold, .sw.hold { fill: #8a8f98; background: #8a8f98; stroke: #0006; stroke-width: 0.5; }
.hold.mode-read, .sw.mode-read { fill: #c3c8d0; background: #c3c8d0; }
.hold.open { stroke-dasharray: 3 2; }
.hold-label { fill: #111; pointer-events: none; }
.rcu-section, .sw.rcu-section { fill: #2a9d4a; fill-opacity: 0.14; background: #2a9d4a33; }
.irq-off, .sw.irq-off { fill: #e07b00; fill-opacity: 0.16; background: #e07b0033; }
.rcu-edge { stroke: #2a9d4a; stroke-width: 2; }
.irq-edge { stroke: #e07b00; stroke-width: 2; }
.grace-period, .sw.grace-period { fill: #b9e4c9; background: #b9e4c9; stroke: #2a9d4a; }
.grace-period.open { stroke-dasharray: 3 2; }
.grace-period.kind-synchronize_rcu { fill: #d7ecdf; }
.gp-label { fill: #185c2c; pointer-events: none; }
.gp-title { font-size: 11px; font-weight: bold; fill: #185c2c; }
details { margin-top: 12px; }
pre { font-size: 11px; background: #f6f6f6; padding: 8px; overflow-x: auto; }
"""


def _clean(text: str) -> str:
    """``text`` without the characters XML forbids."""
    return _BAD_CHARS.sub("?", text)


def _esc(text: object) -> str:
    return html.escape(_clean(str(text)), quote=True)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def _attrs(**attrs: object) -> str:
    """``name="value"`` pairs, escaped; ``data_x`` becomes ``data-x``; None values are left out."""
    return " ".join(f'{k.replace("_", "-")}="{_esc(v)}"' for k, v in attrs.items() if v is not None)


def _describe(eff) -> str:
    """``str(eff)``, or its type if that fails (the page is drawn for a failure: never raise)."""
    try:
        return str(eff)
    except Exception as e:  # noqa: BLE001 - a broken __str__ must not hide the verdict
        return f"<{type(eff).__name__}: str() raised {type(e).__name__}>"


def _result(res) -> str:
    try:
        return repr(res)
    except Exception as e:  # noqa: BLE001
        return f"<repr() raised {type(e).__name__}>"


def _where(path: Iterable[str]) -> str:
    return " > ".join(p for p in path if not p.startswith("<"))


def _what(eff, res) -> str:
    what = _describe(eff)
    if eff.shows_result and res is not None and res != "!":
        what += f" -> {_result(res)}"
    return what


def lane_order(lanes: Iterable[str]) -> list[str]:
    """The lanes in display order: CPUs by number (CPU2 before CPU10), other lanes by name, RCU
    last."""

    def key(lane: str):
        parts = re.split(r"(\d+)", lane)
        return (lane == "RCU", [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts])

    return sorted(set(lanes), key=key)


# ------------------------------------------------------------------------------------------------
# reading the trace


class _Span:
    """Something drawn from one row to another: a lock hold, a section, a grace period."""

    __slots__ = ("attrs", "cls", "end", "label", "lane", "open", "start", "task", "tip", "track")

    def __init__(self, cls: str, lane: str, task: str, start: int, label: str = "", **attrs):
        self.cls = cls
        self.lane = lane
        self.task = task
        self.start = start
        self.end = start
        self.open = True
        self.label = label
        self.attrs = attrs
        self.tip = ""
        self.track = 0

    def close(self, row: int) -> None:
        self.end = row
        self.open = False


class _Spans:
    """Every span of a trace, found in one pass over it."""

    def __init__(self, m) -> None:
        rows = m.trace
        self.holds: list[_Span] = []
        self.sections: list[_Span] = []
        self.grace: list[_Span] = []
        held: dict[tuple, _Span] = {}         # (task, lock, mode) -> open hold
        rcu: dict[object, list] = {}           # task -> [nesting, open section]
        irq: dict[object, list] = {}
        queued: dict[str, deque] = defaultdict(deque)   # callback name -> open call_rcu spans
        last_row: dict[object, int] = {}       # task -> its latest row
        for row, (t, _path, eff, res) in enumerate(rows):
            lane = t.lane
            if eff is None:
                if lane == "RCU" and queued.get(t.label):
                    queued[t.label].popleft().close(row)
                last_row[t] = row
                continue
            prev = last_row.get(t, row)
            last_row[t] = row
            if res == "!":  # the effect did not complete: it changed nothing
                continue
            kind = type(eff)
            acq = _ACQUIRE.get(kind)
            if acq is not None:
                mode, only_true = acq
                if not only_true or res is True:
                    lock = eff.sem if hasattr(eff, "sem") else eff.lock
                    self._hold(held, t, lock, mode, row)
            elif kind in _RELEASE:
                lock = eff.sem if hasattr(eff, "sem") else eff.lock
                span = held.pop((t, lock, _RELEASE[kind]), None)
                if span is not None:
                    span.close(row)
            elif kind is DowngradeWrite:
                span = held.pop((t, eff.sem, "write"), None)
                if span is not None:
                    span.close(row)
                self._hold(held, t, eff.sem, "read", row)
            elif kind is RcuReadLock or kind is IrqDisable:
                self._enter(rcu if kind is RcuReadLock else irq, t, row,
                            "rcu-section" if kind is RcuReadLock else "irq-off")
            elif kind is RcuReadUnlock or kind is IrqEnable:
                self._leave(rcu if kind is RcuReadUnlock else irq, t, row)
            elif kind is CallRcu:
                name = getattr(eff.fn, "__name__", "rcu_callback")
                span = _Span("grace-period", lane, t.name, row, f"call_rcu: {name}",
                             kind="call_rcu", callback=name)
                span.tip = f"call_rcu({_describe(eff.head)}, {name}) by {t.name}"
                queued[name].append(span)
                self.grace.append(span)
            elif kind is SynchronizeRcu:
                span = _Span("grace-period", lane, t.name, prev, "synchronize_rcu",
                             kind="synchronize_rcu")
                span.tip = f"synchronize_rcu() by {t.name}"
                span.close(row)
                self.grace.append(span)
        for t in getattr(m, "tasks", ()):
            # a synchronize_rcu() still waiting: from the row the task reached it to the end
            if not t.done and type(t.pending) is SynchronizeRcu and t in last_row:
                last = rows[last_row[t]]
                if last[2] is not t.pending:
                    span = _Span("grace-period", t.lane, t.name, last_row[t], "synchronize_rcu",
                                 kind="synchronize_rcu")
                    span.tip = f"synchronize_rcu() by {t.name}, still waiting"
                    self.grace.append(span)
        end = len(rows) - 1
        for span in (*self.holds, *self.sections, *self.grace):
            if span.open:
                span.end = max(end, span.start)

    def _hold(self, held: dict, t, lock, mode: str, row: int) -> None:
        name = _describe_lock(lock)
        span = _Span("hold", t.lane, t.name, row, name, lock=name, mode=mode)
        held[(t, lock, mode)] = span
        self.holds.append(span)

    def _enter(self, nesting: dict, t, row: int, cls: str) -> None:
        state = nesting.get(t)
        if state is None or state[0] == 0:
            span = _Span(cls, t.lane, t.name, row)
            self.sections.append(span)
            nesting[t] = [1, span]
        else:
            state[0] += 1

    @staticmethod
    def _leave(nesting: dict, t, row: int) -> None:
        state = nesting.get(t)
        if state is None or state[0] == 0:
            return
        state[0] -= 1
        if state[0] == 0:
            state[1].close(row)


def _describe_lock(lock) -> str:
    try:
        return repr(lock)
    except Exception as e:  # noqa: BLE001
        return f"<{type(lock).__name__}: repr() raised {type(e).__name__}>"


def _label_cols(text: str) -> int:
    """How many columns a label of the hold bars covers."""
    return math.ceil((len(text) * CHAR_W + 6) / COL)


def _pack(spans: list[_Span], first: int) -> int:
    """Give each span a track so that no two overlap (labels included); the number of tracks."""
    ends: list[int] = []
    for span in sorted(spans, key=lambda s: (max(s.start, first), s.end)):
        start = max(span.start, first)
        reach = max(span.end, start + _label_cols(span.label) - 1)
        for i, end in enumerate(ends):
            if end < start:
                span.track = i
                ends[i] = reach
                break
        else:
            span.track = len(ends)
            ends.append(reach)
    return len(ends)


# ------------------------------------------------------------------------------------------------
# drawing


def render_html(m, violation=None, title: str = "") -> str:
    """The trace of machine ``m`` as one self-contained HTML page (see the module docstring).

    ``violation`` (a :class:`~pgconform.sim.errors.Violation`) fills the header; ``title`` heads
    the page (an implementation and scenario name, say)."""
    return _Page(m, violation, title).html()


def write_html(path, m, violation=None, title: str = "") -> None:
    """Write :func:`render_html` of ``m`` to ``path`` (utf-8)."""
    Path(path).write_text(render_html(m, violation, title), encoding="utf-8")


class _Page:
    """The layout of one page: which rows are drawn, where each lane is, and the markup."""

    def __init__(self, m, violation, title: str) -> None:
        self.m = m
        self.violation = violation
        self.title = title
        rows = self.rows = m.trace
        self.tips = self._tips()
        first = self.first = len(rows) - len(self.tips)
        self.spans = _Spans(m)
        self.pending = _pending(m, violation)
        self.lanes = lane_order([t.lane for t, *_ in rows] + [t.lane for t, *_ in self.pending])
        self.bad_rows = [row for row in range(first, len(rows)) if rows[row][3] == "!"]
        ncols = len(rows) - first + (1 if self.pending else 0)
        self.width = LEFT + max(ncols, 1) * COL + 40

        self.holds: dict[str, list[_Span]] = defaultdict(list)
        for span in self.spans.holds:
            if span.end >= first:
                self.holds[span.lane].append(span)
        self.sections: dict[str, list[_Span]] = defaultdict(list)
        for span in self.spans.sections:
            if span.end >= first:
                self.sections[span.lane].append(span)
        self.lane_rows: dict[str, list[int]] = defaultdict(list)
        for row in range(first, len(rows)):
            self.lane_rows[rows[row][0].lane].append(row)
        self.grace = [span for span in self.spans.grace if span.end >= first]

        self.tops: dict[str, int] = {}
        self.heights: dict[str, int] = {}
        y = AXIS_H
        for lane in self.lanes:
            ntracks = _pack(self.holds[lane], first)
            self.tops[lane] = y
            self.heights[lane] = LABEL_H + MARK_H + ntracks * TRACK_H + LANE_PAD
            y += self.heights[lane] + GAP
        self.gp_top = y
        if self.grace:
            y += LABEL_H + _pack(self.grace, first) * TRACK_H + LANE_PAD
        self.height = y + 4

    def _tips(self) -> list[str]:
        """The escaped tooltip of each row drawn, oldest first: the last rows of the trace, as many
        as fit the size budget (MAX_BYTES) and MAX_ROWS."""
        rows = self.rows
        tips: list[str] = []
        size = 0
        for row in range(len(rows) - 1, max(-1, len(rows) - 1 - MAX_ROWS), -1):
            t, path, eff, res = rows[row]
            if eff is None:
                label = path[0] if path else t.label
                tip = _esc(f"{row + 1}: {t.name} starts ({_cut(label)})")
            else:
                text = [f"{row + 1}: {t.name}", _cut(_where(path)), _cut(_what(eff, res))]
                if res == "!":
                    text.append("*** the violating effect")
                tip = _esc("\n".join(line for line in text if line))
            size += len(tip) + ROW_BYTES
            if size > MAX_BYTES and tips:
                break
            tips.append(tip)
        tips.reverse()
        return tips

    def x(self, row: int) -> int:
        """The left edge of the column of ``row``."""
        return LEFT + (row - self.first) * COL

    # ------------------------------------------------------------------------ the page

    def html(self) -> str:
        violation, title = self.violation, self.title
        page_title = title or (f"[{violation.clause}]" if violation is not None else "trace")
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"/>',
            f"<title>{_esc(page_title)} - pgconform timeline</title>",
            f"<style>{_CSS}</style>",
            "</head><body>",
            f"<h1>{_esc(title or 'pgconform: trace timeline')}</h1>",
            *self.header(),
            _LEGEND,
            '<div class="chart">',
            self.names_svg(),
            '<div class="scroll">',
            self.timeline_svg(),
            "</div></div>",
        ]
        diagram = getattr(violation, "diagram", "") if violation is not None else ""
        if diagram:
            out.append("<details><summary>the same schedule as a text race diagram</summary>")
            out.append(f"<pre>{_esc(diagram)}</pre></details>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def header(self) -> list[str]:
        out = []
        violation, rows = self.violation, self.rows
        if violation is not None:
            what = "errored" if type(violation).__name__ == "ImplementationErrored" else "violation"
            out.append(f'<p class="verdict">{what}: <span class="clause">'
                       f"[{_esc(violation.clause)}]</span> {_esc(violation.message)}</p>")
        for row in self.bad_rows:
            t, path, eff, _res = rows[row]
            where = _where(path)
            out.append(f'<p class="where">failing effect: row {row + 1} on {_esc(t.lane)} '
                       f"({_esc(t.name)}): <code>{_esc(where + ' > ' if where else '')}"
                       f"{_esc(_describe(eff))}</code></p>")
        for t, eff, bad in self.pending:
            if bad:
                out.append(f'<p class="where">raised as {_esc(t.name)} reached '
                           f"<code>{_esc(_describe(eff))}</code> (after the last row)</p>")
        out.append(f'<p class="summary">{len(rows)} rows on {len(self.lanes)} lanes '
                   f"({_esc(', '.join(self.lanes))}); hover a mark for its call path.</p>")
        if self.first:
            out.append(f'<p class="note">only the last {len(rows) - self.first} rows are drawn: '
                       f"rows 1-{self.first} are left out (spans that began there start at the "
                       "left edge).</p>")
        return out

    def names_svg(self) -> str:
        out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="names" width="{NAMES_W}" '
               f'height="{self.height}">')]
        for lane in self.lanes:
            y = self.tops[lane] + LABEL_H + MARK_H // 2 + 4
            out.append(f'<text class="lane-name" x="8" y="{y}">{_esc(lane)}</text>')
        if self.grace:
            out.append(f'<text class="gp-name" x="8" y="{self.gp_top + LABEL_H - 2}">'
                       "RCU GPs</text>")
        out.append("</svg>")
        return "\n".join(out)

    def timeline_svg(self) -> str:
        width, height = self.width, self.height
        out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
               f'height="{height}" viewBox="0 0 {width} {height}">')]
        add = out.append
        add('<g class="backgrounds">')
        for i, lane in enumerate(self.lanes):
            add(f'<rect class="lane-bg{" odd" if i % 2 else ""}" x="0" y="{self.tops[lane]}" '
                f'width="{width}" height="{self.heights[lane]}"/>')
        add("</g>")
        self.axis(add)
        for lane in self.lanes:
            self.lane(add, lane)
        if self.grace:
            add(f'<g class="grace-periods" transform="translate(0,{self.gp_top})">')
            add(f'<text class="gp-title" x="{LEFT}" y="{LABEL_H - 2}">grace periods</text>')
            for span in self.grace:
                self.bar(add, span, LABEL_H, span.tip)
            add("</g>")
        marked = list(self.bad_rows)
        if not marked and any(bad for *_, bad in self.pending):
            marked.append(len(self.rows))  # the column of the effects not run
        for row in marked:
            cx = self.x(row) + COL // 2
            add(f'<line class="violation-line" x1="{cx}" y1="{AXIS_H - 4}" x2="{cx}" '
                f'y2="{height}"/>')
        add("</svg>")
        return "\n".join(out)

    def axis(self, add) -> None:
        add('<g class="axis">')
        for row in range(self.first, len(self.rows) + (1 if self.pending else 0)):
            if (row + 1) % TICK_EVERY == 0 or row == self.first:
                cx = self.x(row) + COL // 2
                add(f'<line class="grid" x1="{cx}" y1="{AXIS_H - 4}" x2="{cx}" '
                    f'y2="{self.height}"/>')
                add(f'<text class="tick" x="{cx}" y="{AXIS_H - 8}" text-anchor="middle">'
                    f"{row + 1}</text>")
        add("</g>")

    def lane(self, add, lane: str) -> None:
        rows, first, tips = self.rows, self.first, self.tips
        h = self.heights[lane]
        add(f'<g class="lane" data-lane="{_esc(lane)}" transform="translate(0,{self.tops[lane]})">')
        for span in self.sections[lane]:
            x0 = self.x(max(span.start, first))
            x1 = self.x(span.end) + COL
            rcu = span.cls == "rcu-section"
            tip = (f"{'rcu_read_lock() section' if rcu else 'interrupts off'}: {span.task}, "
                   f"rows {span.start + 1}-{span.end + 1}")
            if span.open:
                tip += " (still open at the end)"
            ey = 1 if rcu else h - 1
            add(f'<rect class="{span.cls}" {_span_attrs(span)} x="{x0}" y="0" '
                f'width="{x1 - x0}" height="{h}"><title>{_esc(tip)}</title></rect>')
            add(f'<line class="{"rcu-edge" if rcu else "irq-edge"}" x1="{x0}" y1="{ey}" '
                f'x2="{x1}" y2="{ey}"/>')
        add(f'<g class="marks" transform="translate(0,{LABEL_H + 2})">')
        mark = f'width="{COL - 6}" height="{MARK_H - 4}"'
        for row in self.lane_rows[lane]:
            t, path, eff, res = rows[row]
            cx = self.x(row)
            tip = tips[row - first]
            if eff is None:
                label = path[0] if path else t.label
                add(f'<path class="start" {_attrs(data_row=row, data_lane=lane, data_task=t.name)}'
                    f' {_attrs(data_label=label)} d="M{cx + 3} 15V0h8l-3 3.5l3 3.5h-8z">'
                    f"<title>{tip}</title></path>")
                add(f'<text class="task-label" x="{cx + 2}" y="-5">{_esc(_cut(label))}</text>')
                continue
            cls = f"effect k-{_KIND.get(type(eff), 'other')}"
            if res == "!":
                cls += " violation"
            add(f'<rect class="{cls}" data-row="{row}" data-lane="{_esc(lane)}" '
                f'data-effect="{_esc(type(eff).__name__)}" x="{cx + 3}" {mark}>'
                f"<title>{tip}</title></rect>")
        for t, eff, bad in self.pending:
            if t.lane != lane:
                continue
            tip = f"{t.name} was about to run (not run):\n{_cut(_what(eff, None))}"
            if bad:
                tip += "\n*** the violation was raised on reaching this effect"
            add(f'<rect class="{"pending violation" if bad else "pending"}" '
                f'{_attrs(data_lane=lane, data_task=t.name)} '
                f'data-effect="{_esc(type(eff).__name__)}" x="{self.x(len(rows)) + 3}" {mark}>'
                f"<title>{_esc(tip)}</title></rect>")
        add("</g>")
        for span in self.holds[lane]:
            self.bar(add, span, LABEL_H + MARK_H,
                     f"{span.label} held ({span.attrs['mode']}) by {span.task}")
        add("</g>")

    def bar(self, add, span: _Span, top: int, tip: str) -> None:
        """A labelled bar on track ``span.track`` below ``top``: a lock hold or a grace period."""
        x0 = self.x(max(span.start, self.first))
        x1 = self.x(span.end) + COL
        y = top + span.track * TRACK_H + 1
        cls = span.cls
        if "mode" in span.attrs:
            cls += f" mode-{span.attrs['mode']}"
        if "kind" in span.attrs:
            cls += f" kind-{span.attrs['kind']}"
        if span.open:
            cls += " open"
        tip = f"{tip}: rows {span.start + 1}-{span.end + 1}"
        if span.open:
            tip += " (still open at the end)"
        extra = _attrs(**{f"data_{k}": v for k, v in span.attrs.items()})
        add(f'<rect class="{cls}" {extra} {_span_attrs(span)} x="{x0 + 1}" y="{y}" '
            f'width="{max(x1 - x0 - 2, 2)}" height="{TRACK_H - 3}">'
            f"<title>{_esc(tip)}</title></rect>")
        label_cls = "gp-label" if span.cls == "grace-period" else "hold-label"
        add(f'<text class="{label_cls}" x="{x0 + 4}" y="{y + TRACK_H - 6}">'
            f"{_esc(_cut(span.label))}</text>")


def _unfinished(m) -> list:
    return [t for t in getattr(m, "tasks", ()) if not t.done and t.pending is not None]


def _pending(m, violation) -> list[tuple]:
    """(task, effect, whether the violation was raised on reaching it) for each task's effect not
    run.  A task whose last row is its pending effect failing ('!') already shows it."""
    last: dict[object, tuple] = {}
    for row in m.trace:
        last[row[0]] = row
    has_bad_row = any(row[3] == "!" for row in m.trace)
    vtask = getattr(violation, "task", None)
    out = []
    for t in _unfinished(m):
        prev = last.get(t)
        if prev is not None and prev[2] is t.pending and prev[3] == "!":
            continue
        out.append((t, t.pending, t is vtask and not has_bad_row))
    return out


def _span_attrs(span: _Span) -> str:
    return _attrs(data_lane=span.lane, data_task=span.task, data_start=span.start,
                  data_end=span.end, data_open="true" if span.open else None)


#: (swatch classes, meaning) of the legend
_LEGEND_ITEMS = (
    ("k-read", "read (READ_ONCE)"),
    ("k-write", "write (WRITE_ONCE)"),
    ("k-lock", "lock operation"),
    ("k-rcu", "RCU operation"),
    ("k-irq", "interrupts / IPI"),
    ("k-other", "other model step"),
    ("violation", "the violating effect"),
    ("start", "task start"),
    ("pending", "next effect, not run"),
    ("hold", "lock held (exclusive / write)"),
    ("hold mode-read", "lock held for read"),
    ("rcu-section", "rcu_read_lock() section"),
    ("irq-off", "interrupts off"),
    ("grace-period", "grace period (call_rcu() to its callback, synchronize_rcu())"),
)
_LEGEND = "\n".join(['<ul class="legend">',
                     *(f'<li><span class="sw {cls}"></span>{_esc(text)}</li>'
                       for cls, text in _LEGEND_ITEMS),
                     "</ul>"])
