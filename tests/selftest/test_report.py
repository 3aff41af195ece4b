"""The conformance summary never claims more than was judged, and the known-failures file speaks
one scenario vocabulary for the machines and the sweep."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pgconform import plugin
from pgconform.oracle.clauses import CLAUSES
from pgconform.report.summary import (
    NO_CLAUSE,
    ItemResult,
    parse_xfails,
    static_warnings,
    summary_lines,
    to_json,
    tolerated_for,
)

ROOT = Path(__file__).resolve().parents[2]


def test_an_error_without_a_verdict_is_counted_errored_not_held():
    results = [ItemResult("t::A", "x86_64", "shared", "passed"),
               ItemResult("t::B", "x86_64", "private", "errored", None, "KeyError: 3")]
    lines = summary_lines(results, "h")
    assert not any("every clause held" in line for line in lines), lines
    assert any(line.startswith(NO_CLAUSE) and "0/0/1" in line for line in lines), lines
    assert lines[-1] == (f"items: 1 passed, 0 failed, 1 errored, 0 skipped (1 ended without a "
                         f"clause verdict: counted errored, in the row {NO_CLAUSE})")
    assert to_json(results, {})["clauses"][NO_CLAUSE]["per_arch"]["x86_64"]["errored"] == 1


def test_a_failure_without_a_clause_is_errored_too():
    results = [ItemResult("t::B", "s390", "mixed", "failed")]
    lines = summary_lines(results, "h")
    assert any(line.startswith(NO_CLAUSE) and "0/0/1" in line for line in lines), lines
    assert not any("every clause held" in line for line in lines)


def test_every_clause_held_only_when_items_passed_and_none_failed():
    passed = [ItemResult("t::A", "x86_64", "shared", "passed")]
    assert summary_lines(passed, "h")[2:] == [
        "every clause held on every architecture (1 items passed; -v lists them)"]
    skipped = [ItemResult("t::A", "x86_64", "shared", "skipped")]
    assert summary_lines(skipped, "h")[2:] == [
        "no item was judged: every conformance item was skipped"]


HARNESS_ERROR = textwrap.dedent(
    """
    import pytest


    @pytest.mark.pgconform_sweep
    def test_sweep(request):
        request.node.pgconform_item = ("x86_64", "shared")
        raise KeyError("not a verdict")
    """
)


def test_a_harness_error_through_pytest(pgconform_pytester, run_pgconform):
    """The run that printed "every clause held ... (0 items passed)" next to "1 failed"."""
    pgconform_pytester.makepyfile(test_harness=HARNESS_ERROR)
    result = run_pgconform("--arch", "x86_64")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "every clause held" not in out
    result.stdout.fnmatch_lines([f"{NO_CLAUSE}*0/0/1",
                                 "items: 0 passed, 0 failed, 1 errored, 0 skipped (1 ended *"])


def test_one_scenario_vocabulary_for_machines_and_sweep():
    scenarios = plugin.scenarios()
    assert {"shared", "private", "mixed", "pte-mapped-thp", "anon", "shared-uffd"} == set(scenarios)
    entries = parse_xfails("pt.free-nonempty x86_64 private\npt.free-nonempty * sweep-private\n")
    assert static_warnings(entries, CLAUSES, ["x86_64"], scenarios) == [
        "line 2: 'sweep-private' matches no scenario"]
    assert tolerated_for(entries, "x86_64", "private", CLAUSES) == {
        "pt.free-nonempty": (1, "listed in the known-failures file")}


def test_sweep_items_are_judged_under_their_world(pgconform_pytester, run_pgconform,
                                                  monkeypatch):
    """A sweep item's scenario is its world, in the report and for --xfails-file."""
    monkeypatch.setenv("PGCONFORM_PREEMPTION_BOUND", "0")
    pgconform_pytester.makepyfile(
        test_exhaustive=(ROOT / "tests" / "conformance" / "test_exhaustive.py").read_text())
    (pgconform_pytester.path / "xfails.txt").write_text("pt.free-nonempty x86_64 private\n")
    result = run_pgconform("--arch", "x86_64", "-k", "private", "--xfails-file", "xfails.txt",
                           "--pgconform-report", "report.json",
                           "-W", "error::pytest.PytestConfigWarning")
    result.assert_outcomes(passed=1)
    assert "matches no scenario" not in result.stdout.str()
    items = json.loads((pgconform_pytester.path / "report.json").read_text())["items"]
    assert [(i["arch"], i["scenario"], i["outcome"]) for i in items] == [
        ("x86_64", "private", "passed")]
