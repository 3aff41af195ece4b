"""The README's "Model limits" table, kept true.

Each row of the table names, in its last cell, a ``check_*`` function of this file; each check
shows, by running the model where it can, that the limit the row states still holds, and fails
the day the model stops having it (its docstring says when), so that the row is changed or
removed with the model.  A row without a check, or a check without a row, fails
:func:`test_every_row_has_a_check_and_every_check_a_row`.
"""

from __future__ import annotations

import ast
import pathlib
import re

import attrs
import pytest

from pgconform.harness.scenario import FILE_PAGES, Op, VmaSpec, WorldSpec, build_world
from pgconform.harness.sweep import RECLAIM_FREER, WORLDS, Pair, _setup, explore_pair, pairs, sweep
from pgconform.kernel import mmap, mprotect, userfaultfd
from pgconform.kernel.config import PLAIN_READS_ENV, Geometry
from pgconform.kernel.mmap import vm_munmap
from pgconform.kernel.mprotect import do_mprotect_pkey
from pgconform.kernel.objects import VM_UFFD_MISSING, VM_UFFD_WP, Pte, Vma
from pgconform.kernel.pgtable import set_pmd
from pgconform.kernel.secondary_mmu import SecondaryMmu
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference import userfaultfd as reference_userfaultfd
from pgconform.sim.effects import DownRead, Load
from pgconform.sim.sync import RwSemaphore, SleepLock, Spinlock
from pgconform.versions.v7_0 import IMPLEMENTATION as V7_0
from tests.selftest.helpers import finish, pte_at, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = ROOT / "pgconform"
COLUMNS = ["id", "the model", "the kernel", "consequence: bugs it cannot see", "kept true by"]

#: -EINVAL as munmap and mprotect return it, and as UFFDIO_REGISTER does (a name)
EINVAL = mmap.EINVAL
UFFD_EINVAL = userfaultfd.EINVAL


