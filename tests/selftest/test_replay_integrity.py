"""Verdict integrity: every failure, of a conformance machine or of the exhaustive sweep, carries a
replay string that ``python -m pgconform replay`` runs again; a string that no longer applies is
refused (exit 2), never reported as passing; nondeterminism and malformed effects get their named
verdicts (``impl.nondeterministic``, ``impl.bad-yield``) on the machines and in the sweep, never a
bare Flaky, a traceback or an INTERNALERROR.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from pgconform.__main__ import main as cli
from pgconform.harness import replay, runs
from pgconform.harness.machines import make_machine
from pgconform.harness.scenario import Op
from pgconform.harness.sweep import sweep
from pgconform.implementation import coerce_implementation
from pgconform.report.trace import focus_tokens, render
from pgconform.sim.effects import Atomic, Lock, Unlock
from pgconform.sim.errors import Violation
from pgconform.sim.machine import Machine
from pgconform.sim.policies.exhaustive import explore
from tests.selftest.helpers import run_suite

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # the miniatures package

from miniatures import VERDICTS  # noqa: E402 - on the path just above

CORPUS = json.loads((ROOT / "pgconform" / "data" / "history_schedules.json").read_text())
#: the miniatures whose verdict is about the code, judged in the sweep too
SWEPT = ("bad_yield", "bad_lock", "bad_unlock", "raises", "nondeterministic", "flaky_draws")


def _miniature(name):
    module = importlib.import_module(f"miniatures.{name}")
    return coerce_implementation(module.IMPL, f"miniatures.{name}:IMPL")


def _encode_doc(doc: dict, prefix: str = replay.PREFIX) -> str:
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return prefix + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def _doc(string: str) -> dict:
    body = string[len(replay.PREFIX):]
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


# --- malformed effects ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad_lock", "bad_unlock"])
def test_malformed_effect_is_bad_yield_on_the_machines(name):
    cls = make_machine(_miniature(name), "x86_64", scenario="shared",
                       spec=f"miniatures.{name}:IMPL")
    with pytest.raises(Violation) as info:  # one verdict, not a group of distinct AttributeErrors
        run_state_machine_as_test(cls, settings=settings(
            max_examples=20, database=None, deadline=None, stateful_step_count=10,
            derandomize=True, suppress_health_check=list(HealthCheck), phases=[Phase.generate]))
    v = info.value
    assert (v.clause, v.outcome) == ("impl.bad-yield", "errored")
    assert "a malformed effect: its lock is" in v.message
    assert "Spinlock | SleepLock" in v.message
    assert "***" in v.diagram  # the diagram renders the malformed effect (by its fields)


def _task_yielding(m: Machine, eff):
    def model_code():
        yield eff

    return m.spawn("CPU0", model_code(), "model_code")


def test_malformed_effect_of_the_model_with_the_reference_alone_is_a_pgconform_bug():
    m = Machine()
    m.implementation_code = set()  # the reference alone: nothing is the implementation's
    t = _task_yielding(m, Unlock(None))
    with pytest.raises(AttributeError):
        m.step(t)
    m = Machine()
    m.implementation_code = set()
    with pytest.raises(AttributeError):
        _task_yielding(m, Lock("x"))


def test_malformed_effect_yielded_by_the_model_is_not_the_implementations_yield():
    """An implementation is plugged in, but the model's own code yielded the effect (built of a
    value the implementation stored): impl.bad-value, as before, not impl.bad-yield."""
    m = Machine()
    m.implementation_code = {(lambda: None).__code__}  # code that is not on this task's path
    t = _task_yielding(m, Unlock(None))
    with pytest.raises(Violation) as info:
        m.step(t)
    assert info.value.clause == "impl.bad-value"


def test_focus_tokens_survives_a_start_row_marked_failed():
    m = Machine()
    t = _task_yielding(m, Atomic("x", lambda m, t: 1))
    m.trace.append((t, ("gone",), None, "!"))
    v = Violation("pt.leak", "table@3 leaked", task=t)
    assert "table@3" in focus_tokens(v, m.trace)
    assert "[pt.leak]" in render(m, v)


# --- nondeterminism -------------------------------------------------------------------------------


def test_flaky_draws_without_a_failure_are_replayed_from_the_last_run():
    """A counter that changes which rules can run makes Hypothesis raise a bare
    FlakyStrategyDefinition before any failure: the last run's log replays and shows it."""
    impl = _miniature("flaky_draws")
    importlib.import_module("miniatures.flaky_draws").CALLS[0] = 0  # whatever ran before here
    cls = make_machine(impl, "x86_64", scenario="shared", spec="miniatures.flaky_draws:IMPL")
    runs.last_failure = runs.last_machine = None
    # whether Hypothesis meets the changed draws within its examples depends on its search
    # (and the heap it runs in), not on the miniature: a few seeds, one of which must meet them
    for attempt in range(8):
        try:
            run_state_machine_as_test(seed(attempt)(cls), settings=settings(
                max_examples=200, database=None, deadline=None, stateful_step_count=20,
                derandomize=False, suppress_health_check=list(HealthCheck)))
        except Flaky:
            break
    else:
        pytest.fail("Hypothesis never met the miniature's changed draws in 8 seeds")
    assert runs.last_failure is None
    run = runs.latest_run()
    assert run is not None and run.spec == "miniatures.flaky_draws:IMPL"
    odd = replay.check_determinism(run)
    assert odd is not None and (odd.clause, odd.outcome) == ("impl.nondeterministic", "errored")
    assert "part at effect" in odd.message and "synchronize_rcu()" in odd.message


