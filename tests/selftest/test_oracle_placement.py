"""No implementation can switch an oracle off: every check runs in pgconform/oracle/ (subscribed to
the events the kernel model announces, kernel/hooks.py) or in the engine, never inside a function
an implementation may override.

* statically: no code of the shipped implementations (the reference, the kernel versions, the
  alternative designs, the zoo) calls the verdict API or imports the oracles, and no series
  function hosted in a model module reaches a verdict call of its own module;
* dynamically: every zoo mutant, with every other series function overridden by a pass-through of
  the reference's (the implementation's own code, as the harness sees it), and with any verdict
  call made from implementation code ignored (an implementation is free to leave such a call
  out), still gets its verdict on its stored schedule (``pgconform/data/history_schedules.json``),
  and the reference made of pass-throughs passes the same schedules;
* pte_lockptr(), the function whose reference body used to hold pt.lock-mismatch: overrides that
  compute a wrong lock are caught by the judgement around it;
* the model imports no oracle, every clause is raised in oracle/ or sim/, and every event the
  model announces has an oracle.
"""

from __future__ import annotations

import ast
import inspect
import json
import pathlib
import sys

import attrs
import pytest

import pgconform
from pgconform.harness import replay
from pgconform.harness.machines import make_machine
from pgconform.harness.scenario import build_world, start_op
from pgconform.implementation import Implementation
from pgconform.kernel.arch import ARCHES
from pgconform.reference import ALL_REFERENCE_FUNCTIONS, reference_functions
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.registry import resolve
from pgconform.sim.errors import Violation
from pgconform.sim.machine import Machine
from tests.selftest.helpers import SHARED
from tests.selftest.test_arch_actors import fault_vs_retract_between_map_and_lockptr
from tests.selftest.test_oracles import KHUGEPAGED, collapse_alone

ROOT = pathlib.Path(pgconform.__file__).parent
CORPUS = json.loads((ROOT / "data" / "history_schedules.json").read_text())

#: the packages holding implementations of the series (code an implementation may replace)
IMPLEMENTATION_PACKAGES = ("reference", "versions", "alt", "zoo")
#: calls that give or compute a verdict: the machine's, and the oracles' own
VERDICT_ATTRS = {"violation", "use_after_free", "check"}
VERDICT_NAMES = {"Violation", "ImplementationErrored"}
#: attributes only the oracles write (the table lifecycle marker and its companions, the
#: content shadow, the machine's tolerance state)
ORACLE_STATE = {"state", "linked_at", "unlinked_from", "detach_readers", "dormant_uffd_wp",
                "released", "freed",
                "oracle", "oracles", "anon_shadow", "shadow", "tolerated", "tolerating",
                "tolerated_hits"}


