"""The kernel versions as implementations (``v1``, ``v2``, ``v6.6``, ``v7.0``) and the version
matrix.

The expected matrix is history: v1 fails exactly where the v2 changelog says it was wrong, and
nowhere else; v2 (with its later-found bugs declared), v6.6 and v7.0 pass everything the suite
has ever caught.  The schedules are the stored failing schedules of the zoo
(``pgconform/data/history_schedules.json``), replayed under each version."""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness import replay
from pgconform.harness.sweep import default_bound, sweep
from pgconform.implementation import ImplementationError
from pgconform.kernel.arch import ARCHES
from pgconform.kernel.config import PLAIN_READS_ENV, PLAIN_READS_FORMS
from pgconform.kernel.version import V6_6, V7_0, VERSIONS
from pgconform.reference.arch import generic, powerpc
from pgconform.registry import function_table, resolve
from pgconform.tools import matrix
from pgconform.versions import v1, v2
from pgconform.zoo import a1_powerpc_v1, a7_retract_no_anon_vma_recheck

SCHEDULES = {name: replay.decode(s) for name, s in matrix.history_schedules().items()}
CHANGELOG_MUTANTS = {mutant for mutant, _ in v1.CHANGELOG.values()}
CHANGELOG_CLAUSES = {c for _, clauses in v1.CHANGELOG.values() for c in clauses}


def _first_clause(run, spec, tolerated=()):
    clause, known = matrix.replay_outcome(run, spec, dict.fromkeys(tolerated, "other item"))
    return clause, known


# --- the registered versions ----------------------------------------------------------------


@pytest.mark.parametrize("name,kernel", [("v1", "6.6"), ("v2", "6.6"), ("v6.6", "6.6"),
                                         ("v7.0", "7.0")])
def test_versions_are_registered(name, kernel):
    impl = resolve(name)
    assert impl.name == name and impl.kernel == kernel and impl.source


def test_v6_6_is_the_reference():
    assert not resolve("v6.6").overrides and "s390-6.7" not in resolve("v6.6").arches


def test_arch_overrides_replace_the_arch_function_on_that_arch_only():
    ppc = function_table(v1.IMPLEMENTATION, ARCHES["powerpc64"])
    assert ppc.pte_free_defer.__wrapped__ is a1_powerpc_v1.pte_free_defer
    x86 = function_table(v1.IMPLEMENTATION, ARCHES["x86_64"])
    assert x86.pte_free_defer is generic.FUNCTIONS.get("pte_free_defer", x86.pte_free_defer)
    assert x86.pte_free_defer is not ppc.pte_free_defer
    assert function_table(resolve("v6.6"), ARCHES["powerpc64"]).pte_free_defer is \
        powerpc.FUNCTIONS["pte_free_defer"]


def test_k_reaches_the_implementation_it_runs_and_its_code():
    """``k.implementation`` is the Implementation ``k.ops`` was built from; the code the machine
    attributes exceptions to is that implementation's overrides on the arch, none for the
    reference (whose exceptions are pgconform's bugs)."""
    from pgconform.harness.scenario import VmaSpec, WorldSpec, build_world

    world = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),))
    k = build_world(world, v1.IMPLEMENTATION, "powerpc64")
    assert k.implementation is v1.IMPLEMENTATION
    assert k.ops.pte_free_defer.__wrapped__ is a1_powerpc_v1.pte_free_defer
    assert k.m.implementation_code == {
        fn.__code__ for fn in v1.IMPLEMENTATION.overrides_on("powerpc64").values()}
    assert a1_powerpc_v1.pte_free_defer.__code__ in k.m.implementation_code
    x86 = build_world(world, v1.IMPLEMENTATION, "x86_64")
    assert a1_powerpc_v1.pte_free_defer.__code__ not in x86.m.implementation_code
    reference = resolve("reference")
    k = build_world(world, reference, "powerpc64")
    assert k.implementation is reference and k.m.implementation_code == set()


