"""python -m pgconform userrun: the zoo judged by the conformance command a user types."""

import subprocess
import sys

from pgconform.tools.userrun import judge, to_markdown


def test_a_mutant_is_judged_by_the_users_command():
    """The run a user types, in a copy of the suite with no stored examples, stops at the first
    failure and names its item and clause; the reference is not caught."""
    r = judge("zoo.retract_pte_free_immediate", workers=1, timeout=600, profile=None,
              arches=("x86_64",))
    assert r["caught"] and r["expected"], r
    assert r["clause"] in ("pt.reuse-before-gp", "pt.use-after-free")
    assert r["item"].startswith(("test_conformance.py::", "test_exhaustive.py::"))
    data = {"date": "2026-12-03T00:00:00", "cpus": 2, "python": "3.11",
            "config": {"workers": 1, "timeout": 600.0, "profile": None},
            "mutants": {"zoo.retract_pte_free_immediate": r,
                        "zoo.other": {"caught": False, "s": 600.0, "why": "not caught"}}}
    md = to_markdown(data)
    assert "| zoo.retract_pte_free_immediate |  | yes |" in md and "| zoo.other |  | NO |" in md
    assert "1 of 2 caught" in md


def test_bad_arguments_are_usage_errors():
    for args, says in ((["--mutants", "nosuch"], "not zoo mutants: nosuch"),
                       (["--mutants", ","], "(none given)"),
                       (["--workers", "0"], "--workers must be at least 1")):
        r = subprocess.run([sys.executable, "-m", "pgconform", "userrun", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, args
        assert says in r.stderr and "Traceback" not in r.stderr, r.stderr