def _verdict_uses(tree, oracle_names=frozenset()):
    """(line, what) of each verdict call, oracle import or use, or oracle-state write."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pgconform.oracle"):
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Import) and any(a.name.startswith("pgconform.oracle")
                                                  for a in node.names):
            found.append((node.lineno, "import pgconform.oracle"))
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in VERDICT_ATTRS:
                found.append((node.lineno, f".{f.attr}()"))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute) and \
                    f.value.attr == "hooks":
                found.append((node.lineno, f"hooks.{f.attr}()"))  # an oracle event announced
            elif isinstance(f, ast.Name) and (f.id in VERDICT_NAMES or f.id in oracle_names):
                found.append((node.lineno, f"{f.id}()"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                while isinstance(target, ast.Subscript):
                    target = target.value
                if isinstance(target, ast.Attribute) and target.attr in ORACLE_STATE:
                    found.append((node.lineno, f"writes .{target.attr}"))
    return found


def test_no_implementation_code_judges():
    """The reference (and every implementation shipped with pgconform) is code an implementation
    may replace: a check in it is switched off by overriding the function."""
    offences = []
    files = [p for pkg in IMPLEMENTATION_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert any(p.name == "mm.py" for p in files) and len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        offences += [f"{path.relative_to(ROOT.parent)}:{line}: {what}"
                     for line, what in _verdict_uses(tree)]
    assert not offences, "oracle checks inside overridable code:\n" + "\n".join(offences)


def test_the_static_scan_sees_a_check():
    """The scan above is not blind: the old pte_lockptr() body, with its check, is an offence."""
    old = ("def pte_lockptr(k, mm, pmdval):\n"
           "    if type(pmdval) is not TablePmd:\n"
           "        k.m.violation('pt.lock-mismatch', 'garbage', k.m.current, None)\n"
           "    return k.pmd_table(pmdval).ptl\n"
           "    yield\n")
    assert [w for _, w in _verdict_uses(ast.parse(old))] == [".violation()"]
    assert _verdict_uses(ast.parse("from pgconform.oracle.uffd import forget_wp\n"))
    assert _verdict_uses(ast.parse("def f(t):\n    t.state = 'linked'\n"))
    assert _verdict_uses(ast.parse("def f(k, mm, a):\n    k.hooks.marker_replaced(mm, a)\n"))


def _module_functions_reached(fn):
    """``fn`` and the functions of its own module that it names, transitively."""
    mod = sys.modules[fn.__module__]
    seen, todo = [], [fn]
    while todo:
        g = todo.pop()
        if g in seen or getattr(g, "__module__", None) != mod.__name__:
            continue
        seen.append(g)
        for node in ast.walk(ast.parse(inspect.cleandoc("\n" + inspect.getsource(g)))):
            if isinstance(node, ast.Name) and inspect.isfunction(getattr(mod, node.id, None)):
                todo.append(getattr(mod, node.id))
    return mod, seen


#: series functions whose reference calls a model helper that holds a check, with why that check
#: cannot be switched off all the same, or what an override that leaves the helper out loses
HOSTED_EXCEPTIONS = {
    # 6.6.0's missing recheck links pmd_pgtable() of a none PMD: the reference's move keeps the
    # CVE's own wording (pt.populate-dead); an override that leaves that helper out computes
    # pmd_pgtable() of the none PMD itself, which the model judges (Kernel.pmd_table:
    # pt.not-a-table)
    ("move_normal_pmd", "_pmd_populate_moved"),
    # UFFDIO_MOVE moves the private content (the data oracle's shadow) with the page's rmap in
    # the step of the move: an override that does not gets a false data.mismatch, not a missed
    # violation (a PTE-store hook would be the place; not done, the PTE store is the hot path)
    ("move_pages_pte", "_move_rmap"),
    # mm_find_pmd() (kernel/pgtable.py) judges the walk (pt.walk-without-vma) in the step of the
    # walk; an override of find_pmd_or_thp_or_none() that computes the pmd_t * itself
    # (mm.pmd_offset()) skips that judgement: for the oracles-as-hooks work to move to a hook
    ("find_pmd_or_thp_or_none", "_find_pmd"),
    # GUP-fast confirms a pin with gup_pte_unchanged() (kernel/gup.py), judged in that step; an
    # override that does not call it has the pages it returns judged when it returns, by its
    # caller gup_pmd_range() (tests/selftest/test_gup_mmu.py: a gup_pte_range() without rechecks
    # is caught that way)
    ("gup_pte_range", "_pte_recheck"),
    # the second plain read of change_pmd_range()'s pair, in the split form: an override that
    # reads the PMD again with a Load of its own is not judged pt.plain-read-race there; what the
    # race costs (markers missing at the end) is still judged by the uffd oracle at the end
    ("change_pmd_range", "_plain_reread"),
    # mfill_atomic_pte() is the only way to fill a page: the uffd oracle's bookkeeping of the
    # markers it puts or replaces (its promises) is in the environment functions it runs
    ("mfill_atomic", "mfill_atomic_pte_poison"),
    ("mfill_atomic", "mfill_atomic_install_pte"),
}

#: model helpers that hold a check whoever calls them: the only way the model offers to do what
#: they do, so an override cannot do it without them
MODEL_HELPERS_WITH_CHECKS = {
    # drops a folio reference, freeing the folio at zero (and judging a put of a freed one): the
    # folio's lifecycle is the model's, no series function frees a folio otherwise
    "folio_put",
    # arch/powerpc pte_update()'s CONFIG_DEBUG_VM assert_pte_locked(): a check the kernel itself
    # makes, which the model runs where the kernel does (kernel/powerpc.py)
    "assert_pte_locked",
}


def _model_helpers_named(fn):
    """The functions of model modules (``pgconform.kernel``) that ``fn``, or a function of its
    own module it reaches, names."""
    mod, reached = _module_functions_reached(fn)
    helpers = []
    for own in reached:
        for node in ast.walk(ast.parse(inspect.cleandoc("\n" + inspect.getsource(own)))):
            if isinstance(node, ast.Name):
                g = getattr(mod, node.id, None)
                if inspect.isfunction(g) and g.__module__.startswith("pgconform.kernel") \
                        and g not in helpers:
                    helpers.append(g)
    return helpers


def test_every_series_function_is_in_the_reference():
    """A reader of ``reference/`` sees the whole reference: every function of the table is
    defined there (khugepaged_scan_mm_slot(), madvise_collapse(), move_normal_pmd() and
    move_pages_pte() used to be in kernel/)."""
    outside = {name: fn.__module__ for name, fn in reference_functions().items()
               if not fn.__module__.startswith("pgconform.reference")}
    assert not outside


def test_series_functions_reach_no_check_through_model_helpers():
    """The reference's functions call model helpers (kernel/): those helpers, and the functions
    of their modules they reach, hold no oracle check, but for the documented exceptions
    above (a check there would be switched off by an override that does not call the helper)."""
    offences = []
    for name, fn in sorted(reference_functions().items()):
        for helper in _model_helpers_named(fn):
            mod, reached = _module_functions_reached(helper)
            oracle_names = {a.asname or a.name
                            for node in ast.walk(ast.parse(inspect.getsource(mod)))
                            if isinstance(node, ast.ImportFrom)
                            and (node.module or "").startswith("pgconform.oracle")
                            for a in node.names}
            for g in reached:
                if g.__name__ in MODEL_HELPERS_WITH_CHECKS:
                    continue
                tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(g)))
                uses = [w for _, w in _verdict_uses(tree, oracle_names)
                        if not w.startswith("from ")]
                if uses and (name, g.__name__) not in HOSTED_EXCEPTIONS:
                    offences.append(f"{name} reaches {mod.__name__}.{g.__name__}: {uses}")
    assert not offences, "\n".join(offences)


def test_the_helper_scan_sees_a_hosted_check():
    """The scan above is not blind: move_normal_pmd() reaches mremap's _pmd_populate_moved()."""
    helpers = _model_helpers_named(reference_functions()["move_normal_pmd"])
    assert "_pmd_populate_moved" in [g.__name__ for g in helpers]