def test_the_interface_and_the_model_do_not_import_the_reference():
    """The plug-in interface (implementation.py) and the model (kernel/) import nothing above
    them, at module level or inside a function: filling an implementation from the reference is
    the registry's (function_table), telling its code from ours is the Implementation's."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "pgconform"
    above = ("pgconform.reference", "pgconform.registry", "pgconform.versions", "pgconform.zoo",
             "pgconform.alt", "pgconform.harness")
    found = []
    for path in [root / "implementation.py", *sorted((root / "kernel").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                      if n.startswith(above)]
    assert not found, found


def test_versions_exclude_arches_instead_of_listing_them():
    """Each version is judged on every arch but the ones it excludes, so a new arch is judged by
    default; an excluded name that is not an arch is an error, not a silent no-op."""
    from pgconform.kernel.arch import arches_except, arches_where

    for name in ("v1", "v2", "v6.6", "v7.0"):
        assert set(ARCHES) - set(resolve(name).arches) == {"s390-6.7"}, name
    with pytest.raises(ValueError, match="vax: not modelled arches"):
        arches_except("s390-6.7", "vax")
    assert arches_where(lambda arch: arch.pt_reclaim) == ()  # no PT reclaim in 6.6
    assert "x86_64" in arches_where(lambda arch: arch.pt_reclaim, "7.0")


def test_bad_version_declarations_are_refused():
    with pytest.raises(ImplementationError, match="not a modelled kernel version"):
        attrs.evolve(v2.IMPLEMENTATION, kernel="5.4")
    with pytest.raises(ImplementationError, match="not modelled arches"):
        attrs.evolve(v2.IMPLEMENTATION, arch_overrides={"vax": {}})
    with pytest.raises(ImplementationError, match="not series functions"):
        attrs.evolve(v2.IMPLEMENTATION, arch_overrides={"s390": {"frobnicate": print}})


def test_the_7_0_environment():
    assert VERSIONS["6.6"] is V6_6 and not V6_6.rw_nolock and not V6_6.pt_reclaim
    x86 = V7_0.arch("x86_64")
    assert x86.rcu_table_free and x86.pt_reclaim and not ARCHES["x86_64"].rcu_table_free
    s390 = V7_0.arch("s390")
    assert s390.name == "s390" and s390.tables_per_page == 1 and s390.allocator == "s390_full_page"
    assert V7_0.arch("powerpc64") is ARCHES["powerpc64"]


# --- v1 fails exactly where the v2 changelog says ------------------------------------------


@pytest.mark.parametrize("item", sorted(v1.CHANGELOG))
def test_v1_fails_each_changelog_item(item):
    """The schedule that caught the item's mutant fails v1 with the item's clause once the other
    items' clauses are tolerated (v1 has all of them; A9's fires at every retract), and passes
    v2, v6.6 and v7.0."""
    mutant, clauses = v1.CHANGELOG[item]
    run = SCHEDULES[mutant]
    others = CHANGELOG_CLAUSES - set(clauses)
    clause, _ = _first_clause(run, "v1", others)
    assert clause in clauses, f"v1 on {mutant}'s schedule: {clause}, not one of {clauses}"
    for later in ("v2", "v6.6", "v7.0"):
        clause, _known = _first_clause(run, later)
        assert clause is None, f"{later} fails {mutant}'s schedule with {clause}"


@pytest.mark.parametrize("mutant", sorted(set(SCHEDULES) - CHANGELOG_MUTANTS))
def test_v1_fails_nowhere_else(mutant):
    """On every other schedule of the history, v1 with the changelog's clauses tolerated does
    what v2 does: v1 is v2 plus the changelog's bugs."""
    run = SCHEDULES[mutant]
    if run.arch not in v1.IMPLEMENTATION.arches:
        pytest.skip(f"v1 does not apply on {run.arch}")
    got_v1 = _first_clause(run, "v1", CHANGELOG_CLAUSES)
    got_v2 = _first_clause(run, "v2")
    assert got_v1[0] == got_v2[0] is None
    # v2's own s390 code (the 07 rewrite, with its leak) is not v1's
    v2_only = CHANGELOG_CLAUSES | set(v2.IMPLEMENTATION.arch_known_violations.get(run.arch, {}))
    assert got_v1[1] - CHANGELOG_CLAUSES == got_v2[1] - v2_only


@pytest.mark.parametrize("mutant", sorted(SCHEDULES))
def test_later_versions_pass_the_history(mutant):
    run = SCHEDULES[mutant]
    for spec in ("v2", "v6.6", "v7.0"):
        if run.arch in resolve(spec).arches:
            clause, known = _first_clause(run, spec)
            assert clause is None, f"{spec} fails {mutant}'s schedule: {clause}"
            assert known <= set(resolve(spec).known_violations_on(run.arch)) | set(
                v2.LOST_PTE_CONSEQUENCES)


