"""The watchdog (pgconform/sim/watchdog.py): a hang verdict depends on the implementation, not on
the machine.  It measures the process's own CPU time, so a loaded machine or a stopped process
is no hang; a hang is a verdict only when a replay hangs again at the same place; it fires on a
real hang in the machines and in the sweep; a bad ``PGCONFORM_HANG_S`` is a usage error.

No test here asserts wall-clock time; every subprocess runs under a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgconform.harness.sweep import sweep
from pgconform.implementation import coerce_implementation
from pgconform.sim import watchdog
from pgconform.sim.errors import Hang
from tests.selftest.helpers import PLUGIN_ARGS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # the miniatures package

#: the plugin, without the cache and xdist
PLUGIN_NO_CACHE_NO_XDIST = (*PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:xdist")
CONFORMANCE = (ROOT / "tests" / "conformance" / "test_conformance.py").read_text()
EXHAUSTIVE = (ROOT / "tests" / "conformance" / "test_exhaustive.py").read_text()
#: this checkout's pgconform (not an installed one) and the miniatures, in subprocesses
_PYTHONPATH = os.pathsep.join([str(ROOT), str(HERE)])
#: a subprocess that has not finished by then is killed (and the test fails): a hung harness
TIMEOUT_S = 900


def _miniature(name):
    import importlib

    module = importlib.import_module(f"miniatures.{name}")
    return coerce_implementation(module.IMPL, f"miniatures.{name}:IMPL")


def _spin_cpu(seconds):
    """Use ``seconds`` of this process's CPU time."""
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


# --- the limit: CPU time, parsed in one place -------------------------------------------------


def test_the_limit_is_parsed_in_one_place(monkeypatch):
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", None)
    assert watchdog.first_timeout_s({}) == watchdog.DEFAULT_TIMEOUT_S
    assert watchdog.first_timeout_s({"PGCONFORM_HANG_S": " "}) == watchdog.DEFAULT_TIMEOUT_S
    assert watchdog.first_timeout_s({"PGCONFORM_HANG_S": "2.5"}) == 2.5
    for bad in ("abc", "0", "-1", "nan", "inf"):
        with pytest.raises(watchdog.HangLimitError, match="PGCONFORM_HANG_S"):
            watchdog.first_timeout_s({"PGCONFORM_HANG_S": bad})


def test_time_the_process_does_not_run_is_no_hang():
    """Sleeping (as a stopped or starved process does) uses no CPU time: no hang."""
    with watchdog.watchdog(0.05):
        time.sleep(0.3)
    with pytest.raises(Hang), watchdog.watchdog(0.05):
        _spin_cpu(60)