# ------------------------------------------------------------------------------------------------
# pass-through overrides


def passthrough(name, fn):
    """An override of ``name`` that calls the reference's ``fn``: the implementation's own code
    to the harness (not a reference function), doing exactly what the reference does."""

    def override(k, *args, **kwargs):
        return (yield from fn(k, *args, **kwargs))

    override.__name__ = override.__qualname__ = name
    return override


def with_passthroughs(impl: Implementation, arch: str) -> Implementation:
    """``impl`` on ``arch`` with every series function it does not define overridden by a
    pass-through of the reference's."""
    own = impl.overrides_on(arch)
    table = reference_functions(ARCHES[arch])
    overrides = {name: passthrough(name, fn) for name, fn in table.items() if name not in own}
    assert overrides.keys() | own.keys() == table.keys() | own.keys()
    return attrs.evolve(impl, name=f"{impl.name}+passthrough", overrides={**overrides, **own},
                        arch_overrides={})


IMPLEMENTATION_DIRS = tuple(str(ROOT / pkg) + "/" for pkg in IMPLEMENTATION_PACKAGES)


@pytest.fixture
def implementation_checks_left_out(monkeypatch):
    """Verdict calls made from implementation code (the shipped implementations' modules) are
    ignored, as if the implementation had been written without them; the list of those ignored."""
    ignored = []
    violation = Machine.violation

    def judged_only_outside(self, clause, *args, **kwargs):
        frame = sys._getframe(1)
        if frame.f_code is Machine.use_after_free.__code__:
            frame = frame.f_back
        if frame.f_code.co_filename.startswith(IMPLEMENTATION_DIRS):
            ignored.append((clause, frame.f_code.co_name))
            return None
        return violation(self, clause, *args, **kwargs)

    monkeypatch.setattr(Machine, "violation", judged_only_outside)
    return ignored


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_mutant_is_caught_with_every_other_function_overridden(
        name, implementation_checks_left_out):
    run = replay.decode(CORPUS[name])
    mutant = resolve(name)
    _, plain = replay.run_steps(replay.machine_for(run), run.steps)
    composed = with_passthroughs(mutant, run.arch)
    assert all(fn not in ALL_REFERENCE_FUNCTIONS
               for fn in composed.overrides_on(run.arch).values())
    cls = make_machine(composed, run.arch, scenario=run.scenario, spec=run.spec)
    _, v = replay.run_steps(cls, run.steps)
    assert v is not None, f"{name} with pass-throughs passes its stored schedule"
    assert v.clause in mutant.expected
    assert plain is not None and (v.clause, v.message) == (plain.clause, plain.message)
    assert implementation_checks_left_out == [], "verdicts given from implementation code"
    # and the reference made of pass-throughs passes the same schedule: no false alarm
    clean = make_machine(with_passthroughs(REFERENCE, run.arch), run.arch,
                         scenario=run.scenario, spec="reference")
    _, none = replay.run_steps(clean, run.steps)
    assert none is None, str(none)