# ------------------------------------------------------------------------------------------------
# the table


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table row (a ``\\|`` inside a cell is not a separator)."""
    body = line.strip()
    assert body.startswith("|") and body.endswith("|"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", body[1:-1])]


def limits_table(text: str | None = None) -> list[dict[str, str]]:
    """The rows of the table under ``## Model limits`` in the README, as column -> cell."""
    text = README.read_text() if text is None else text
    m = re.search(r"^## Model limits\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "README.md has no '## Model limits' section"
    lines = [ln for ln in m.group(1).splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, "the Model limits section has no table"
    assert _cells(lines[0]) == COLUMNS, _cells(lines[0])
    assert all(set(c) <= set("-: ") for c in _cells(lines[1])), lines[1]
    rows = []
    for ln in lines[2:]:
        cells = _cells(ln)
        assert len(cells) == len(COLUMNS), f"a row of {len(cells)} cells: {ln[:80]}"
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def _row_id(row) -> str:
    return row["id"].strip("`")


def _check_name(row) -> str | None:
    names = re.findall(r"\bcheck_\w+", row["kept true by"])
    return names[0] if len(names) == 1 else None


ROWS = limits_table()


def _checks() -> dict[str, object]:
    return {name: fn for name, fn in globals().items()
            if name.startswith("check_") and callable(fn)}


def drift(rows: list[dict[str, str]], checks: dict[str, object]) -> list[str]:
    """What keeps ``rows`` (of the table) and ``checks`` (check name -> function) apart: a row
    naming no check or several, a duplicate id, two rows sharing a check, a row naming a check
    that does not exist, a check no row names, a check that does not say when it fails."""
    problems = []
    ids = [_row_id(r) for r in rows]
    problems += [f"duplicate id {i}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    named: dict[str, str] = {}
    for row in rows:
        name = _check_name(row)
        if name is None:
            problems.append(f"row {_row_id(row)}: 'kept true by' names no one check_ function")
        elif name in named:
            problems.append(f"rows {named[name]} and {_row_id(row)} share {name}")
        else:
            named[name] = _row_id(row)
    problems += [f"row {named[n]} names {n}, which does not exist"
                 for n in sorted(set(named) - set(checks))]
    problems += [f"{n} is named by no row" for n in sorted(set(checks) - set(named))]
    problems += [f"{n} does not say when it fails" for n, fn in sorted(checks.items())
                 if not (fn.__doc__ and "fails when" in fn.__doc__.lower())]
    return problems


def test_every_row_has_a_check_and_every_check_a_row():
    """Fails when a row names no check (or several), names one this file lacks, or when a check
    here is named by no row: the table and the checks cannot drift apart."""
    assert drift(ROWS, _checks()) == []


def test_drift_is_found():
    """A row dropped, a row naming a missing check, a check without a docstring: each is found."""
    checks = _checks()
    assert drift(ROWS[1:], checks) == [f"{_check_name(ROWS[0])} is named by no row"]
    extra = dict(ROWS[0], id="`new`", **{"kept true by": "`check_new`"})
    assert drift([*ROWS, extra], checks) == ["row new names check_new, which does not exist"]
    assert drift([*ROWS, dict(extra, **{"kept true by": "a test"})], checks) == \
        ["row new: 'kept true by' names no one check_ function"]
    assert drift(ROWS, {**checks, "check_new": lambda: None}) == \
        ["check_new is named by no row", "check_new does not say when it fails"]


def test_the_parser_rejects_a_drifted_table():
    """The parser itself: a missing section, a wrong header and a short row are refused."""
    with pytest.raises(AssertionError, match="no '## Model limits'"):
        limits_table("# x\n## Other\n")
    with pytest.raises(AssertionError):
        limits_table("## Model limits\n| id | the model |\n|---|---|\n| a | b |\n## Next\n")
    head = "| " + " | ".join(COLUMNS) + " |\n|---|---|---|---|---|\n"
    with pytest.raises(AssertionError, match="a row of 4 cells"):
        limits_table(f"## Model limits\n{head}| a | b | c | d |\n## Next\n")
    assert limits_table(f"## Model limits\n{head}| `a` | b \\| c | d | e | `check_a` |\n"
                        "## Next\n")[0]["the model"] == "b \\| c"


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_limit_holds(row):
    name = _check_name(row)
    if name not in _checks():
        pytest.fail(f"row {_row_id(row)} names {name}, which does not exist")
    _checks()[name]()


# ------------------------------------------------------------------------------------------------
# helpers


def _run_gen(k, gen, lane="CPU0", name="op"):
    t = k.m.spawn(lane, gen, name)
    k.m.run(t, k.m.step_bound)
    assert t.done, f"{name} blocked in {t.pending}"
    return t.result


def _uses(name: str) -> list[tuple[str, str]]:
    """(file, innermost enclosing function) of every use of ``name`` (a call or a reference,
    bare or as an attribute) inside a function of pgconform/, by the AST."""
    sites = set()

    class Visitor(ast.NodeVisitor):
        def __init__(self, where):
            self.where, self.stack = where, []

        def visit_FunctionDef(self, node):
            self.stack.append(node.name)
            self.generic_visit(node)
            self.stack.pop()

        visit_AsyncFunctionDef = visit_FunctionDef

        def _use(self, node, used):
            if used == name and self.stack:
                sites.add((self.where, self.stack[-1]))
            self.generic_visit(node)

        def visit_Name(self, node):
            self._use(node, node.id)

        def visit_Attribute(self, node):
            self._use(node, node.attr)

    for path in sorted(PACKAGE.rglob("*.py")):
        Visitor(str(path.relative_to(ROOT))).visit(ast.parse(path.read_text(), str(path)))
    return sorted(sites)


#: the anonymous VMA of the sweep's anon world (7.0), not registered with userfaultfd, pages 5
#: and 9 written
ANON_UNREGISTERED = WorldSpec(vmas=(VmaSpec(0, 4, 8, 4, shared=False, anon=True),),
                              prefault=((0, 5, True), (0, 9, True)))


#: a shared VMA over [4, 8) of a file with nothing in its page cache, registered with
#: userfaultfd (missing)
HOLES_MISSING = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0, uffd_missing=True),),
                          cached=(False,) * FILE_PAGES)