def test_the_short_time_applies_only_in_the_function_that_hung():
    """After a hang, the shorter time fires only while the function that hung runs: a slow
    stretch elsewhere (a full garbage collection) runs on up to the full time."""

    def hung():
        _spin_cpu(60)

    with watchdog.watchdog(0.05, only_in=hung.__code__, full=30):
        _spin_cpu(0.3)  # elsewhere: six times the short time, no hang
    with pytest.raises(Hang), watchdog.watchdog(0.05, only_in=hung.__code__, full=30):
        hung()
    with pytest.raises(Hang), watchdog.watchdog(0.05, only_in=hung.__code__, full=0.2):
        _spin_cpu(60)  # elsewhere, past the full time


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_bad_hang_limit_is_a_usage_error(run_pgconform, pgconform_pytester, monkeypatch, value):
    pgconform_pytester.makepyfile(test_conformance=CONFORMANCE)
    monkeypatch.setenv("PGCONFORM_HANG_S", value)
    result = run_pgconform("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = [line for line in result.stderr.lines if line.strip()]
    assert len(err) == 1, err
    assert f"PGCONFORM_HANG_S={value!r}" in err[0] and "positive number of seconds" in err[0]


# --- the reference on a loaded machine, stopped in the middle of a rule ------------------------


STOPPING_CONFTEST = """
import os
import signal

from hypothesis import HealthCheck, settings

from pgconform.sim.machine import Machine

settings.register_profile("tiny", max_examples=40, deadline=None, database=None,
                          derandomize=True, suppress_health_check=list(HealthCheck))
settings.load_profile("tiny")

_advance = Machine._advance
CALLS = [0]


def _advance_then_stop(self, *args, **kwargs):
    # in the middle of a rule, with the watchdog armed: the process stops itself (as SIGSTOP, a
    # debugger or a laptop's sleep would); the test sends SIGCONT well past the watchdog's time
    CALLS[0] += 1
    if CALLS[0] == 300:
        os.kill(os.getpid(), signal.SIGSTOP)
    return _advance(self, *args, **kwargs)


Machine._advance = _advance_then_stop
"""


def test_reference_passes_on_a_loaded_machine_stopped_past_the_limit(pgconform_pytester):
    """The reference passes with a tiny watchdog time (0.5 s) while busy processes load every
    core and the run is stopped, in the middle of a rule, for three times that time: neither
    spends the run's CPU time.  (Measured in wall-clock time, the stop alone was a hang.)"""
    pgconform_pytester.makepyfile(test_conformance=CONFORMANCE)
    pgconform_pytester.makeconftest(STOPPING_CONFTEST)
    env = {**os.environ, "PGCONFORM_HANG_S": "0.5", "PYTHONPATH": _PYTHONPATH}
    env.pop("PGCONFORM_IMPL", None)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    out = pgconform_pytester.path / "out.txt"
    try:
        with out.open("w") as f:
            child = subprocess.Popen(
                [sys.executable, "-m", "pytest", *PLUGIN_NO_CACHE_NO_XDIST, "-q", "-rs", "--arch",
                 "x86_64", "-k", "shared and not uffd", "--impl", "reference",
                 "test_conformance.py"],
                cwd=pgconform_pytester.path, env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            stopped = False
            for _ in range(TIMEOUT_S * 10):  # until the child stops itself (or ends)
                pid, status = os.waitpid(child.pid, os.WUNTRACED | os.WNOHANG)
                if pid:
                    assert os.WIFSTOPPED(status), f"the run ended without stopping: {status}"
                    stopped = True
                    break
                time.sleep(0.1)
            assert stopped, "the run never stopped"
            time.sleep(1.5)  # three times the watchdog's time, stopped
            os.kill(child.pid, signal.SIGCONT)
            rc = child.wait(timeout=TIMEOUT_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    finally:
        for p in busy:
            p.kill()
            p.wait()
    text = out.read_text()
    assert rc == 0, text
    assert "1 passed" in text and "impl.hang" not in text, text


# --- a real hang: impl.hang in the machines and the sweep; one that does not reproduce ----------


@pytest.fixture
def suite(pgconform_pytester, monkeypatch):
    pgconform_pytester.makepyfile(test_conformance=CONFORMANCE, test_exhaustive=EXHAUSTIVE)
    monkeypatch.setenv("PYTHONPATH", _PYTHONPATH)
    monkeypatch.setenv("PGCONFORM_HANG_S", "0.5")
    return pgconform_pytester


def _run(pytester, *args):
    return pytester.runpytest_subprocess(*PLUGIN_NO_CACHE_NO_XDIST, "--hypothesis-seed=0", "-rs",
                                         "--arch", "x86_64", "-k", "shared and not uffd", *args,
                                         timeout=TIMEOUT_S)


def test_machine_hang_is_confirmed_and_a_verdict(suite):
    result = _run(suite, "--impl", "miniatures.hangs:IMPL", "test_conformance.py",
                  "--pgconform-report", "report.json")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "[impl.hang]" in out
    assert "the hang, confirmed when replayed" in out and "more than 0.5 s of CPU time" in out
    item = json.loads((suite.path / "report.json").read_text())["items"][0]
    assert (item["outcome"], item["clause"]) == ("errored", "impl.hang")
    assert "__pte_offset_map (hangs.py:" in item["message"]


def test_sweep_hang_is_a_verdict(suite):
    result = _run(suite, "--impl", "miniatures.hangs:IMPL", "test_exhaustive.py")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "[impl.hang]" in out and "__pte_offset_map (hangs.py:" in out


def test_sweep_hang_in_process(monkeypatch):
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", 0.2)
    r = sweep(_miniature("hangs"), "x86_64", worlds=("shared",), bound=0)
    assert r.violation is not None and r.violation.clause == "impl.hang"
    assert r.violation.outcome == "errored" and r.schedules == 1


def test_machine_hang_that_does_not_reproduce_is_not_judged(suite):
    """A hang seen once and not again (replayed with the full time) is neither a failure nor
    impl.nondeterministic: the item is skipped, saying so."""
    result = _run(suite, "--impl", "miniatures.hangs_once:IMPL", "test_conformance.py",
                  "--pgconform-report", "report.json")
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "a hang was seen" in out and "did not reproduce" in out
    assert "impl.nondeterministic" not in out
    item = json.loads((suite.path / "report.json").read_text())["items"][0]
    assert item["outcome"] == "skipped" and item["clause"] is None


def test_sweep_hang_that_does_not_reproduce_is_run_again(monkeypatch):
    """In the sweep, a schedule that hangs once and not when run again is judged by its re-run
    (and counted): no verdict."""
    monkeypatch.setattr(watchdog, "FIRST_TIMEOUT_S", 0.2)
    monkeypatch.setattr("miniatures.hangs_once.CALLS", [0])
    r = sweep(_miniature("hangs_once"), "x86_64", worlds=("shared",), bound=0)
    assert r.violation is None and r.unconfirmed_hangs == 1 and r.complete


def test_bad_hang_limit_is_a_usage_error_of_the_command_line(monkeypatch, capsys):
    from pgconform.__main__ import main

    monkeypatch.setenv("PGCONFORM_HANG_S", "abc")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PGCONFORM_HANG_S='abc'" in err
