"""What a kernel developer reads: verdicts on broken implementations (the miniatures), the race
diagram and replay string of every zoo mutant, replay and determinism, the report, the trace
pictures and the known-failures file.

The zoo's failures are replayed from ``pgconform/data/history_schedules.json`` (written by
``python -m pgconform corpus`` from the conformance machines' own shrunk failures), so every
mutant's verdict output is checked in every run, including the mutants whose random hunt takes
minutes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from pgconform.__main__ import main as cli
from pgconform.harness import replay, runs
from pgconform.harness.machines import make_machine
from pgconform.implementation import ImplementationError, coerce_implementation
from pgconform.oracle.clauses import CLAUSES
from pgconform.registry import resolve, zoo_names
from pgconform.report.summary import (
    ItemResult,
    XfailsError,
    parse_xfails,
    static_warnings,
    summary_lines,
    to_json,
    to_markdown,
    tolerated_for,
)
from pgconform.report.trace import MAX_ROWS, count_rows
from pgconform.sim import watchdog
from pgconform.sim.errors import Violation
from tests.selftest.helpers import run_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # the miniatures package

from miniatures import VERDICTS  # noqa: E402 - on the path just above

CORPUS = json.loads((ROOT / "pgconform" / "data" / "history_schedules.json").read_text())


# --- the miniatures: every way of misbehaving gets its verdict -------------------------------


def _miniature(name):
    module = importlib.import_module(f"miniatures.{name}")
    return coerce_implementation(module.IMPL, f"miniatures.{name}:IMPL")


def _judge(impl, spec, examples=60):
    """Run one conformance machine (x86_64, shared) on ``impl``; the violations it raised."""
    cls = make_machine(impl, "x86_64", scenario="shared", spec=spec)
    runs.last_failure = None
    try:
        run_state_machine_as_test(cls, settings=settings(
            max_examples=examples, database=None, deadline=None, stateful_step_count=20,
            derandomize=True, suppress_health_check=list(HealthCheck), phases=[Phase.generate]))
    except Violation as v:
        return [v]
    except BaseExceptionGroup as group:  # several distinct failures
        return [v for v in group.exceptions if isinstance(v, Violation)]
    return []


@pytest.mark.parametrize("name", sorted(set(VERDICTS) - {"nondeterministic", "flaky_draws"}))
def test_miniature_gets_its_verdict(name, monkeypatch):
    clauses, outcome = VERDICTS[name]
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", 0.5)
    violations = _judge(_miniature(name), f"miniatures.{name}:IMPL")
    assert violations, f"miniature {name} passed"
    assert all(v.clause in clauses for v in violations), [v.clause for v in violations]
    assert all(v.outcome == outcome for v in violations)
    # the verdict says what was judged and how to replay it; the replay gives it again
    v = violations[0]
    assert v.context[0].startswith(f"implementation: miniatures.{name}:IMPL on x86_64")
    assert v.context[1].startswith("replay: python -m pgconform replay pgc1:")
    run = replay.decode(v.context[1].split()[-1])
    _, again = replay.run_steps(replay.machine_for(run), run.steps)
    assert again is not None and again.clause == v.clause


def test_nondeterministic_miniature_is_reported_as_such():
    impl = _miniature("nondeterministic")
    try:
        _judge(impl, "miniatures.nondeterministic:IMPL", examples=100)
    except Flaky:  # Hypothesis could not replay its own failure: the plugin explains it
        pass
    failure = runs.last_failure
    assert failure is not None
    odd = replay.check_determinism(failure.run, expected=failure.violation.clause)
    assert odd is not None and odd.clause == "impl.nondeterministic"
    assert odd.outcome == "errored"


def test_deterministic_failure_passes_the_determinism_check():
    run = replay.decode(CORPUS["zoo.retract_no_pmd_notifier"])
    assert replay.check_determinism(run, expected="mmu.pmd-clear-unnotified") is None
    # and a wrong expectation is reported
    odd = replay.check_determinism(run, expected="pt.use-after-free")
    assert odd is not None and "mmu.pmd-clear-unnotified" in odd.message


def test_missing_function_is_a_clear_error():
    with pytest.raises(ImplementationError, match="pte_free_defer is NoneType, not a function"):
        _miniature("missing")


def test_hang_of_the_reference_itself_is_reported_not_hung(monkeypatch):
    """The watchdog interrupts any endless loop of kernel code, and says where it was."""
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", 0.2)
    from pgconform.sim.errors import Hang

    with pytest.raises(Hang), watchdog.watchdog():
        while True:
            pass


# --- every zoo mutant: the right clause, a diagram of at most MAX_ROWS rows, a replay -----------


def test_corpus_has_every_mutant():
    assert set(CORPUS) == set(zoo_names()), "run python -m pgconform corpus for the missing ones"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_mutant_failure_output(name):
    run = replay.decode(CORPUS[name])
    assert run.spec == name
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is not None, f"{name}: the stored schedule no longer fails"
    assert v.clause in resolve(name).expected
    text = str(v)
    assert text.startswith(f"[{v.clause}] ")
    assert f"  clause {v.clause}: {CLAUSES[v.clause]}" in text
    rows = count_rows(v.diagram)
    assert 1 <= rows <= MAX_ROWS
    assert "***" in v.diagram or v.task is None or v.clause.startswith(("acct.", "pt.leak"))
    # the printed string replays the same schedule
    printed = v.context[1].split("replay: python -m pgconform replay ", 1)[1]
    assert printed == CORPUS[name]
    # the reference passes the very same schedule: the failure is the mutant's, not a false alarm
    _, clean = replay.run_steps(replay.machine_for(run, "reference"), run.steps)
    assert clean is None, f"the reference fails {name}'s schedule: {clean}"


A9_VERDICT = (HERE / "data" / "a9_verdict.txt").read_text()


def test_exact_verdict_text_of_a_mutant():
    """The whole verdict of one mutant, to the character: headline, clause, diagram, replay."""
    run = replay.decode(CORPUS["zoo.retract_no_pmd_notifier"])
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert str(v) + "\n" == A9_VERDICT


def test_readme_shows_a_real_diagram():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Interpreting a failure\n", 1)[1].split("\n## ", 1)[0]
    diagram = A9_VERDICT.split("\n\n")[1]
    assert diagram in section


# --- python -m pgconform replay ---------------------------------------------------------------


def test_cli_replay_fails_passes_and_refuses(capsys, tmp_path):
    string = CORPUS["zoo.retract_no_pmd_notifier"]
    assert cli(["replay", string]) == 1
    out = capsys.readouterr().out
    assert "[mmu.pmd-clear-unnotified]" in out and "replay: python -m pgconform replay" in out
    assert cli(["replay", string, "--impl", "reference"]) == 0
    assert "no violation" in capsys.readouterr().out
    assert cli(["replay", string[:-12]]) == 2
    assert "damaged" in capsys.readouterr().err
    assert cli(["replay", "nonsense"]) == 2
    page = tmp_path / "a9.html"
    assert cli(["replay", string, "--html", str(page), "--check-determinism"]) == 1
    assert "mmu.pmd-clear-unnotified" in page.read_text()


def test_cli_replay_full_shows_every_effect(capsys):
    string = CORPUS["zoo.retract_no_pmd_notifier"]
    assert cli(["replay", string, "--full"]) == 1
    full = capsys.readouterr().out
    assert cli(["replay", string]) == 1
    trimmed = capsys.readouterr().out
    assert count_rows(full) > count_rows(trimmed)


# --- the report and the known-failures file --------------------------------------------------


def _results():
    return [
        ItemResult("t::A", "x86_64", "shared", "passed"),
        ItemResult("t::B", "x86_64", "private", "failed", "pt.use-after-free", "uaf"),
        ItemResult("t::C", "s390", "shared", "errored", "impl.raised", "boom"),
        ItemResult("t::D", "s390", "private", "passed", known={"acct.rss": 3}, xfails=(2,)),
        ItemResult("t::E", "arm", "shared", "skipped"),
    ]


def test_report_counts_a_scoped_known_violation_under_its_clause():
    """A finding declared as clause[what]@function is a known violation of its clause."""
    key = "pt.free-nonempty[PTE_MARKER_POISONED]@retract_page_tables"
    doc = to_json([ItemResult("t::F", "s390", "shared", "passed", known={key: 2})],
                  {"spec": "x", "source": "option"})
    assert doc["clauses"]["pt.free-nonempty"]["per_arch"]["s390"] == {
        "passed": 0, "failed": 0, "errored": 0, "known": 1}
    assert doc["clauses"]["pt.use-after-free"]["per_arch"]["s390"]["passed"] == 1


def test_report_keeps_failed_and_errored_apart():
    doc = to_json(_results(), {"spec": "x", "source": "option"})
    uaf = doc["clauses"]["pt.use-after-free"]["per_arch"]
    assert uaf["x86_64"] == {"passed": 1, "failed": 1, "errored": 0, "known": 0}
    assert uaf["s390"] == {"passed": 1, "failed": 0, "errored": 0, "known": 0}
    raised = doc["clauses"]["impl.raised"]["per_arch"]["s390"]
    assert raised == {"passed": 1, "failed": 0, "errored": 1, "known": 0}
    assert doc["clauses"]["acct.rss"]["per_arch"]["s390"]["known"] == 1
    assert doc["totals"] == {"passed": 2, "failed": 1, "errored": 1, "skipped": 1}
    assert "arm" not in doc["clauses"]["pt.use-after-free"]["per_arch"]
    md = to_markdown(_results(), {"spec": "x", "source": "option"})
    assert "| `pt.use-after-free` | 1/1/0 | 1/0/0 |" in md
    assert "**errored** `impl.raised`" in md
    lines = summary_lines(_results(), "implementation x (from option)")
    assert any(line.startswith("pt.use-after-free") and "1/1/0" in line for line in lines)
    assert not any(line.startswith("pt.double-free") for line in lines)
    assert any(line.startswith("pt.double-free")
               for line in summary_lines(_results(), "h", verbose=True))


def test_xfails_file_parsing():
    entries = parse_xfails(textwrap.dedent("""\
        # a partial powerpc port
        pt.torn-pmd x86_pae        # no pmdp_get_lockless_sync yet

        mmu.* * private            # notifiers come later
        acct.rss
        """))
    assert [(e.line, e.clause, e.arch, e.scenario) for e in entries] == [
        (2, "pt.torn-pmd", "x86_pae", "*"), (4, "mmu.*", "*", "private"), (5, "acct.rss", "*", "*")]
    assert entries[0].reason == "no pmdp_get_lockless_sync yet"
    tol = tolerated_for(entries, "x86_64", "private", CLAUSES)
    assert set(tol) == {"mmu.pmd-clear-unnotified", "mmu.secondary-stale-table",
                        "mmu.secondary-stale-translation", "acct.rss"}
    assert "pt.torn-pmd" in tolerated_for(entries, "x86_pae", "shared", CLAUSES)
    with pytest.raises(XfailsError, match="line 1"):
        parse_xfails("a b c d")
    warnings = static_warnings(parse_xfails("pt.nope\nacct.rss vax\nacct.rss * nowhere"),
                               CLAUSES, ["x86_64"], ["shared"])
    assert warnings == ["line 1: 'pt.nope' matches no clause",
                        "line 2: 'vax' matches no architecture judged",
                        "line 3: 'nowhere' matches no scenario"]


# --- through pytest: summary, report, trace pictures, known failures, nondeterminism ----------


CONFORMANCE = (ROOT / "tests" / "conformance" / "test_conformance.py").read_text()


@pytest.fixture
def suite(pgconform_pytester, monkeypatch):
    """A pytester directory holding the conformance suite, with the miniatures importable."""
    pgconform_pytester.makepyfile(test_conformance=CONFORMANCE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE)]))  # this checkout
    monkeypatch.setenv("PGCONFORM_HANG_S", "0.5")
    return pgconform_pytester



def test_errored_implementation_report_summary_and_pictures(suite):
    result = run_suite(suite, "--impl", "miniatures.raises:IMPL", "--arch", "x86_64",
                  "--pgconform-report", "report.json", "--pgconform-trace-dir", "traces")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "pgconform conformance summary" in out
    assert "implementation miniatures.raises:IMPL (from option)" in out
    assert any(line.startswith("impl.raised") and "0/0/3" in line for line in out.splitlines())
    doc = json.loads((suite.path / "report.json").read_text())
    assert doc["implementation"]["spec"] == "miniatures.raises:IMPL"
    assert doc["totals"]["errored"] == 3 and doc["totals"]["failed"] == 0
    assert doc["clauses"]["impl.raised"]["per_arch"]["x86_64"]["errored"] == 3
    assert all(item["replay"].startswith("pgc1:") for item in doc["items"])
    pages = sorted((suite.path / "traces").glob("*.html"))
    assert len(pages) == 3
    parser = _Classes()
    parser.feed(pages[0].read_text())
    assert {"lane", "effect", "violation"} <= parser.classes


class _Classes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.classes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.classes.update((dict(attrs).get("class") or "").split())


def test_report_as_markdown(suite):
    result = run_suite(suite, "--impl", "zoo.retract_no_pmd_notifier", "--arch", "x86_64",
                  "-k", "shared and not uffd", "--pgconform-report", "report.md")
    result.assert_outcomes(failed=1)
    md = (suite.path / "report.md").read_text()
    assert md.startswith("# pgconform report: zoo.retract_no_pmd_notifier")
    assert "| `mmu.pmd-clear-unnotified` | 0/1/0 |" in md
    assert "python -m pgconform replay pgc1:" in md


def test_nondeterminism_is_a_verdict_not_a_bare_flaky(suite):
    result = run_suite(suite, "--impl", "miniatures.nondeterministic:IMPL", "--arch", "x86_64",
                  "-k", "shared and not uffd", "--pgconform-report", "report.json")
    result.assert_outcomes(failed=1)
    assert "[impl.nondeterministic]" in result.stdout.str()
    doc = json.loads((suite.path / "report.json").read_text())
    assert doc["items"][0]["clause"] == "impl.nondeterministic"
    assert doc["items"][0]["outcome"] == "errored"


def test_xfails_file(suite):
    suite.path.joinpath("known.txt").write_text(textwrap.dedent("""\
        # the notifier patch is not ported yet
        mmu.* x86_64     # no mmu_notifier range around the PMD clear
        pt.nonexistent   # a typo: warned about
        acct.rss s390    # an arch not judged here: warned about
        pt.double-free   # listed but never hit: warned about at the end
        """))
    result = run_suite(suite, "--impl", "zoo.retract_no_pmd_notifier", "--arch", "x86_64",
                  "--xfails-file", "known.txt", "-W", "always::pytest.PytestConfigWarning")
    result.assert_outcomes(xfailed=3)
    out = result.stdout.str()
    assert "'pt.nonexistent' matches no clause" in out
    assert "'s390' matches no architecture judged" in out
    assert "--xfails-file line 5 (pt.double-free * *) matched no violation" in out
    assert "--xfails-file line 2" not in out


def test_xfails_file_that_does_not_parse_is_a_usage_error(suite):
    suite.path.joinpath("known.txt").write_text("pt.leak x86_64 shared extra\n")
    result = run_suite(suite, "--xfails-file", "known.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "line 1: expected CLAUSE [ARCH [SCENARIO]]" in result.stderr.str()


def test_missing_function_through_pytest_is_a_usage_error(suite):
    result = run_suite(suite, "--impl", "miniatures.missing:IMPL")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pte_free_defer is NoneType, not a function" in result.stderr.str()


def test_hanging_implementation_gets_a_verdict_through_pytest(suite):
    result = run_suite(suite, "--impl", "miniatures.hangs:IMPL", "--arch", "x86_64", "-k",
                       "shared and not uffd")
    result.assert_outcomes(failed=1)
    assert "[impl.hang]" in result.stdout.str()


def test_a_hang_shortens_the_watchdog_of_its_own_machine_only(monkeypatch):
    """After a hang, only the machine class that hung gets the short timeout: other items (other
    implementations, arches, scenarios) in the same worker keep the full one."""
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", 0.5)
    hung = make_machine(_miniature("hangs"), "x86_64", scenario="shared")
    other = make_machine(resolve("reference"), "x86_64", scenario="shared")
    with pytest.raises(Violation, match="impl.hang"):
        run_state_machine_as_test(hung, settings=settings(
            max_examples=2, database=None, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck), phases=[Phase.generate]))
    assert hung.hung and not other.hung
    assert watchdog.timeout_s(hung.hung) == watchdog.LATER_TIMEOUT_S
    assert watchdog.timeout_s(other.hung) == 0.5


def test_the_alarm_repeats_if_one_is_swallowed(monkeypatch):
    """A SIGPROF landing in a gc callback is swallowed there; the timer fires again."""
    from pgconform.sim.errors import Hang

    swallowed = []

    def once_swallowed(signum, frame):
        if not swallowed:
            swallowed.append(True)
            return  # as if the exception had been raised, and ignored, in a gc callback
        raise Hang()

    monkeypatch.setattr(watchdog, "_on_alarm", once_swallowed)
    with pytest.raises(Hang), watchdog.watchdog(0.1):
        while True:
            pass
    assert swallowed