#: a shared VMA over [4, 8), page 5 faulted in: room to move it elsewhere
SMALL_SHARED = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0),), prefault=((0, 5, True),))


# ------------------------------------------------------------------------------------------------
# the checks, one per row


def check_plain_reads():
    """The one modelled plain-read pair is change_pmd_range()'s, and it is modelled both ways:
    split, khugepaged's retract clearing the PMD between the reads is ``pt.plain-read-race``.

    Fails when pmd_none_plain_read() or the race's event is called from anywhere else (another
    plain-read pair is modelled: the row must name it), when change_pmd_range() stops using it,
    or when the split form no longer reports the race (with the reference's declaration
    removed)."""
    mprotect_py = "pgconform/kernel/mprotect.py"
    # change_pmd_range() is a function of the implementation table, its reference in reference/
    assert _uses("pmd_none_plain_read") == [("pgconform/reference/mprotect.py", "change_pmd_range")]
    assert _uses("_plain_reread") == [(mprotect_py, "pmd_none_plain_read")]
    # the race's event is announced there only, and its oracle subscribed to it only
    assert _uses("plain_read_race") == [(mprotect_py, "_plain_reread")]
    assert _uses("check_plain_read_race") == [("pgconform/oracle/__init__.py", "install")]
    readers = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                     if re.search(r"\.plain_reads\b", p.read_text()))
    assert readers == ["pgconform/kernel/mprotect.py", "pgconform/kernel/world.py"], readers
    # the split form reports the race (the pair of tests/selftest/test_plain_reads.py, 7.0 with
    # PT reclaim as the freer: bound 1 is enough there)
    undeclared = attrs.evolve(V7_0, name="v7.0-undeclared", known_violations={},
                              known_consequences={})
    pair = Pair("shared", RECLAIM_FREER, Op("uffd_register", 0, 5, 6))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PLAIN_READS_ENV, "split")
        v = explore_pair(undeclared, "x86_64", pair, bound=1).violation
    assert v is not None and v.clause == "pt.plain-read-race", v
    assert "change_pmd_range()" in str(v)
    assert mprotect.PLAIN_READ_RACE == "pt.plain-read-race@change_pmd_range"


