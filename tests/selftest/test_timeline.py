"""The HTML timeline of a trace (:mod:`pgconform.report.timeline`), read back as a machine would.

Each test runs real tasks on the simulated machine, renders the trace, parses the page (the whole
document with ``html.parser`` and ``xml.etree``, the timeline ``<svg>`` with ``xml.etree``) and
checks what the markup says against the rows of ``Machine.trace``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from pgconform.harness.scenario import Op, build_world, start_op
from pgconform.kernel.objects import PteTable
from pgconform.registry import resolve
from pgconform.report import timeline
from pgconform.report.timeline import render_html, write_html
from pgconform.sim.effects import (
    Atomic,
    CallRcu,
    DowngradeWrite,
    DownWrite,
    IrqDisable,
    IrqEnable,
    Load,
    Lock,
    RcuReadLock,
    RcuReadUnlock,
    Store,
    SynchronizeRcu,
    Trylock,
    Unlock,
    UpRead,
)
from pgconform.sim.errors import Violation
from pgconform.sim.machine import Machine
from pgconform.sim.sync import RcuHead, RwSemaphore, Spinlock
from tests.selftest.helpers import SHARED, count_calls

# ------------------------------------------------------------------------------------------------
# reading the page back


class _Collector(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside <title> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_page(page: str) -> _Collector:
    """The page through html.parser; the whole document must be well-formed XML as well."""
    c = _Collector()
    c.feed(page)
    c.close()
    assert page.startswith("<!DOCTYPE html>")
    ET.fromstring(page[page.index("<html"):])  # raises on any unescaped <, > or &
    return c


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return root


def timeline_svg(page: str) -> ET.Element:
    """The timeline <svg> element of the page, parsed on its own."""
    start = page.index('<svg xmlns="http://www.w3.org/2000/svg" class="timeline"')
    end = page.index("</svg>", start) + len("</svg>")
    return _strip_ns(ET.fromstring(page[start:end]))


def of_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if cls in el.get("class", "").split()]


def title_of(el: ET.Element) -> str:
    t = el.find("title")
    assert t is not None, f"{el.tag} {el.attrib} has no tooltip"
    return t.text or ""


def span_rows(el: ET.Element) -> tuple[int, int]:
    return int(el.get("data-start")), int(el.get("data-end"))


def rows_of(m: Machine, pred) -> list[int]:
    return [i for i, (t, path, eff, res) in enumerate(m.trace) if pred(t, path, eff, res)]


def eff_rows(m: Machine, kind, lane: str | None = None) -> list[int]:
    """The rows where an effect of type ``kind`` ran (on ``lane``)."""
    return rows_of(m, lambda t, p, e, r: type(e) is kind and (lane is None or t.lane == lane))


# ------------------------------------------------------------------------------------------------
# tiny kernel code paths


class Table:
    """A page of entries, enough for Load and Store (a stand-in for a page table)."""

    def __init__(self, name: str, n: int = 4) -> None:
        self.name = name
        self.entries = [0] * n
        self.freed = False
        self.check_store = None

    def __repr__(self) -> str:
        return self.name


def only(*effects):
    # a loop, not ``yield from`` a tuple: call_path() follows generators only
    for eff in effects:  # noqa: UP028
        yield eff


def _set_freed(m, t, page):
    page.freed = True


def free_table(page):
    """An RCU callback freeing ``page``."""
    yield Atomic(f"free({page!r})", _set_freed, (page,))


def other_callback(page):
    yield Atomic(f"other({page!r})", lambda m, t: None)


def pte_walker(page, ptl):
    """A walker: locks the table, reads and writes an entry, unlocks."""
    yield Lock(ptl)
    v = yield Load(page, 0)
    yield Store(page, 0, v + 1)
    yield Unlock(ptl)


def walk_entry(page):
    return (yield from read_entry(page, 1))


def read_entry(page, idx):
    return (yield Load(page, idx))


def lockless_reader(page):
    """Interrupts off, then two nested read-side sections around two reads."""
    yield IrqDisable()
    yield RcuReadLock()
    yield RcuReadLock()
    yield Load(page, 0)
    yield RcuReadUnlock()
    yield from walk_entry(page)
    yield RcuReadUnlock()
    yield IrqEnable()


def retire_table(page, head):
    yield CallRcu(head, free_table, (page,))


def scenario_uaf():
    """CPU0 walks under ptl, CPU1 reads locklessly, CPU2 retires the table with call_rcu() while
    CPU1 is inside its section; the callback frees it; a late lockless read on CPU3 is the
    use-after-free."""
    m = Machine()
    page = Table("pte_table@7")
    ptl = Spinlock("ptl(pte_table@7)", cls="ptlock")
    walker = m.spawn("CPU0", pte_walker(page, ptl), "walk")
    reader = m.spawn("CPU1", lockless_reader(page), "lockless")
    m.run(reader, 3)  # irq off, rcu_read_lock twice
    m.run(walker, 2)  # takes ptl, reads
    retire = m.spawn("CPU2", retire_table(page, RcuHead(page)), "retire")
    m.run(retire, 10)
    m.run(walker, 10)
    assert m.ready_callbacks() == []  # the reader holds the grace period up
    m.run(reader, 10)
    assert reader.done
    (cb,) = m.ready_callbacks()
    m.run_callback(cb)
    late = m.spawn("CPU3", walk_entry(page), "late")
    with pytest.raises(Violation) as excinfo:
        m.run(late, 10)
    assert excinfo.value.clause == "pt.use-after-free"
    return m, excinfo.value


@pytest.fixture(scope="module")
def uaf():
    m, v = scenario_uaf()
    page = render_html(m, v, title="use after free")
    return m, v, page, timeline_svg(page)


# ------------------------------------------------------------------------------------------------
# lanes and rows


def test_lanes_in_cpu_order_with_rcu_last():
    m = Machine()
    page_ = Table("t")
    for lane in ("CPU10", "RCU-less", "CPU2", "CPU0"):
        m.spawn(lane, only(Load(page_, 0)), "op")
    m.spawn("CPU1", only(CallRcu(RcuHead(page_), other_callback, (page_,))), "q")
    m.finish()
    page = render_html(m)
    svg = timeline_svg(page)
    lanes = [g.get("data-lane") for g in of_class(svg, "lane")]
    assert lanes == ["CPU0", "CPU1", "CPU2", "CPU10", "RCU-less", "RCU"]
    # the lane names beside the timeline, in the same order
    names = ET.fromstring(page[page.index('<svg xmlns="http://www.w3.org/2000/svg" class="names"'):
                               page.index("</svg>") + len("</svg>")])
    assert [el.text for el in _strip_ns(names).iter("text")
            if el.get("class") == "lane-name"] == lanes


def test_every_row_drawn_once_in_its_lane(uaf):
    m, _v, _page, svg = uaf
    drawn = {}
    for g in of_class(svg, "lane"):
        for el in [*of_class(g, "effect"), *of_class(g, "start")]:
            assert el.get("data-lane") == g.get("data-lane")
            row = int(el.get("data-row"))
            assert row not in drawn, f"row {row} drawn twice"
            drawn[row] = el
    assert sorted(drawn) == list(range(len(m.trace)))
    for row, el in drawn.items():
        t, path, eff, _res = m.trace[row]
        assert el.get("data-lane") == t.lane
        if eff is None:
            assert "start" in el.get("class").split() and el.get("data-label") == path[0]
        else:
            assert el.get("data-effect") == type(eff).__name__
    # columns run left to right in trace order
    xs = [float(drawn[r].get("x") or drawn[r].get("d")[1:].split()[0]) for r in sorted(drawn)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


# ------------------------------------------------------------------------------------------------
# spans


def test_lock_hold_runs_from_acquisition_to_release(uaf):
    m, _v, _page, svg = uaf
    (taken,) = eff_rows(m, Lock)
    (released,) = eff_rows(m, Unlock)
    holds = of_class(svg, "hold")
    assert len(holds) == 1
    (hold,) = holds
    assert hold.get("data-lock") == "ptl(pte_table@7)"
    assert hold.get("data-lane") == "CPU0"
    assert span_rows(hold) == (taken, released)
    assert hold.get("data-open") is None
    assert "ptl(pte_table@7)" in title_of(hold)
    # the hold is drawn inside CPU0's lane
    (cpu0,) = [g for g in of_class(svg, "lane") if g.get("data-lane") == "CPU0"]
    assert hold in list(cpu0.iter())


def test_trylock_rwsem_downgrade_and_open_holds():
    m = Machine()
    sem = RwSemaphore("mmap_lock(mm0)", cls="mmap_lock")
    lk = Spinlock("pmd_ptl", cls="pmd")
    other = Spinlock("never_released", cls="x")
    owner = m.spawn("CPU1", only(Lock(lk), Load(Table("t"), 0)), "owner")
    m.step(owner)  # holds pmd_ptl
    tries = m.spawn("CPU0", only(Trylock(lk), DownWrite(sem), DowngradeWrite(sem), UpRead(sem),
                                 Lock(other), Load(Table("u"), 0)), "tries")
    assert m.run(tries, 5) == 5  # up to Lock(other): both tasks still hold a lock at the end
    page = render_html(m)
    parse_page(page)
    drawn = of_class(timeline_svg(page), "hold")
    holds = {(h.get("data-lock"), h.get("data-mode")): h for h in drawn}
    assert len(holds) == len(drawn) == 4
    (down,) = eff_rows(m, DownWrite)
    (downgrade,) = eff_rows(m, DowngradeWrite)
    (up,) = eff_rows(m, UpRead)
    (lock_other,) = rows_of(m, lambda t, p, e, r: type(e) is Lock and e.lock is other)
    end = len(m.trace) - 1
    # the failed trylock holds nothing: the only pmd_ptl hold is the owner's, open at the end
    assert [h.get("data-task") for h in drawn if h.get("data-lock") == "pmd_ptl"] == ["CPU1:owner"]
    assert holds["pmd_ptl", "exclusive"].get("data-lane") == "CPU1"
    assert holds["pmd_ptl", "exclusive"].get("data-open") == "true"
    assert span_rows(holds["pmd_ptl", "exclusive"])[1] == end
    assert span_rows(holds["mmap_lock(mm0)", "write"]) == (down, downgrade)
    assert span_rows(holds["mmap_lock(mm0)", "read"]) == (downgrade, up)
    assert "mode-read" in holds["mmap_lock(mm0)", "read"].get("class").split()
    assert span_rows(holds["never_released", "exclusive"]) == (lock_other, end)
    assert holds["never_released", "exclusive"].get("data-open") == "true"


def test_successful_trylock_holds_until_unlock():
    m = Machine()
    lk = Spinlock("L", cls="L")
    t = m.spawn("CPU0", only(Trylock(lk), Load(Table("t"), 0), Unlock(lk)), "t")
    m.run(t, 10)
    (hold,) = of_class(timeline_svg(render_html(m)), "hold")
    assert span_rows(hold) == (eff_rows(m, Trylock)[0], eff_rows(m, Unlock)[0])


def test_rcu_section_counts_nesting_and_irq_off_band(uaf):
    m, _v, _page, svg = uaf
    rcu = of_class(svg, "rcu-section")
    irq = of_class(svg, "irq-off")
    assert len(rcu) == 1 and len(irq) == 1
    first_lock = eff_rows(m, RcuReadLock, "CPU1")[0]
    last_unlock = eff_rows(m, RcuReadUnlock, "CPU1")[-1]
    assert len(eff_rows(m, RcuReadUnlock, "CPU1")) == 2  # the inner one does not end the band
    assert span_rows(rcu[0]) == (first_lock, last_unlock)
    assert rcu[0].get("data-lane") == "CPU1"
    assert span_rows(irq[0]) == (eff_rows(m, IrqDisable)[0], eff_rows(m, IrqEnable)[0])
    assert irq[0].get("data-lane") == "CPU1"


def test_section_still_open_runs_to_the_end():
    m = Machine()
    t = m.spawn("CPU0", only(RcuReadLock(), IrqDisable(), Load(Table("t"), 0)), "t")
    m.run(t, 2)  # the load is still to come
    svg = timeline_svg(render_html(m))
    (rcu,) = of_class(svg, "rcu-section")
    (irq,) = of_class(svg, "irq-off")
    end = len(m.trace) - 1
    assert span_rows(rcu) == (eff_rows(m, RcuReadLock)[0], end) and rcu.get("data-open") == "true"
    assert span_rows(irq) == (eff_rows(m, IrqDisable)[0], end) and irq.get("data-open") == "true"


def test_grace_period_ends_where_the_callback_starts(uaf):
    m, _v, _page, svg = uaf
    (call,) = eff_rows(m, CallRcu)
    (cb_start,) = rows_of(m, lambda t, p, e, r: e is None and t.lane == "RCU")
    assert m.trace[cb_start][1] == ("free_table",)
    (gp,) = of_class(svg, "grace-period")
    assert span_rows(gp) == (call, cb_start)
    assert gp.get("data-kind") == "call_rcu" and gp.get("data-callback") == "free_table"
    assert gp.get("data-lane") == "CPU2" and gp.get("data-open") is None
    assert cb_start > call + 3, "the reader's section must have held the grace period up"


def test_grace_periods_matched_in_order_open_and_synchronize_rcu():
    m = Machine()
    pages = [Table(f"t{i}") for i in range(3)]
    q = m.spawn("CPU0", only(*(CallRcu(RcuHead(p), free_table, (p,)) for p in pages[:2]),
                             CallRcu(RcuHead(pages[2]), other_callback, (pages[2],))), "q")
    reader = m.spawn("CPU1", only(RcuReadLock(), RcuReadUnlock()), "r")
    m.step(reader)
    sync = m.spawn("CPU2", only(Load(pages[0], 0), SynchronizeRcu()), "s")
    m.step(sync)  # the load: synchronize_rcu() is pending from here
    reached = len(m.trace) - 1
    m.run(q, 10)
    assert m.run(sync, 5) == 0  # waits for the reader
    m.step(reader)
    m.step(sync)
    for cb in [c for c in m.ready_callbacks() if c.fn is free_table]:
        m.run_callback(cb)  # other_callback never runs
    svg = timeline_svg(render_html(m))
    gps = of_class(svg, "grace-period")
    calls = eff_rows(m, CallRcu)
    starts = rows_of(m, lambda t, p, e, r: e is None and t.lane == "RCU")
    by_start = {int(g.get("data-start")): g for g in gps if g.get("data-kind") == "call_rcu"}
    assert sorted(by_start) == calls
    assert [int(by_start[c].get("data-end")) for c in calls[:2]] == starts
    never = by_start[calls[2]]
    assert never.get("data-open") == "true" and int(never.get("data-end")) == len(m.trace) - 1
    assert never.get("data-callback") == "other_callback"
    (s,) = [g for g in gps if g.get("data-kind") == "synchronize_rcu"]
    assert span_rows(s) == (reached, eff_rows(m, SynchronizeRcu)[0])
    assert s.get("data-lane") == "CPU2"


# ------------------------------------------------------------------------------------------------
# the violation, tooltips, escaping


def test_violating_effect_is_marked(uaf):
    m, v, page, svg = uaf
    (bad,) = rows_of(m, lambda t, p, e, r: r == "!")
    marked = of_class(svg, "violation")
    assert len(marked) == 1
    assert marked[0].tag == "rect" and "effect" in marked[0].get("class").split()
    assert int(marked[0].get("data-row")) == bad == len(m.trace) - 1
    assert marked[0].get("data-lane") == "CPU3"
    assert "violating" in title_of(marked[0])
    assert of_class(svg, "violation-line")
    parse_page(page)
    doc = _strip_ns(ET.fromstring(page[page.index("<html"):]))
    (verdict,) = of_class(doc, "verdict")
    assert f"[{v.clause}] {v.message}" in "".join(verdict.itertext())
    assert doc.find("body/h1").text == "use after free"
    (where,) = of_class(doc, "where")
    assert f"row {bad + 1} on CPU3" in "".join(where.itertext())


def test_violation_raised_before_the_effect_marks_the_pending_effect():
    m = Machine()
    lk = Spinlock("L", cls="L")
    t = m.spawn("CPU0", only(Lock(lk), Lock(lk)), "t")
    with pytest.raises(Violation) as excinfo:
        m.step(t)  # takes L, then reaches the second Lock: lock.recursive
    assert not any(r == "!" for *_, r in m.trace)
    svg = timeline_svg(render_html(m, excinfo.value))
    (marked,) = of_class(svg, "violation")
    assert marked.get("class").split() == ["pending", "violation"]
    assert marked.get("data-lane") == "CPU0" and marked.get("data-effect") == "Lock"
    assert float(marked.get("x")) > max(float(e.get("x")) for e in of_class(svg, "effect"))


def test_tooltips_give_call_path_and_result(uaf):
    m, _v, _page, svg = uaf
    effects = {int(e.get("data-row")): e for e in of_class(svg, "effect")}
    (read,) = rows_of(m, lambda t, p, e, r: type(e) is Load and t.lane == "CPU1" and e.idx == 1)
    tip = title_of(effects[read])
    assert "lockless_reader > walk_entry > read_entry" in tip
    assert "READ pte_table@7[1] -> 0" in tip
    (store,) = eff_rows(m, Store)
    tip = title_of(effects[store])
    assert "pte_walker" in tip and "WRITE pte_table@7[0] = 1" in tip and "->" not in tip
    starts = [s for s in of_class(svg, "start") if s.get("data-lane") == "RCU"]
    assert "free_table" in title_of(starts[0])


def test_text_with_markup_characters_is_escaped():
    m = Machine()
    nasty = "<b>&amp;</b> \"q\" 'a' & >"
    lk = Spinlock(f"ptl{nasty}", cls="L")
    page_ = Table(f"tbl{nasty}")
    t = m.spawn("CPU0", only(Lock(lk), Load(page_, 0), Unlock(lk)), f"op{nasty}")
    m.run(t, 10)
    page_.freed = True
    late = m.spawn("CPU1", only(Load(page_, 0)), "late")
    with pytest.raises(Violation) as excinfo:
        m.step(late)
    page = render_html(m, excinfo.value, title=f"title{nasty}")
    assert nasty not in page and "<b>" not in page
    c = parse_page(page)
    text = "".join(c.text)
    assert f"title{nasty}" in text and f"READ tbl{nasty}[0]" in text
    svg = timeline_svg(page)
    (hold,) = of_class(svg, "hold")
    assert hold.get("data-lock") == f"ptl{nasty}"
    starts = {s.get("data-label") for s in of_class(svg, "start")}
    assert f"op{nasty}" in starts
    assert not any(tag == "b" for tag, _ in c.tags)


def test_control_characters_do_not_break_the_markup():
    m = Machine()
    t = m.spawn("CPU0", only(Load(Table("bad\x00\x1bname"), 0)), "op\x07")
    m.run(t, 5)
    page = render_html(m, title="t\x0c")
    parse_page(page)
    assert "\x00" not in page and "\x1b" not in page


def test_write_html_writes_utf8(tmp_path, uaf):
    m, v, _page, _svg = uaf
    path = tmp_path / "t.html"
    write_html(path, m, v, title="größe")
    page = path.read_bytes().decode("utf-8")
    assert "größe" in page and f"[{v.clause}]" in page
    parse_page(page)


# ------------------------------------------------------------------------------------------------
# size and speed


def long_named_walker_function_of_a_deep_kernel_call_chain(page, ptl, i):
    yield RcuReadLock()
    yield Load(page, i % 4)
    yield Lock(ptl)
    yield Store(page, i % 4, i)
    yield Unlock(ptl)
    yield RcuReadUnlock()


def syscall_entry(page, ptls, n):
    for i in range(n):
        yield from long_named_walker_function_of_a_deep_kernel_call_chain(page, ptls[i % 3], i)


def big_machine(per_cpu: int) -> Machine:
    m = Machine(step_bound=100_000)
    page = Table("pte_table@1.0")
    ptls = [Spinlock(f"ptl{i}", cls=f"c{i}") for i in range(3)]
    for cpu in range(4):
        m.spawn(f"CPU{cpu}", syscall_entry(page, ptls, per_cpu), f"op{cpu}")
    m.finish()
    return m


#: what a page may cost in Python calls (count_calls), a deterministic measure of "fast" in place
#: of a wall-clock time: a fixed part (about 17,800 calls for the 54 rows of the zoo failure
#: below today) and a part per row of the trace (about 89 today)
CALLS_PER_PAGE = 25_000
CALLS_PER_ROW = 150


def calls_budget(rows: int) -> int:
    return CALLS_PER_PAGE + CALLS_PER_ROW * rows


def test_a_few_thousand_rows_fast_and_small():
    m = big_machine(170)  # about 4,000 rows
    assert 4000 <= len(m.trace) < 4200
    page, calls = count_calls(lambda: render_html(m, title="big"))
    assert calls < calls_budget(len(m.trace)), f"{calls} calls for {len(m.trace)} rows"
    # linear in the rows: half the trace costs about half the calls (no quadratic term)
    half = big_machine(85)
    _, half_calls = count_calls(lambda: render_html(half, title="big"))
    per_row, half_per_row = calls / len(m.trace), half_calls / len(half.trace)
    assert per_row < 1.1 * half_per_row, f"{per_row:.1f} vs {half_per_row:.1f} calls per row"
    assert len(page.encode()) < 2_000_000
    svg = timeline_svg(page)
    assert len(of_class(svg, "effect")) + len(of_class(svg, "start")) == len(m.trace)
    assert len(of_class(svg, "hold")) == len(eff_rows(m, Lock))


def drawn_rows(page: str) -> list[int]:
    svg = timeline_svg(page)
    marks = [*of_class(svg, "effect"), *of_class(svg, "start")]
    return sorted(int(e.get("data-row")) for e in marks)


def test_longer_traces_draw_their_last_rows():
    m = big_machine(500)  # about 12,000 rows
    page = render_html(m)
    assert len(page.encode()) < 2_000_000
    rows = drawn_rows(page)
    assert 3000 < len(rows) <= timeline.MAX_ROWS
    assert rows == list(range(rows[0], len(m.trace)))
    assert f"rows 1-{rows[0]} are left out" in page
    # the spans drawn are those that reach the rows drawn; those that began earlier keep their
    # true start row
    sections = [span_rows(s) for s in of_class(timeline_svg(page), "rcu-section")]
    assert sections and all(end >= rows[0] for _, end in sections)
    assert any(start < rows[0] for start, _ in sections)


def test_row_cap(monkeypatch):
    m = big_machine(500)
    monkeypatch.setattr(timeline, "MAX_BYTES", 10**9)
    monkeypatch.setattr(timeline, "MAX_ROWS", 2000)
    rows = drawn_rows(render_html(m))
    assert rows == list(range(len(m.trace) - 2000, len(m.trace)))


def test_size_budget_cuts_the_rows_drawn(monkeypatch):
    m = big_machine(170)
    monkeypatch.setattr(timeline, "MAX_BYTES", 300_000)
    page = render_html(m)
    assert len(page.encode()) < 400_000
    rows = drawn_rows(page)
    assert 300 < len(rows) < 1500
    assert rows == list(range(rows[0], len(m.trace)))


# ------------------------------------------------------------------------------------------------
# a real conformance failure


def test_real_failure_of_a_zoo_mutant(tmp_path):
    """A0 frees the retracted table at once: a read fault paused inside __pte_offset_map()'s
    read-side section, khugepaged retracts and frees the table under it."""
    m = Machine()
    k = build_world(SHARED, resolve("zoo.retract_pte_free_immediate"), machine=m)
    fault = start_op(k, "CPU0", Op("read", 0, 5))
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    for _ in range(500):
        if type(fault.pending) is Load and isinstance(fault.pending.page, PteTable):
            break
        m.step(fault)
    assert fault.rcu == 1
    with pytest.raises(Violation) as excinfo:
        m.run(collapse, m.step_bound)
        for cb in m.ready_callbacks():
            m.run_callback(cb)
        m.finish()
    v = excinfo.value
    assert v.clause in resolve("zoo.retract_pte_free_immediate").expected
    _, calls = count_calls(
        lambda: write_html(tmp_path / "a0.html", m, v, title="zoo.retract_pte_free_immediate"))
    assert calls < calls_budget(len(m.trace)), f"{calls} calls for {len(m.trace)} rows"
    page = (tmp_path / "a0.html").read_text(encoding="utf-8")
    parse_page(page)
    assert f"[{v.clause}]" in page
    svg = timeline_svg(page)
    assert [g.get("data-lane") for g in of_class(svg, "lane")] == ["CPU0", "CPU1"]
    (bad,) = of_class(svg, "violation")
    assert int(bad.get("data-row")) == len(m.trace) - 1 and bad.get("data-lane") == "CPU1"
    assert "pte_free" in title_of(bad)
    # the fault is still inside its read-side section, and the collapse holds locks
    (rcu,) = [s for s in of_class(svg, "rcu-section") if s.get("data-lane") == "CPU0"]
    assert rcu.get("data-open") == "true"
    assert any(h.get("data-lane") == "CPU1" for h in of_class(svg, "hold"))
    assert any(h.get("data-lock", "").startswith("ptl(") for h in of_class(svg, "hold"))