def test_leaving_out_implementation_checks_is_seen(implementation_checks_left_out):
    """The fixture's filter works: a check written in implementation code is ignored (and
    recorded), a check of the model is not."""
    from pgconform.zoo import a14_ptl_from_reread_pmd as a14_module

    code = compile("def judge(m):\n    m.violation('pt.lock-mismatch', 'x')\n",
                   a14_module.__file__, "exec")
    scope = {}
    exec(code, scope)
    m = Machine()
    scope["judge"](m)  # from "implementation code": ignored
    assert implementation_checks_left_out == [("pt.lock-mismatch", "judge")]
    with pytest.raises(Violation):
        m.violation("pt.lock-mismatch", "from the test, not an implementation")


# ------------------------------------------------------------------------------------------------
# pte_lockptr() overridden


def pte_lockptr_of_anything(k, mm, pmdval):
    """pte_lockptr() as the kernel computes it, with no opinion on its argument: pmd_page() of a
    value that names no table is some page, and its ptlock some lock."""
    if not k.arch.split_pte_ptlocks:
        return mm.page_table_lock
    if type(pmdval).__name__ != "TablePmd":
        return mm.page_table_lock  # "the ptlock of frame 0": a lock nobody else computes
    return k.pmd_table(pmdval).ptl
    yield


def pte_lockptr_ignoring_split_ptlocks(k, mm, pmdval):
    """Always mm->page_table_lock, as if USE_SPLIT_PTE_PTLOCKS were off."""
    return mm.page_table_lock
    yield


@pytest.mark.parametrize("arch", ["x86_64", "powerpc64"])
def test_a14_is_caught_whatever_pte_lockptr_is(arch):
    """A14 takes the ptl from a re-read ``*pmd`` after the table went: caught with the same words
    whether pte_lockptr() is the reference's or an override without any check."""
    a14 = resolve("zoo.pte_lockptr_from_reread_pmd")
    for impl in (a14, attrs.evolve(a14, overrides={**a14.overrides,
                                                   "pte_lockptr": pte_lockptr_of_anything})):
        with pytest.raises(Violation) as excinfo:
            fault_vs_retract_between_map_and_lockptr(impl, arch)
        assert excinfo.value.clause == "pt.lock-mismatch"
        assert "pte_lockptr() of None, which names no page table" in excinfo.value.message
    # the override alone is right: the reference's callers only give it table values
    k = fault_vs_retract_between_map_and_lockptr(
        Implementation(name="any", overrides={"pte_lockptr": pte_lockptr_of_anything}), arch)
    assert not k.m.failed