def _pmdp_collapse_flush_without_flush(k, vma, addr, pmdp):
    """pmdp_collapse_flush() that clears the PMD and never flushes the TLB."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    yield from set_pmd(k, pmdp, None)
    return pmdval


NO_FLUSH = attrs.evolve(REFERENCE, name="reference-pmdp_collapse_flush-no-flush",
                        overrides={"pmdp_collapse_flush": _pmdp_collapse_flush_without_flush})


def check_no_cpu_tlb():
    """No CPU caches a translation: the reference with a pmdp_collapse_flush() that skips the TLB
    flush passes the sweep's shared world on x86_64 (where the flush is an IPI) without
    preemption.  The secondary MMU does cache translations and table pointers.

    Fails when the model gains per-CPU TLBs (a stale translation used after the skipped flush is
    then caught), when the skipped flush is caught by anything else, or when the secondary MMU
    loses its TLB or paging-structure cache."""
    r = sweep(NO_FLUSH, "x86_64", worlds=("shared",), bound=0)
    assert r.violation is None, r.violation
    assert r.complete and r.pairs > 0 and r.schedules > 0
    fields = attrs.fields_dict(SecondaryMmu)
    assert "tlb" in fields and "pwc" in fields


def check_geometry():
    """The scaled geometry: 4 PTEs per table (HPAGE_PMD_NR = PTRS_PER_PTE = 4), 4 PMD slots in
    one PMD table per mm that outlives munmap and exit, a file of 8 pages, in a built world.

    Fails when any of these constants changes, or when an mm's PMD table is replaced or freed by
    munmap or exit."""
    geo = Geometry()
    assert (geo.ptrs_per_pte, geo.hpage_pmd_nr, geo.ptrs_per_pmd, geo.task_size) == (4, 4, 4, 16)
    assert FILE_PAGES == 8
    k = build_world(WORLDS["shared"], REFERENCE)
    assert k.geo == geo and len(k.files) == 1 and k.files[0].size == FILE_PAGES
    mm = k.mms[0]
    pmd_table = mm.pmd_table
    assert len(pmd_table.entries) == 4
    assert run(k, Op("munmap", 0, 5)) == 0
    assert run(k, Op("exit", 0)) == 0
    finish(k)
    assert mm.pmd_table is pmd_table and len(pmd_table.entries) == 4
    assert all(e is None for e in pmd_table.entries)


def check_anon_uffd_wp():
    """UFFDIO_REGISTER in WP mode (and MISSING|WP) of an anonymous VMA is -EINVAL; MISSING alone
    is accepted, and WP of a shmem VMA is too.

    Fails when the model accepts uffd-wp registration of anonymous memory."""
    for mode in ({VM_UFFD_WP}, {VM_UFFD_MISSING, VM_UFFD_WP}):
        k = build_world(ANON_UNREGISTERED, V7_0)
        assert _run_gen(k, userfaultfd.userfaultfd_register(k, k.mms[0], 5, frozenset(mode)),
                        name="register") == UFFD_EINVAL
        assert not (k.mms[0].vmas[0].flags & {VM_UFFD_WP, VM_UFFD_MISSING})
        finish(k)
    k = build_world(ANON_UNREGISTERED, V7_0)
    assert _run_gen(k, userfaultfd.userfaultfd_register(k, k.mms[0], 5,
                                                        frozenset({VM_UFFD_MISSING})),
                    name="register") == 0
    finish(k)
    k = build_world(WORLDS["shared"], V7_0)
    assert _run_gen(k, userfaultfd.userfaultfd_register(k, k.mms[0], 5, frozenset({VM_UFFD_WP})),
                    name="register") == 0
    finish(k)


def check_anon_zero_page():
    """Two read faults on an anonymous VMA map two new zeroed anonymous pages, each with its own
    folio, counted in rss.

    Fails when a read fault maps a shared page (the zero page) or nothing."""
    k = build_world(ANON_UNREGISTERED, V7_0)
    mm = k.mms[0]
    before = mm.rss["MM_ANONPAGES"]
    assert run(k, Op("read", 0, 6)) == "ok" and run(k, Op("read", 0, 7)) == "ok"
    a, b = pte_at(k, 6), pte_at(k, 7)
    assert type(a) is Pte and type(b) is Pte and a.folio is not b.folio
    for pte in (a, b):
        assert pte.folio.anon and pte.folio.data == [0] and pte.folio.refcount == 1
    assert mm.rss["MM_ANONPAGES"] == before + 2
    finish(k)


def check_uffd_move_one_page():
    """The operation UFFDIO_MOVE calls move_pages_pte() once, and it moves one page.

    Fails when the operation moves more than one page, or a move_pages_pte() call returns more
    than one page moved (a batch is modelled)."""
    calls = []

    def counting_move_pages_pte(*args):
        ret = yield from reference_userfaultfd.move_pages_pte(*args)
        calls.append(ret)
        return ret

    impl = attrs.evolve(V7_0, name="v7.0-counting-moves",
                        overrides={**V7_0.overrides, "move_pages_pte": counting_move_pages_pte})
    k = build_world(WORLDS["anon"], impl)
    assert run(k, Op("uffd_move", 0, 9, 6)) == 1
    assert calls == [1]
    assert pte_at(k, 9) is None and type(pte_at(k, 6)) is Pte
    finish(k)


def check_per_vma_locks():
    """In the 7.0 environment a fault, MADV_DONTNEED and UFFDIO_MOVE take mmap_lock for read,
    and a VMA has no lock of its own.

    Fails when one of them stops taking mmap_lock for read (a per-VMA lock is modelled), or when
    a Vma gets a field holding a lock."""
    assert not any("lock" in name for name in attrs.fields_dict(Vma)), attrs.fields_dict(Vma)
    for world, op in ((ANON_UNREGISTERED, Op("read", 0, 6)),
                      (ANON_UNREGISTERED, Op("dontneed", 0, 4, 4)),
                      (WORLDS["anon"], Op("uffd_move", 0, 9, 6))):
        k = build_world(world, V7_0)
        mm = k.mms[0]
        first = len(k.m.trace)
        run(k, op)
        effects = [entry[2] for entry in k.m.trace[first:]]
        assert any(type(e) is DownRead and e.sem is mm.mmap_lock for e in effects), op
        for vma in mm.vmas:
            assert not any(isinstance(v, (RwSemaphore, Spinlock, SleepLock))
                           for v in attrs.asdict(vma, recurse=False).values())
        finish(k)


def check_two_op_sweep():
    """A sweep pair is two operations, and a swept run starts two tasks.  The conformance
    machines run up to three CPUs.

    Fails when the sweep races a third operation, or when the machines run fewer than three
    CPUs (then no part of the suite races three)."""
    from pgconform.harness.machines import NCPUS

    assert [f.name for f in attrs.fields(Pair)] == ["world", "first", "second"]
    some = next(iter(pairs("shared")))
    _, tasks, finish = _setup(REFERENCE, "x86_64", some)
    assert len(tasks) == 2
    finish()
    assert NCPUS >= 3


def check_whole_vma():
    """munmap and mprotect of part of a VMA are -EINVAL and leave it whole; mremap moves the
    whole VMA; UFFDIO_REGISTER and UNREGISTER take an address, not a range.

    Fails when a partial munmap or mprotect succeeds (VMA splits are modelled), when mremap
    moves only part of a VMA, or when (un)registration takes a range."""
    import inspect

    for fn in (userfaultfd.userfaultfd_register, userfaultfd.userfaultfd_unregister):
        assert "end" not in inspect.signature(fn).parameters, fn  # the VMA at an address
    k = build_world(SMALL_SHARED, REFERENCE)
    mm = k.mms[0]
    vma = mm.vmas[0]
    span = (vma.start, vma.end)
    assert span[1] - span[0] > 1
    assert _run_gen(k, vm_munmap(k, mm, span[0], span[0] + 1), name="munmap") == EINVAL
    assert _run_gen(k, do_mprotect_pkey(k, mm, span[0], span[0] + 1, False),
                    name="mprotect") == EINVAL
    assert mm.vmas == [vma] and (vma.start, vma.end) == span
    new = run(k, Op("mremap", 0, span[0] + 1, 0))
    assert isinstance(new, int) and new >= 0
    assert len(mm.vmas) == 1 and mm.vmas[0].end - mm.vmas[0].start == span[1] - span[0]
    finish(k)


def check_no_swap_migration():
    """The entries the model has: a PTE value is None, a Pte or one of three PteMarkers; a PMD
    value is None, a TablePmd or a HugePmd (TornPmd is what a torn PAE read returns, never
    stored); what an implementation may return for a PMD is only those.  Every table of every
    sweep world (6.6 and 7.0) holds only them after a MADV_DONTNEED and a read fault.

    Fails when the model gains another entry kind (a swap, migration or device entry, a bad PMD)
    in kernel/objects.py, in what the implementation's PMD readers may return, or in a world."""
    from pgconform.implementation import return_checks
    from pgconform.kernel import objects
    from pgconform.kernel.objects import HugePmd, PteMarker, TablePmd, TornPmd

    markers = {v.kind for v in vars(objects).values() if type(v) is PteMarker}
    assert markers == {"UFFD_WP", "POISONED", "GUARD"}, markers
    entry_kinds = {name for name, v in vars(objects).items()
                   if isinstance(v, type) and re.search(r"swap|swp|migrat|device|bad", name, re.I)}
    assert not entry_kinds, entry_kinds
    accepts = return_checks()["pmdp_get_lockless"][1]
    assert not accepts(("swap", 1)) and not accepts(object())
    seen_pte, seen_pmd = set(), set()
    for impl in (REFERENCE, V7_0):
        for spec in WORLDS.values():
            k = build_world(spec, impl)
            run(k, Op("dontneed", 0, 4, 1))
            run(k, Op("read", 0, 6))
            for mm in k.mms:
                for pmdv in mm.pmd_table.entries:
                    seen_pmd.add(type(pmdv))
                    if type(pmdv) is TablePmd:
                        seen_pte.update(type(e) for e in k.pmd_table(pmdv).entries)
            finish(k)
    assert seen_pmd <= {type(None), TablePmd, HugePmd} and TablePmd in seen_pmd, seen_pmd
    assert seen_pte <= {type(None), Pte, PteMarker} and Pte in seen_pte, seen_pte
    assert TornPmd not in seen_pmd