def test_v2_declares_b1_and_the_s390_leak():
    """v2's two bugs found after it: B1 (a98460494b16) and the posted s390 pte_free_half()."""
    _, known = _first_clause(SCHEDULES["zoo.collapse_pte_mapped_thp_uffd_window"], "v2")
    assert "pt.free-nonempty@collapse_pte_mapped_thp" in known
    _, known = _first_clause(SCHEDULES["zoo.s390_v2_as_posted"], "v2")
    assert known == {"pt.leak"}
    _, known = _first_clause(SCHEDULES["zoo.s390_v2_as_posted"], "v6.6")
    assert not known


def test_a_known_violation_in_one_function_does_not_hide_the_clause_elsewhere(monkeypatch):
    """v2 tolerates pt.free-nonempty in collapse_pte_mapped_thp() only: the same clause from
    retract_page_tables() (A7 put into v2) still fails."""
    v2_a7 = attrs.evolve(v2.IMPLEMENTATION, name="v2+A7", overrides={
        **v2.IMPLEMENTATION.overrides,
        "retract_page_tables": a7_retract_no_anon_vma_recheck.retract_page_tables})
    monkeypatch.setattr("pgconform.tools.matrix.resolve",
                        lambda spec: v2_a7 if spec == "v2+A7" else resolve(spec))
    clause, _ = _first_clause(SCHEDULES["zoo.retract_no_anon_vma_recheck"], "v2+A7")
    assert clause in a7_retract_no_anon_vma_recheck.MUTANT.expected


# --- the matrix -------------------------------------------------------------------------------


def test_matrix_of_the_history():
    """The expected matrix, computed from the history's schedules alone: v1 fails on every arch
    where a changelog item shows, with the changelog's clauses (and their symptoms) only."""
    m = matrix.version_matrix(bound=None)
    for cell in m["v1"].values():
        if cell.applies:
            assert set(cell.failed) <= CHANGELOG_CLAUSES | set(v2.LOST_PTE_CONSEQUENCES) | {
                "pt.lock-mismatch"}  # the torn pmd's garbage table, A10's symptom
    assert {a for a, c in m["v1"].items() if c.failed} == {"x86_64", "x86_pae", "powerpc64",
                                                           "s390"}
    for spec in ("v2", "v6.6", "v7.0"):
        assert all(not c.failed for c in m[spec].values()), spec
    assert m["v2"]["s390"].known == {"pt.leak"}
    assert m["v6.6"]["s390-6.7"].text() == "n/a"


# --- the declared findings -----------------------------------------------------------------

FINDINGS = {key: replay.decode(s) for key, s in matrix.finding_schedules().items()}


@pytest.mark.parametrize("key", sorted(FINDINGS))
def test_each_finding_schedule_commits_its_finding(key, monkeypatch):
    """The stored schedule of a declared finding: the version that declares it (the run's spec)
    passes with the finding counted under its key; without that one declaration it fails with
    the key's clause."""
    run = FINDINGS[key]
    clause, known = _first_clause(run, run.spec)
    assert clause is None and key in known
    version = resolve(run.spec)
    undeclared = attrs.evolve(
        version, name=f"{run.spec}-undeclared",
        known_violations={k: w for k, w in version.known_violations.items() if k != key},
        known_consequences={k: c for k, c in version.known_consequences.items() if k != key})
    monkeypatch.setattr("pgconform.tools.matrix.resolve",
                        lambda spec: undeclared if spec == undeclared.name else resolve(spec))
    clause, _ = _first_clause(run, undeclared.name)
    assert clause == key.split("@")[0].split("[")[0]


def test_every_scoped_finding_has_a_schedule():
    """Each finding a version declares on the operations once left out of the mix (poison and
    guard markers, the guard install loop) has its schedule in the matrix."""
    from pgconform import versions

    declared = {key for spec in versions.VERSIONS for key in resolve(spec).known_violations
                if "[PTE_MARKER_" in key or key.startswith("sched.")}
    assert declared == set(FINDINGS)
    assert "pt.free-nonempty[PTE_MARKER_POISONED]@retract_page_tables" in \
        resolve("reference").known_violations