def test_a_prefix_that_does_not_replay_is_nondeterminism_in_the_explorer():
    """The explorer re-runs prefixes from a fresh world; a task that ends earlier the second time
    leaves a decision naming a task that cannot run: impl.nondeterministic, with where the runs
    part, not an INTERNALERROR."""
    runs = [0]

    def setup():
        runs[0] += 1
        n = 3 if runs[0] == 1 else 1  # hidden state: the first run's task is longer
        m = Machine()

        def worker(k):
            for _ in range(k):
                yield Atomic("tick", lambda m, t: None)

        tasks = [m.spawn("CPU0", worker(n), "a"), m.spawn("CPU1", worker(2), "b")]
        return m, tasks, lambda: None

    r = explore(setup, bound=1)
    assert r.violation is not None
    assert (r.violation.clause, r.violation.outcome) == ("impl.nondeterministic", "errored")
    assert "could run there" in r.violation.message or "ended" in r.violation.message
    assert "part at effect" in r.violation.message
    assert "[impl.nondeterministic]" in str(r.violation)


# --- the sweep: its verdicts carry replay strings that replay -------------------------------------


@pytest.mark.parametrize("name", SWEPT)
def test_sweep_verdict_of_a_miniature_and_its_replay(name, capsys):
    clauses, outcome = VERDICTS.get(name, (("impl.nondeterministic",), "errored"))
    spec = f"miniatures.{name}:IMPL"
    r = sweep(_miniature(name), "x86_64", worlds=("shared",), bound=1, spec=spec)
    v = r.violation
    assert v is not None, f"the sweep passes {name}"
    assert (v.clause, v.outcome) in {(c, outcome) for c in clauses}
    assert v.context[0] == f"implementation: {spec} on x86_64, exhaustive sweep ({outcome}: " \
                           f"{v.clause})"
    assert v.context[2].startswith("replay: python -m pgconform replay pgc1:")
    string = v.context[2].split()[-1]
    run = replay.decode(string)
    assert isinstance(run, replay.SweepRun) and run.spec == spec and run.world == "shared"
    assert runs.last_failure is not None and runs.last_failure.string == string
    if v.clause == "impl.nondeterministic":
        assert "part at effect" in v.message
        return  # its replay gives whatever the implementation's hidden state says
    code = cli(["replay", string])
    out = capsys.readouterr().out
    assert code == 1
    assert f"[{v.clause}]" in out and "***" in out  # the verdict, with its race diagram
    assert f"replay: python -m pgconform replay {string}" in out


def test_sweep_failure_of_a_mutant_replays_and_the_reference_passes_it(capsys):
    spec = "zoo.retract_no_pmd_notifier"
    from pgconform.registry import resolve

    r = sweep(resolve(spec), "x86_64", worlds=("shared",), bound=1, spec=spec)
    assert r.violation is not None and r.violation.clause == "mmu.pmd-clear-unnotified"
    string = r.violation.context[2].split()[-1]
    assert cli(["replay", string]) == 1
    assert "[mmu.pmd-clear-unnotified]" in capsys.readouterr().out
    assert cli(["replay", string, "--impl", "reference"]) == 0
    assert "no violation" in capsys.readouterr().out
    assert cli(["replay", string, "--check-determinism"]) == 1
    run = replay.decode(string)
    assert replay.check_determinism(run, expected="mmu.pmd-clear-unnotified") is None
    # found with a known-failures file, the schedule is checked with it (counted, not raised)
    known = {"mmu.pmd-clear-unnotified": "not ported yet"}
    assert replay.replay_run(run, tolerated=known).violation is None
    assert replay.check_determinism(run, tolerated=known) is None


# --- stale strings: exit 2, never "passes" ------------------------------------------------------


def _sweep_string(decisions, world="shared") -> str:
    return replay.encode(replay.SweepRun("reference", "x86_64", world, Op("khugepaged", 0, 4, 1),
                                         Op("read", 0, 5, 1), tuple(decisions)))