def check_shmem_only():
    """One file per world, made by build_world() as "shmem", and every file VMA of every sweep
    world maps it; a File has no filesystem kind to vary.

    Fails when a world gets another file, another function makes files, or File gains fields
    (a filesystem kind, writeback state) that other file kinds would need."""
    assert _uses("new_file") == [("pgconform/harness/scenario.py", "build_world")]
    assert [f.name for f in attrs.fields(type(build_world(WORLDS["shared"], REFERENCE)
                                              .files[0]))] == \
        ["name", "size", "i_mmap_rwsem", "pages", "i_mmap", "content", "i_pages_lock"]
    for name, spec in WORLDS.items():
        k = build_world(spec, V7_0)
        assert [f.name for f in k.files] == ["shmem"], name
        assert all(v.file is None or v.file is k.files[0] for mm in k.mms for v in mm.vmas)
        finish(k)


def check_uffd_monitor_idle():
    """A write into a hole of a VMA registered for missing faults ends with ``UFFD_MISSING``, and
    nothing is mapped there: nobody resolves the fault.

    Fails when the model resolves the fault (the access then completes) or retries it."""
    k = build_world(HOLES_MISSING, REFERENCE)
    addr = 5
    assert pte_at(k, addr) is None and not k.files[0].pages
    assert run(k, Op("write", 0, addr)) == "UFFD_MISSING"
    assert pte_at(k, addr) is None
    finish(k)