# --- mainline: the 7.0 kernel ---------------------------------------------------------------


def test_retract_without_the_pmd_state_recheck_is_caught_in_7_0():
    """The 7.0 mutant (no 6c18ec9af86c): MADV_DONTNEED reclaims the table retract found, and
    retract derives its ptl from the none PMD (split ptlocks) or frees pmd_pgtable() of it."""
    from pgconform.harness.scenario import Op
    from pgconform.harness.sweep import RECLAIM_FREER, Pair, explore_pair
    from pgconform.zoo import v7_retract_no_pmd_state_recheck as mutant

    pair = Pair("shared", Op("khugepaged", 0, 4, 1), RECLAIM_FREER)
    got = {arch: explore_pair(mutant.MUTANT, arch, pair, bound=1).violation
           for arch in mutant.MUTANT.arches}
    assert {a: v.clause for a, v in got.items()} == {
        "x86_64": "pt.lock-mismatch", "x86_64-alloc-ptlocks": "pt.lock-mismatch",
        "x86_64-nosplit": "pt.not-a-table"}
    for arch in mutant.MUTANT.arches:
        assert explore_pair(resolve("v7.0"), arch, pair, bound=1).violation is None


def test_finding_uffd_writeprotect_against_pt_reclaim(monkeypatch):
    """The finding v7.0 declares on the PT-reclaim arches: MADV_DONTNEED of the whole PMD range
    against UFFDIO_REGISTER(WP) + UFFDIO_WRITEPROTECT loses the markers in 7.0, and cannot in 6.6
    (no reclaim) or on a 7.0 arch without PT reclaim.  The PMD is none at first: the table
    change_pmd_prepare() allocates is reclaimed before the re-read after __pte_alloc() (one that
    was there already, emptied, is the plain-read race: tests/selftest/test_plain_reads.py)."""
    from pgconform.harness.scenario import Op, VmaSpec, WorldSpec
    from pgconform.harness.sweep import RECLAIM_FREER, WORLDS, Pair, explore_pair
    from pgconform.versions import v7_0

    monkeypatch.setitem(WORLDS, "shared-no-table", WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),)))
    undeclared = attrs.evolve(v7_0.IMPLEMENTATION, arch_known_violations={})
    pair = Pair("shared-no-table", RECLAIM_FREER, Op("uffd_register", 0, 5, 6))
    assert "WRITEPROTECT" in str(pair)
    v = explore_pair(undeclared, "x86_64", pair, bound=1).violation
    assert v is not None and v.clause in ("data.uffd-marker-lost",
                                          "data.uffd-wp-write-unnotified")
    assert explore_pair(resolve("v7.0"), "x86_64", pair, bound=1).violation is None
    assert explore_pair(resolve("v6.6"), "x86_64", attrs.evolve(
        pair, first=Op("dontneed", 0, 4, 4)), bound=1).violation is None
    assert explore_pair(undeclared, "powerpc64", pair, bound=1).violation is None