def test_stored_strings_still_decode_as_the_current_format():
    for string in CORPUS.values():
        assert isinstance(replay.decode(string), replay.Run)
        assert "model" not in _doc(string)  # model 1: the field is written from model 2 on
    assert replay.encode(replay.decode(CORPUS["zoo.retract_no_pmd_notifier"])) == \
        CORPUS["zoo.retract_no_pmd_notifier"]


def test_stale_strings_are_refused_with_exit_2(capsys):
    string = CORPUS["zoo.retract_no_pmd_notifier"]
    doc = _doc(string)
    stale = {
        "another format": "pgc9:" + string[len(replay.PREFIX):],
        "another model": _encode_doc({**doc, "model": replay.MODEL + 1}),
        # a callback run before any world exists: its precondition cannot hold there
        "a step that cannot run": _encode_doc({**doc, "steps": [["rcu_callback", {"pick": 0}],
                                                                *doc["steps"]]}),
        "no such rule": _encode_doc({**doc, "steps": [*doc["steps"][:1], ["frobnicate", {}]]}),
        "arguments not taken": _encode_doc({**doc, "steps": [*doc["steps"][:1],
                                                             ["advance", {"who": 1}]]}),
        "a task that cannot run": _sweep_string([5]),
        "more decisions than the run": _sweep_string([0] * 5000),
        "an unknown world": _sweep_string([], world="nowhere"),
        "an operation the kernel lacks": replay.encode(replay.SweepRun(
            "reference", "x86_64", "shared", Op("khugepaged", 0, 4, 1), Op("frob", 0, 5, 1), ())),
    }
    for why, s in stale.items():
        assert cli(["replay", s]) == 2, why
        captured = capsys.readouterr()
        assert "no violation" not in captured.out, why
        assert "error:" in captured.err, why
    assert cli(["replay", stale["another model"]]) == 2
    assert f"model version {replay.MODEL + 1}" in capsys.readouterr().err
    assert cli(["replay", stale["a task that cannot run"]]) == 2
    assert "runs task 5, but only" in capsys.readouterr().err
    assert cli(["replay", stale["a step that cannot run"]]) == 2
    assert "step 1 (rcu_callback): its precondition does not hold" in capsys.readouterr().err


def test_a_step_skipped_for_another_implementation_is_a_note_not_an_error(capsys):
    doc = _doc(CORPUS["zoo.retract_no_pmd_notifier"])
    s = _encode_doc({**doc, "steps": [["rcu_callback", {"pick": 0}], *doc["steps"]]})
    assert cli(["replay", s, "--impl", "reference"]) == 0
    out = capsys.readouterr().out
    assert "note: judging reference, not the recorded zoo.retract_no_pmd_notifier" in out


# --- through pytest: the report has a replay string for every failure, no INTERNALERROR ----------


CONFORMANCE = (ROOT / "tests" / "conformance" / "test_conformance.py").read_text()
EXHAUSTIVE = (ROOT / "tests" / "conformance" / "test_exhaustive.py").read_text()


@pytest.fixture
def suite(pgconform_pytester, monkeypatch):
    pgconform_pytester.makepyfile(test_conformance=CONFORMANCE, test_exhaustive=EXHAUSTIVE)
    # derandomized, so that the flaky miniature's draws part the same way in every run
    pgconform_pytester.makeconftest(
        "from hypothesis import settings\n"
        "settings.register_profile('pinned', max_examples=200, derandomize=True, deadline=None)\n"
        "settings.load_profile('pinned')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT)]))
    monkeypatch.setenv("PGCONFORM_HANG_S", "0.5")
    return pgconform_pytester


def _run(pytester, *args):
    return run_suite(pytester, "--arch", "x86_64", "--pgconform-report", "report.json", *args)


@pytest.mark.parametrize(("name", "clause"), [("flaky_draws", "impl.nondeterministic"),
                                              ("bad_lock", "impl.bad-yield"),
                                              ("bad_unlock", "impl.bad-yield")])
def test_machines_and_sweep_through_pytest(suite, name, clause, monkeypatch):
    # as in CI, where pytest's summary line carries the whole message of a failure
    monkeypatch.setenv("CI", "true")
    result = _run(suite, "--impl", f"miniatures.{name}:IMPL", "-k", "shared and not uffd")
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert "FlakyStrategyDefinition" not in out.split("short test summary")[-1]
    assert "distinct failures" not in out
    result.assert_outcomes(failed=2)
    doc = json.loads((suite.path / "report.json").read_text())
    items = {i["nodeid"].split("::")[0]: i for i in doc["items"]}
    assert set(items) == {"test_conformance.py", "test_exhaustive.py"}
    for item in items.values():
        assert (item["clause"], item["outcome"]) == (clause, "errored"), item
        assert item["replay"].startswith("pgc1:"), item
        assert replay.decode(item["replay"]).spec == f"miniatures.{name}:IMPL"
    assert isinstance(replay.decode(items["test_exhaustive.py"]["replay"]), replay.SweepRun)