def test_pte_lockptr_returning_another_lock_is_caught():
    impl = Implementation(name="one-lock",
                          overrides={"pte_lockptr": pte_lockptr_ignoring_split_ptlocks})
    with pytest.raises(Violation) as excinfo:
        collapse_alone(impl)
    v = excinfo.value
    assert v.clause == "pt.lock-mismatch"
    assert "returns mm0.page_table_lock, not the ptl of the page table it names" in v.message
    # without split PTE ptlocks that is the right lock
    from tests.selftest.helpers import finish

    k = build_world(SHARED, impl, arch="x86_64-nosplit")
    start_op(k, "CPU1", KHUGEPAGED)
    finish(k)
    assert not k.m.failed


# ------------------------------------------------------------------------------------------------
# powerpc pte_fragment_free(): the BUG_ON on pt_frag_refcount is the model's double free


def pte_free_defer_and_fragment_free(k, mm, pgtable):
    """The reference's deferral, and the fragment freed at once as well."""
    yield from k.ops.pte_fragment_free(k, pgtable, 0)
    yield from reference_functions(ARCHES["powerpc64"])["pte_free_defer"](k, mm, pgtable)


def test_powerpc_fragment_freed_twice_is_a_double_free():
    impl = Implementation(name="ppc-twice",
                          overrides={"pte_free_defer": pte_free_defer_and_fragment_free})
    from tests.selftest.helpers import finish

    k = build_world(SHARED, impl, arch="powerpc64")
    start_op(k, "CPU1", KHUGEPAGED)
    with pytest.raises(Violation) as excinfo:
        finish(k)
    assert excinfo.value.clause == "pt.double-free"
    assert "(pte_fragment_free) a second time" in excinfo.value.message


# ------------------------------------------------------------------------------------------------
# move_normal_pmd(): the hosted exception still cannot be switched off, and no books to keep


def test_cve_2024_50066_without_the_populate_check_is_still_caught(monkeypatch):
    """The stored schedule of the CVE mutant, with the reference helper's pt.populate-dead check
    left out (as an override of move_normal_pmd() would: nobody listens to the event its helper
    announces): the model judges pmd_pgtable() of the none PMD itself."""
    from pgconform.kernel.hooks import Hooks

    register = Hooks.register

    def without_populate_check(self, event, fn):
        if event != "pmd_moved_not_table":
            register(self, event, fn)

    run = replay.decode(CORPUS["zoo.move_normal_pmd_no_recheck"])
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is not None and v.clause == "pt.populate-dead"
    monkeypatch.setattr(Hooks, "register", without_populate_check)
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is not None and v.clause == "pt.not-a-table"
    assert "uses None as a page table" in v.message


def move_normal_pmd_plain(k, vma, old_addr, new_addr, old_pmd, new_pmd):
    """move_normal_pmd() (6.6 with 6fa1066fc5d0) written with kernel operations only, none of
    the model's mremap helpers: no bookkeeping of the anonymous pages' content."""
    from pgconform.kernel.mremap import have_move_pmd
    from pgconform.kernel.objects import TablePmd, pmd_none, table_pmd
    from pgconform.kernel.pgalloc import pgtable_table
    from pgconform.kernel.pgtable import pmd_clear, set_pmd
    from pgconform.kernel.tlbflush import flush_tlb_range
    from pgconform.sim.effects import Load, Lock, Unlock

    mm = vma.mm
    if not have_move_pmd(k.arch) or not pmd_none((yield Load(new_pmd.table, new_pmd.idx))):
        return False
    old_ptl = yield from k.ops.pmd_lock(k, mm, old_pmd)
    new_ptl = yield from k.ops.pmd_lockptr(k, mm, new_pmd)
    if new_ptl is not old_ptl:
        yield Lock(new_ptl, 1)
    pmd = yield Load(old_pmd.table, old_pmd.idx)
    moved = type(pmd) is TablePmd
    if moved:
        yield from pmd_clear(k, old_pmd)
        yield from set_pmd(k, new_pmd, table_pmd(pgtable_table(k, k.pmd_pgtable(pmd))))
        yield from flush_tlb_range(k, vma, old_addr, old_addr + k.geo.hpage_pmd_nr)
    if new_ptl is not old_ptl:
        yield Unlock(new_ptl)
    yield Unlock(old_ptl)
    return moved