def test_matrix_command(capsys, tmp_path):
    import json

    from pgconform.__main__ import main

    out_json = tmp_path / "m.json"
    assert main(["matrix", "--versions", "v1,v2,v6.6", "--arch", "s390", "--bound", "-1",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["| version | s390 |", "|---|---|"]
    assert out[3:] == ["| v2 | pass; known: pt.leak |", "| v6.6 | pass |"]
    data = json.loads(out_json.read_text())
    assert data["v2"]["s390"] == {"applies": True, "failed": {}, "known": ["pt.leak"]}
    assert "rcu.head-storage-in-use" in data["v1"]["s390"]["failed"]
    assert data["v1"]["s390"]["failed"]["rcu.head-storage-in-use"].startswith("schedule of zoo.")


#: a shared VMA over a PMD-sized folio mapped by PTEs: collapse_pte_mapped_thp() drops the ptl
#: between its steps 2 and 4 here (not in uffd-armed private VMAs)
SHARED_THP = "shared-pte-mapped-thp"


@pytest.fixture
def shared_thp(monkeypatch):
    """The world, for these tests only (the sweep's own worlds stay as they are)."""
    from pgconform.harness.scenario import VmaSpec, WorldSpec
    from pgconform.harness.sweep import WORLDS, Pair

    monkeypatch.setitem(WORLDS, SHARED_THP, WorldSpec(
        vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), tables=((0, 4),),
        prefault=((0, 4, False), (0, 5, False))))
    return lambda first, second: Pair(SHARED_THP, first, second)


COLLAPSE_VS_RECLAIM = ("madv_collapse", "khugepaged")


@pytest.mark.parametrize("collapser", COLLAPSE_VS_RECLAIM)
def test_collapse_without_the_step4_recheck_is_caught_in_7_0(collapser, shared_thp):
    """7.0's step-4 pmd_same() recheck (split ptlocks) is what stops MADV_DONTNEED's PT reclaim
    from having freed the table step 2 emptied: without it, the clear of a none PMD."""
    from pgconform.harness.scenario import Op
    from pgconform.harness.sweep import RECLAIM_FREER, explore_pair
    from pgconform.versions import v7_0

    def no_recheck(k, mm, addr, install_pmd):
        return (yield from v7_0.collapse_pte_mapped_thp_as(k, mm, addr, install_pmd,
                                                           step4_recheck=False))

    mutant = attrs.evolve(v7_0.IMPLEMENTATION, name="v7.0-no-step4-recheck", overrides={
        **v7_0.IMPLEMENTATION.overrides, "collapse_pte_mapped_thp": no_recheck})
    pair = shared_thp(Op(collapser, 0, 4, 1), RECLAIM_FREER)
    v = explore_pair(mutant, "x86_64", pair, bound=2).violation
    assert v is not None and v.clause == "pt.not-a-table"
    assert explore_pair(v7_0.IMPLEMENTATION, "x86_64", pair, bound=2).violation is None


@pytest.mark.xfail(strict=True, reason=(
    "finding: Linux 7.0 try_collapse_pte_mapped_thp() rechecks pmd_same() at step 4 only when "
    "ptl != pml; without split PTE ptlocks (x86-64 with NR_CPUS < SPLIT_PTLOCK_CPUS still has "
    "PT_RECLAIM), MADV_DONTNEED can reclaim the table step 2 emptied while the ptl is dropped, "
    "and step 4 clears the none PMD and pte_free_defer()s pmd_pgtable() of it"))
@pytest.mark.parametrize("collapser", COLLAPSE_VS_RECLAIM)
def test_finding_collapse_without_split_ptlocks(collapser, shared_thp):
    from pgconform.harness.scenario import Op
    from pgconform.harness.sweep import RECLAIM_FREER, explore_pair

    pair = shared_thp(Op(collapser, 0, 4, 1), RECLAIM_FREER)
    v = explore_pair(resolve("v7.0"), "x86_64-nosplit", pair, bound=2).violation
    assert v is None, f"{v.clause}: {v.message}"


# --- the nightly bound ----------------------------------------------------------------------


@pytest.mark.skipif(default_bound() < 2, reason="the nightly bound only: "
                    "PGCONFORM_PREEMPTION_BOUND=2 (tox -e nightly)")
@pytest.mark.parametrize("form", PLAIN_READS_FORMS)
@pytest.mark.parametrize("arch", list(ARCHES))
@pytest.mark.parametrize("spec", ["v6.5", "v1", "v2", "v6.6", "v7.0"])
def test_versions_pass_the_sweep_at_the_nightly_bound(spec, arch, form, monkeypatch):
    """Every version passes the exhaustive sweep at the nightly bound on every arch it applies
    to, with plain page-table reads fused and split (kernel/mprotect.py), its real findings
    declared; v1 fails only with the clauses of the v2 changelog and their symptoms."""
    impl = resolve(spec)
    if impl.arches and arch not in impl.arches:
        pytest.skip(f"{spec} does not apply to {arch}")
    if spec == "v6.6" and form == "fused":
        pytest.skip("v6.6 is the reference: tests/conformance/test_exhaustive.py sweeps it")
    monkeypatch.setenv(PLAIN_READS_ENV, form)
    if spec == "v1":
        failed, _ = matrix.sweep_clauses(impl, arch, default_bound())
        assert set(failed) <= CHANGELOG_CLAUSES | set(v2.LOST_PTE_CONSEQUENCES) | {
            "pt.lock-mismatch"}, failed
    else:
        r = sweep(impl, arch)
        assert r.violation is None, f"{r.pair}: {r.violation}"
