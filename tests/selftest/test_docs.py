"""The README stays true to the code: its sections, clause table, option table, profiles and
worked example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from pgconform.versions import VERSIONS

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_clause():
    from pgconform.oracle.clauses import CLAUSES

    missing = [c for c in CLAUSES if f"`{c}`" not in README]
    assert not missing, f"README's clause table lacks {missing}"


def test_readme_sections_in_order():
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert sections == ["Quickstart", "Selecting the implementation", "What is covered",
                        "Model limits", "Interpreting a failure", "Judging your own implementation",
                        "CI", "Configuration"]


def _help_options() -> list[str]:
    """The options of the pgconform group in ``pytest --help``."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    group = out.split("pgconform: the implementation under test:", 1)[1]
    group = re.split(r"\n\S", group, maxsplit=1)[0]
    return re.findall(r"^  (--[a-z-]+)", group, flags=re.MULTILINE)


def test_readme_option_table_matches_pytest_help():
    section = README.split("\n## Configuration\n", 1)[1]
    documented = re.findall(r"^\| `(--[a-z-]+)", section, flags=re.MULTILINE)
    assert documented == _help_options()


def test_readme_profiles_match_conftest():
    import conftest  # noqa: F401 - registers the profiles

    for name in ("dev", "ci", "nightly"):
        n = settings.get_profile(name).max_examples
        assert re.search(rf"^\| `{name}` \|[^|]*\b{n} examples", README, flags=re.MULTILINE), name


def test_worked_example_gets_the_verdict_the_readme_shows():
    """examples/myretract.py: IMPL fails a stored schedule (found by the conformance machines)
    with the clause the README shows, FIXED passes that schedule and a random run."""
    from hypothesis import HealthCheck, Phase
    from hypothesis.stateful import run_state_machine_as_test

    from pgconform.harness import replay
    from pgconform.harness.machines import make_machine
    from pgconform.implementation import coerce_implementation

    sys.path.insert(0, str(ROOT))
    import examples.myretract as example

    run = replay.decode((ROOT / "tests" / "selftest" / "data" / "example_replay.txt").read_text())
    assert run.spec == "examples.myretract:IMPL"
    _, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is not None and v.clause == "pt.reuse-before-gp"
    assert "[pt.reuse-before-gp]" in README.split("## Judging your own", 1)[1]
    _, clean = replay.run_steps(replay.machine_for(run, "examples.myretract:FIXED"), run.steps)
    assert clean is None
    fixed = coerce_implementation(example.FIXED, "examples.myretract:FIXED")
    run_state_machine_as_test(make_machine(fixed, "x86_64", scenario="shared"), settings=settings(
        max_examples=300, database=None, deadline=None, stateful_step_count=20,
        suppress_health_check=list(HealthCheck), phases=[Phase.generate]))


def _shown_matrix() -> list[str]:
    shown = README.split("<!-- version-matrix -->\n", 1)[1].split("<!-- /version-matrix -->", 1)[0]
    return shown.splitlines()


def test_readme_version_matrix_has_a_row_per_version():
    """The README's version matrix has the header ``python -m pgconform matrix`` prints and one
    row per registered version, in order (each row is checked below, one version per item so
    that xdist spreads them)."""
    from pgconform.kernel.config import ARCHES

    lines = _shown_matrix()
    assert lines[:2] == ["| version | " + " | ".join(ARCHES) + " |", "|---|" + "---|" * len(ARCHES)]
    assert [line.split(" | ", 1)[0].removeprefix("| ") for line in lines[2:]] == list(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_readme_version_matrix_is_the_commands_output(version):
    """The README's row of ``version`` is what ``python -m pgconform matrix`` (bound 0) prints."""
    from pgconform.tools import matrix

    row = matrix.to_markdown(matrix.version_matrix(versions=(version,), bound=0)).splitlines()[2]
    assert row in _shown_matrix()
