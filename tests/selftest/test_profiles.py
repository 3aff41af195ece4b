"""pgconform's Hypothesis profiles (:mod:`pgconform.harness.profiles`): each one the README
documents loads, by ``HYPOTHESIS_PROFILE`` through the root conftest.py and by
``--hypothesis-profile`` through the plugin alone (as from an installed wheel), in a pytest
subprocess; a name that is no profile is a usage error, not a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgconform.harness import profiles
from tests.selftest.helpers import PLUGIN_ARGS

ROOT = Path(__file__).resolve().parents[2]

SHOW_PROFILE = """
from hypothesis import settings


def test_profile():
    print("profile:", settings.get_current_profile_name(), settings.default.max_examples)
"""


def documented_profiles() -> list[str]:
    """The profile names of the README's table of profiles."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("Hypothesis profiles are defined", 1)[1].split("\n\n", 2)[1]
    return re.findall(r"^\| `([a-z]+)` \|", table, re.M)


def test_the_readme_documents_every_profile():
    assert documented_profiles() == list(profiles.NAMES)


@pytest.fixture
def suite(pgconform_pytester, monkeypatch):
    for var in ("CI", "BUILD_NUMBER", "HYPOTHESIS_PROFILE", profiles.BENCH_EXAMPLES_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's pgconform
    pgconform_pytester.makepyfile(test_show=SHOW_PROFILE)
    return pgconform_pytester


def _shown(result) -> str:
    (line,) = [ln for ln in result.stdout.lines if "profile: " in ln]
    return line[line.index("profile: "):]


@pytest.mark.parametrize("name", documented_profiles())
def test_each_profile_loads_from_the_environment(suite, monkeypatch, name):
    suite.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    monkeypatch.setenv("HYPOTHESIS_PROFILE", name)
    result = suite.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-s", timeout=120)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    examples = {"dev": 2000, "ci": 500, "nightly": 10000, "bench": 200}[name]
    assert _shown(result) == f"profile: {name} {examples}"


@pytest.mark.parametrize("name", documented_profiles())
def test_each_profile_loads_by_option_without_the_repository_conftest(suite, name):
    """No root conftest.py (as when pgconform is installed from a wheel): the plugin registers
    the profile before Hypothesis loads it."""
    result = suite.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-s",
                                        "--hypothesis-profile", name, timeout=120)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert _shown(result).startswith(f"profile: {name} ")


def test_bench_examples_from_the_environment(suite, monkeypatch):
    suite.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "bench")
    monkeypatch.setenv(profiles.BENCH_EXAMPLES_ENV, "17")
    result = suite.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-s", timeout=120)
    assert _shown(result) == "profile: bench 17"


@pytest.mark.parametrize(("env", "message"), [
    ({"HYPOTHESIS_PROFILE": "nosuch"}, "HYPOTHESIS_PROFILE='nosuch' is not a Hypothesis profile"),
    ({"HYPOTHESIS_PROFILE": "bench", profiles.BENCH_EXAMPLES_ENV: "many"},
     "PGCONFORM_BENCH_EXAMPLES='many': give a whole number"),
])
def test_a_bad_profile_is_a_usage_error(suite, monkeypatch, env, message):
    suite.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    result = suite.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_which_profile_the_environment_names():
    assert profiles.name_from_environment({}) == "dev"
    assert profiles.name_from_environment({"CI": "true"}) == "ci"
    assert profiles.name_from_environment({"CI": "0"}) == "dev"
    both = {"CI": "1", "HYPOTHESIS_PROFILE": " nightly "}
    assert profiles.name_from_environment(both) == "nightly"


def test_the_option_wins_over_the_environment(suite, monkeypatch):
    suite.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    result = suite.runpytest_subprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-s",
                                        "--hypothesis-profile", "bench", timeout=120)
    assert _shown(result) == "profile: bench 200"


def test_bench_runs_the_packaged_conformance_module(monkeypatch):
    """``python -m pgconform bench``'s xdist measure runs the conformance module of the package
    (``--pyargs``) in an empty directory with the ``bench`` profile: no checkout needed."""
    from pgconform.tools import bench

    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    r = bench.bench_xdist(1, ["x86_64"], 3)
    assert "error" not in r, r.get("error")
    assert r["items"] == 3 and r["examples"] == 9 and r["examples_per_s"] > 0