@pytest.mark.parametrize("arch", ["x86_64", "powerpc64"])
def test_moving_a_table_keeps_no_books(arch):
    """A private mapping with an anonymous page moves by move_normal_pmd(); the implementation's
    own move keeps none of the model's books, and every address still reads what it must."""
    from tests.selftest.helpers import finish
    from tests.selftest.test_actors_vm import MREMAP_ALIGNED, PRIVATE, touch_everything

    impl = Implementation(name="plain-move", overrides={"move_normal_pmd": move_normal_pmd_plain})
    k = build_world(PRIVATE, impl, arch)
    mm = k.mms[0]
    before = dict(k.oracles.data.shadow)
    start_op(k, "CPU0", MREMAP_ALIGNED)
    finish(k)
    (new,) = mm.vmas
    assert mm.pmd_table.entries[1] is None and mm.pmd_table.entries[0] is not None
    assert k.oracles.data.shadow == {(mm, new.start + 1): before[(mm, 5)]}
    touch_everything(k)
    assert not k.m.failed


# ------------------------------------------------------------------------------------------------
# one home for the oracles: the model announces, oracle/ judges


#: packages of the model and of the implementations: they announce events, never import a check
MODEL_PACKAGES = ("kernel", "reference", "versions", "zoo", "alt")
#: clauses about the implementation as code, judged by the harness that calls it (the function
#: table's call checker, the determinism re-run), not by an oracle of the protocol
HARNESS_JUDGED = {"impl.bad-return": {"pgconform/implementation.py"},
                  "impl.nondeterministic": {"pgconform/harness/runs.py"}}
#: calls that raise a clause given as a string constant among their arguments
RAISING_ATTRS = {"violation", "_fail", "_errored"}
RAISING_NAMES = {"Violation", "ImplementationErrored"}


