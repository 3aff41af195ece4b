"""The soak command (pgconform/tools/soak.py): its figures add up, a mutant's violations are listed
and fail it, and bad arguments are usage errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgconform.kernel.arch import ARCHES
from pgconform.tools.soak import soak, to_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_soaks_clean_and_the_figures_add_up():
    data = soak("reference", ["x86_64"], runs=30, bound=0, jobs=1, log=lambda s: None)
    a = data["arches"]["x86_64"]
    assert a["machine_runs"] >= 30
    assert a["sweep_schedules"] >= a["sweep_pairs"] > 0  # bound 0: one schedule per pair
    assert a["violations"] == []
    assert "| x86_64 | " in to_markdown(data)


def test_a_mutant_fails_the_soak_with_its_clause_and_replay():
    data = soak("zoo.retract_pte_free_immediate", ["x86_64"], runs=30, bound=1, jobs=1,
                log=lambda s: None)
    found = data["arches"]["x86_64"]["violations"]
    assert found
    assert {v["clause"] for v in found} <= {"pt.reuse-before-gp", "pt.use-after-free"}
    assert all(v["replay"].startswith("pgc") for v in found)


@pytest.mark.parametrize("args, says", [
    (["--arch", "x86-64"], "unknown --arch x86-64"),
    (["--runs", "0"], "--runs and --jobs must be at least 1"),
    (["--impl", "nosuch"], "nosuch"),
])
def test_bad_arguments_are_usage_errors(args, says):
    r = subprocess.run([sys.executable, "-m", "pgconform", "soak", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert says in r.stderr
    assert "Traceback" not in r.stderr


def test_the_committed_soak_result():
    """bench/soak.json, written by ``tox -e soak`` and committed: the reference judged at 10^5
    machine runs or more on every architecture, plus the whole sweep (bound 1 or more) on each,
    with no violation; bench/soak.md is its rendering, and the README quotes its time."""
    data = json.loads((ROOT / "bench" / "soak.json").read_text())
    assert data["implementation"] == "reference"
    assert data["sweep_bound"] >= 1 and data["runs_per_arch"] >= 100_000
    assert set(data["arches"]) == set(ARCHES)
    for arch, a in data["arches"].items():
        assert a["machine_runs"] >= 100_000, arch
        assert a["sweep_complete"] and a["sweep_schedules"] >= a["sweep_pairs"] > 0, arch
        assert a["violations"] == [], arch
    assert (ROOT / "bench" / "soak.md").read_text() == to_markdown(data)
    readme = (ROOT / "README.md").read_text()
    assert f"{round(data['wall_s'] / 60)} minutes" in readme and "bench/soak.md" in readme