# ------------------------------------------------------------------------------------------------
# the checks can fail


def _pmdp_collapse_flush_keeps_pmd(k, vma, addr, pmdp):
    """pmdp_collapse_flush() that flushes but leaves the PMD set."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    return pmdval


def test_the_no_cpu_tlb_sweep_judges_pmdp_collapse_flush():
    """The short sweep of check_no_cpu_tlb does exercise pmdp_collapse_flush(): one that leaves
    the PMD pointing at the table it returns fails it.  Only the flush goes unjudged."""
    bad = attrs.evolve(REFERENCE, name="reference-pmdp_collapse_flush-keeps-pmd",
                       overrides={"pmdp_collapse_flush": _pmdp_collapse_flush_keeps_pmd})
    v = sweep(bad, "x86_64", worlds=("shared",), bound=0).violation
    assert v is not None and v.clause == "pt.free-linked", v


def test_check_uffd_move_one_page_fails_on_a_longer_move(monkeypatch):
    """An operation moving two pages makes check_uffd_move_one_page fail."""
    import pgconform.harness.operations as operations

    one_page = operations.move_pages
    monkeypatch.setattr(operations, "move_pages",
                        lambda k, mm, dst, src, n, mode=0: one_page(k, mm, dst, src, 2, mode))
    with pytest.raises(AssertionError):
        check_uffd_move_one_page()


def test_check_anon_uffd_wp_fails_when_wp_is_accepted(monkeypatch):
    """A userfaultfd_register() that accepts WP on anonymous VMAs makes check_anon_uffd_wp
    fail."""
    def register_anything(k, mm, addr, mode):
        vma = mm.find_vma(addr)
        vma.flags = (vma.flags - userfaultfd.VM_UFFD_FLAGS) | mode
        return 0
        yield

    monkeypatch.setattr(userfaultfd, "userfaultfd_register", register_anything)
    with pytest.raises(AssertionError):
        check_anon_uffd_wp()