def _imports_oracle(tree, package: str) -> list:
    """(line, module) of each import of pgconform.oracle, module-level or in a function,
    absolute or relative (``package`` is the importing module's package)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name == "pgconform.oracle" or a.name.startswith("pgconform.oracle.")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            names = [f"{module}.{a.name}" for a in node.names]
            if any(n == "pgconform.oracle" or n.startswith("pgconform.oracle.")
                   for n in [module, *names]):
                found.append((node.lineno, module))
    return found


def test_the_model_imports_no_oracle():
    """Nothing under kernel/, reference/, versions/, zoo/, alt/ imports pgconform.oracle, at
    module level or inside a function: the oracles subscribe to the model's events
    (kernel/hooks.py) from outside, so no model or implementation code can drop a check."""
    files = [p for pkg in MODEL_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert any(p.name == "world.py" for p in files) and len(files) > 40
    offences = []
    for path in files:
        package = ".".join(("pgconform", *path.relative_to(ROOT).parent.parts))
        offences += [f"{path.relative_to(ROOT.parent)}:{line}: imports {module}"
                     for line, module in _imports_oracle(ast.parse(path.read_text()), package)]
    assert not offences, "\n".join(offences)


def test_the_import_scan_sees_an_import():
    assert _imports_oracle(ast.parse("def f():\n    from pgconform.oracle.uffd import x\n"), "a")
    assert _imports_oracle(ast.parse("from ..oracle import pagetable\n"), "pgconform.kernel")
    assert _imports_oracle(ast.parse("from pgconform import oracle\n"), "pgconform.kernel")
    assert not _imports_oracle(ast.parse("from pgconform.kernel import hooks\n"), "x")


def _raised_clauses(tree) -> list:
    """(line, clause) of each clause id given as a string constant to a raising call."""
    from pgconform.oracle.clauses import CLAUSES

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if not ((isinstance(f, ast.Attribute) and f.attr in RAISING_ATTRS)
                or (isinstance(f, ast.Name) and f.id in RAISING_NAMES)):
            continue
        found += [(node.lineno, a.value) for a in node.args
                  if isinstance(a, ast.Constant) and a.value in CLAUSES]
    return found


def test_every_clause_is_raised_from_oracle_or_sim():
    """Every clause of the catalogue is raised in oracle/ (the protocol's oracles) or sim/ (the
    engine's own invariants: locks, RCU, IRQs, scheduling, the implementation's crashes), and
    nowhere else but the harness's judgements of the implementation as code."""
    from pgconform.oracle.clauses import CLAUSES

    raised: dict = {}
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = str(path.relative_to(ROOT.parent))
        home = path.relative_to(ROOT).parts[0]
        for line, clause in _raised_clauses(ast.parse(path.read_text())):
            raised.setdefault(clause, set()).add(rel)
            if home not in ("oracle", "sim") and rel not in HARNESS_JUDGED.get(clause, ()):
                offences.append(f"{rel}:{line}: raises {clause}")
    assert not offences, "clauses raised outside oracle/ and sim/:\n" + "\n".join(offences)
    # the scan sees the raises (a clause raised only through a constant: guard.CLAUSE)
    from pgconform.oracle import guard

    raised.setdefault(guard.CLAUSE, set()).add("pgconform/oracle/guard.py")
    assert set(CLAUSES) - set(raised) == set(), "clauses raised nowhere the scan can see"


def test_the_clause_scan_sees_a_raise():
    src = "def f(m, t):\n    m.violation('pt.double-free', 'x', t, None)\n"
    assert _raised_clauses(ast.parse(src)) == [(2, "pt.double-free")]
    assert _raised_clauses(ast.parse("Violation('rcu.stall', 'x')\n")) == [(1, "rcu.stall")]


def test_every_kernel_event_has_an_oracle_and_a_call_site():
    """Each event of kernel/hooks.py is announced somewhere in the model and has a subscriber once
    the oracles are installed: no dead call site, no oracle that never hears anything."""
    import re

    from pgconform.kernel.hooks import EVENTS

    k = build_world(SHARED, REFERENCE)
    assert {e for e in EVENTS if not k.hooks.subscribers(e)} == set()
    text = "\n".join(p.read_text() for p in sorted((ROOT / "kernel").rglob("*.py"))
                     if p.name != "hooks.py")
    announced = set(re.findall(r"hooks\.(\w+)", text)) | \
        set(re.findall(r"store_hook\(\"(\w+)\"\)", text))
    assert set(EVENTS) - announced == set(), "events the model never announces"


def test_oracles_are_installed_once():
    from pgconform.oracle import install

    k = build_world(SHARED, REFERENCE)
    with pytest.raises(RuntimeError, match="already installed"):
        install(k)


def test_hooks_call_every_subscriber_in_order():
    from pgconform.kernel.hooks import EVENTS, Hooks

    hooks, heard = Hooks(), []
    assert hooks.marker_replaced("mm", 5) is None and hooks.store_hook("pte_store") is None
    for n in range(4):
        hooks.register("marker_replaced", lambda mm, a, n=n: heard.append((n, mm, a)))
        heard.clear()
        hooks.marker_replaced("mm", 5)
        assert heard == [(i, "mm", 5) for i in range(n + 1)]
    assert Hooks().marker_replaced is not hooks.marker_replaced  # per world, not per class
    with pytest.raises(ValueError, match="unknown kernel event"):
        hooks.register("pte_stored", print)
    assert "pte_store" in EVENTS
