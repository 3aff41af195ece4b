"""What pytest prints for a failed conformance item: the verdict first and once (README,
"Interpreting a failure"), the harness's traceback only with ``--tb=long``/``--tb=native``, and
the clause in JUnit XML.

A zoo mutant fails one conformance machine (``zoo.retract_no_pmd_notifier``, x86_64, shared)
and the exhaustive sweep (``zoo.retract_pte_free_immediate``, x86_64, shared), each in a pytest
subprocess, with the repository's Hypothesis profiles (its root ``conftest.py``) so that
``CI=true`` loads the ``ci`` profile as it does in CI.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pgconform.harness import replay, runs
from pgconform.oracle.clauses import CLAUSES
from pgconform.plugin import verdict_text
from pgconform.sim.errors import Violation
from tests.selftest.helpers import run_suite

ROOT = Path(__file__).resolve().parents[2]

MACHINE_MUTANT, MACHINE_CLAUSE = "zoo.retract_no_pmd_notifier", "mmu.pmd-clear-unnotified"
SWEEP_MUTANT, SWEEP_CLAUSE = "zoo.retract_pte_free_immediate", "pt.reuse-before-gp"

#: Frames of the harness that the default failure section must not show.
HARNESS = ("hypothesis/stateful.py", "pgconform/harness/machines.py", "_judge",
           "pgconform/sim/machine.py", "def violation", "Traceback (most recent call last)")


@pytest.fixture
def suite(pgconform_pytester, monkeypatch):
    """A pytester directory holding the conformance suite and the repository's profiles."""
    for name in ("test_conformance", "test_exhaustive"):
        pgconform_pytester.makepyfile(
            **{name: (ROOT / "tests" / "conformance" / f"{name}.py").read_text()})
    pgconform_pytester.makeconftest((ROOT / "conftest.py").read_text())
    for var in ("CI", "BUILD_NUMBER", "HYPOTHESIS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    return pgconform_pytester


def _run(pytester, *args):
    return run_suite(pytester, "--arch", "x86_64", *args)


def _machine(pytester, *args):
    return _run(pytester, "test_conformance.py", "-k", "shared and not uffd", "--impl",
                MACHINE_MUTANT, *args)


def _sweep(pytester, *args):
    return _run(pytester, "test_exhaustive.py", "-k", "x86_64-shared]", "--impl", SWEEP_MUTANT,
                *args)


def _failure_section(lines: list[str]) -> list[str]:
    """The lines of the (one) failure's section: after its ``____ name ____`` header (and
    xdist's ``[gw0] linux`` line), up to the next ``===`` line."""
    start = lines.index(next(line for line in lines if re.match(r"^=+ FAILURES =+$", line)))
    section = []
    for line in lines[start + 2:]:
        if line.startswith("=" * 10):
            break
        section.append(line)
    if section and re.match(r"^\[gw\d+\] ", section[0]):
        section = section[1:]
    return section


def _replayed(section: list[str]) -> Violation:
    """The violation the failure's replay string gives, run again without Hypothesis."""
    string = next(line for line in section if line.startswith("replay: ")).rsplit(" ", 1)[1]
    run = replay.decode(string)
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is not None
    return v


def _assert_printed_once(lines: list[str], section: list[str]) -> None:
    """No line of the failure section is printed anywhere else (the diagram's rows may repeat
    within it), and the verdict's own lines are in it once."""
    elsewhere = {line for line in section
                 if line.strip() and lines.count(line) != section.count(line)}
    assert not elsewhere, f"printed again outside the failure section: {sorted(elsewhere)}"
    once = [section[0], section[1]] + [line for line in section if line.startswith(
        ("implementation: ", "replay: ", "schedule: ", "Failing test case"))]
    assert len(once) >= 4 and all(section.count(line) == 1 for line in once), once


def _properties(path: Path) -> dict[str, str]:
    testcase = ET.parse(path).getroot().find(".//testcase")
    return {p.get("name"): p.get("value") for p in testcase.iter("property")}


def test_machine_failure_is_its_verdict(suite):
    result = _machine(suite, "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    section = _failure_section(lines)
    v = _replayed(section)
    assert v.clause == MACHINE_CLAUSE
    # the section is the verdict, to the character, then Hypothesis's program
    verdict = str(v).split("\n")
    assert section[:len(verdict)] == verdict
    assert section[0].startswith(f"[{MACHINE_CLAUSE}] ")
    assert section[1] == f"  clause {MACHINE_CLAUSE}: {CLAUSES[MACHINE_CLAUSE]}"
    assert section[len(verdict)] == ""
    assert section[len(verdict) + 1] == "Failing test case: <state machine>"
    assert "state.teardown()" in section
    assert not [line for line in section for frame in HARNESS if frame in line]
    out = result.stdout.str()
    for line in (section[1], next(x for x in section if x.startswith("replay: ")),
                 "Failing test case: <state machine>"):
        assert out.count(line) == 1, line
    # the short summary gives the violation's first line, nothing more
    summary = [line for line in lines if line.startswith("FAILED ")]
    assert len(summary) == 1 and f" - [{MACHINE_CLAUSE[:8]}" in summary[0]
    assert f"{summary[0].split(' - ', 1)[0]} - {section[0]}".startswith(
        summary[0].removesuffix("..."))
    props = _properties(suite.path / "junit.xml")
    assert props["pgconform_clause"] == MACHINE_CLAUSE
    assert props["pgconform_outcome"] == "failed"
    assert f"replay: python -m pgconform replay {props['pgconform_replay']}" in section
    readme = (ROOT / "README.md").read_text()
    documented = readme.split("\n## Interpreting a failure\n", 1)[1].split("\n## ", 1)[0]
    assert {name for name in props if name.startswith("pgconform_")} == set(
        re.findall(r"`(pgconform_[a-z]+)`", documented))


def test_machine_failure_is_printed_once_in_ci(suite, monkeypatch):
    """With CI set, pytest prints the crash message whole in the short summary and the ci profile
    used to add an @reproduce_failure blob nobody can apply: each line comes once."""
    monkeypatch.setenv("CI", "true")
    result = _machine(suite)
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    assert "pgconform: example database disabled by the Hypothesis profile" in lines  # ci loaded
    section = _failure_section(lines)
    assert section[0].startswith(f"[{MACHINE_CLAUSE}] ")
    assert not [line for line in section for frame in HARNESS if frame in line]
    _assert_printed_once(lines, section)
    assert "reproduce_failure" not in result.stdout.str()
    summary = [line for line in lines if line.startswith("FAILED ")]
    assert len(summary) == 1 and summary[0].endswith(section[0][len(f"[{MACHINE_CLAUSE}] "):])


def test_machine_failure_with_tb_long_has_the_traceback_after_the_verdict(suite):
    result = _machine(suite, "--tb=long")
    result.assert_outcomes(failed=1)
    section = _failure_section(result.stdout.lines)
    assert section[0].startswith(f"[{MACHINE_CLAUSE}] ")
    at = section.index("The harness's traceback (--tb=long):")
    assert section.index("Failing test case: <state machine>") < at
    traceback = "\n".join(section[at:])
    assert "hypothesis/stateful.py" in traceback and "pgconform/sim/machine.py" in traceback
    # the exception's message, in the traceback, is the verdict's first line only
    assert "E       (the verdict above)" in section
    out = result.stdout.str()
    assert out.count(f"  clause {MACHINE_CLAUSE}: ") == 1
    assert out.count("replay: python -m pgconform replay ") == 1


def test_machine_failure_with_tb_line_is_one_line(suite):
    result = _machine(suite, "--tb=line")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    at = lines.index(next(line for line in lines if re.match(r"^=+ FAILURES =+$", line)))
    assert lines[at + 1].startswith(f"test_conformance.py:1: [{MACHINE_CLAUSE}] ")
    assert re.match(r"^=+ pgconform conformance summary =+$", lines[at + 2])
    assert "stateful.py" not in result.stdout.str()


def test_sweep_failure_is_its_verdict_once_in_ci_under_xdist(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = _sweep(suite, "-n", "2", "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    section = _failure_section(lines)
    assert section[0].startswith(f"[{SWEEP_CLAUSE}] ")
    assert section[1] == f"  clause {SWEEP_CLAUSE}: {CLAUSES[SWEEP_CLAUSE]}"
    assert any(line.startswith("implementation: ") and "exhaustive sweep" in line
               for line in section)
    assert not [line for line in section for frame in HARNESS if frame in line]
    _assert_printed_once(lines, section)
    props = _properties(suite.path / "junit.xml")
    assert props["pgconform_clause"] == SWEEP_CLAUSE
    assert props["pgconform_outcome"] == "failed"
    failure = ET.parse(suite.path / "junit.xml").getroot().find(".//failure")
    assert failure.get("message") == section[0]
    assert failure.text.startswith(section[0] + "\n")


@pytest.mark.parametrize("style", ["native", "line"])
def test_sweep_failure_tb_styles(suite, style):
    result = _sweep(suite, f"--tb={style}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    if style == "native":
        section = _failure_section(result.stdout.lines)
        assert section[0].startswith(f"[{SWEEP_CLAUSE}] ")
        at = section.index("The harness's traceback (--tb=native):")
        assert "Traceback (most recent call last):" in section[at:]
        assert "pgconform/oracle/pagetable.py" in "\n".join(section[at:])
        assert section[-1] == "    (the verdict above)"
        assert out.count(f"  clause {SWEEP_CLAUSE}: ") == 1
    else:  # one line per failure: where, and the violation's first line
        assert re.search(rf"^test_exhaustive.py:\d+: \[{re.escape(SWEEP_CLAUSE)}\] ", out,
                         flags=re.MULTILINE)
        assert f"  clause {SWEEP_CLAUSE}: " not in out


def test_a_crash_of_the_harness_keeps_its_traceback(suite):
    """Only a verdict replaces pytest's traceback: anything else raised in a conformance item is
    pgconform's own bug, and its traceback is what to report."""
    suite.makepyfile(test_crash="""
        def test_crash(request):
            request.node.pgconform_item = ("x86_64", "sweep-shared")
            raise RuntimeError("the harness broke")
    """)
    result = _run(suite, "test_crash.py", "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)
    section = _failure_section(result.stdout.lines)
    assert any("raise RuntimeError" in line for line in section)
    assert "E       RuntimeError: the harness broke" in section
    props = _properties(suite.path / "junit.xml")
    assert props["pgconform_outcome"] == "errored" and "pgconform_clause" not in props


def test_verdict_text_of_distinct_failures():
    """Hypothesis's group of distinct failures: every verdict, numbered, each with its notes."""
    from pgconform.plugin.judging import _violations_in

    a, b = Violation("pt.leak", "one"), Violation("acct.rss", "two")
    a.add_note("Failing test case: a")
    group = ExceptionGroup("Hypothesis found 2 distinct failures.", [a, b])
    assert _violations_in(group) == [a, b]
    assert _violations_in(ExceptionGroup("mixed", [a, ValueError("x")])) is None
    text = verdict_text([a, b])
    assert text.startswith("distinct failure 1 of 2:\n\n[pt.leak] one\n")
    assert "\n\nFailing test case: a\n\ndistinct failure 2 of 2:\n\n[acct.rss] two\n" in text
    assert text.count("[acct.rss] two") == 1


def test_the_printed_program_names_the_operation_and_its_address():
    """Hypothesis's program speaks kernel: a start step prints as the operation it starts (the
    kind the run's swarm ran, the mm, the user virtual address in hex), not as the raw draws
    (``where=17``), and so do the operations the initialisation started (comment lines), while
    the replay string keeps the raw draws by the names it always had.
    (The reference, with one more invariant that fails once the start rule has run.)"""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import invariant, run_state_machine_as_test

    from pgconform.harness.machines import make_machine
    from pgconform.harness.operations import OP_KINDS, vaddr
    from pgconform.reference import IMPLEMENTATION

    class Started(make_machine(IMPLEMENTATION, "x86_64", scenario="shared")):
        @invariant()
        def no_start_rule_ran(self):
            assert not any(name == "start" for name, _ in self.log), "a start rule ran"

    with pytest.raises(AssertionError, match="a start rule ran") as excinfo:
        run_state_machine_as_test(Started, settings=settings(
            max_examples=100, database=None, derandomize=True, deadline=None,
            stateful_step_count=5, suppress_health_check=list(HealthCheck)))
    program = "\n".join(getattr(excinfo.value, "__notes__", [])).splitlines()
    starts = [line for line in program if line.startswith("state.start(")]
    assert len(starts) == 1, program
    printed = re.fullmatch(r"state\.start\(op='(\w+)', mm=(\d), addr=(0x[0-9a-f]+), arg=(\d+)\)",
                           starts[0])
    assert printed and printed.group(1) in OP_KINDS, starts[0]
    # the initialisation step is followed by the operations it started, in the same terms
    after_init = program[next(i for i, line in enumerate(program)
                              if line.startswith("state.init_world(")) + 1:]
    assert re.fullmatch(r"# CPU0: op='\w+', mm=\d, addr=0x[0-9a-f]+, arg=\d+",
                        next(line for line in after_init if not line.startswith(" "))), program
    # the operation the minimal run started, run again from its replay string's steps
    run = replay.decode(replay.encode(runs.latest_run()))
    (step,) = [kwargs for name, kwargs in run.steps if name == "start"]
    assert set(step) == {"kind", "mm", "where", "arg"}
    machine, _ = replay.run_steps(Started, run.steps[:[n for n, _ in run.steps].index(
        "start") + 1])
    _, op = machine.started[-1]
    assert printed.groups() == (op.kind, str(op.mm % len(machine.k.mms)), vaddr(op.addr),
                                str(op.arg))
