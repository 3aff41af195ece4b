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
                        "CI", "Where things are", "Configuration"]


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
    from pgconform.kernel.arch import ARCHES

    lines = _shown_matrix()
    assert lines[:2] == ["| version | " + " | ".join(ARCHES) + " |", "|---|" + "---|" * len(ARCHES)]
    assert [line.split(" | ", 1)[0].removeprefix("| ") for line in lines[2:]] == list(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_readme_version_matrix_is_the_commands_output(version):
    """The README's row of ``version`` is what ``python -m pgconform matrix`` (bound 0) prints."""
    from pgconform.tools import matrix

    row = matrix.to_markdown(matrix.version_matrix(versions=(version,), bound=0)).splitlines()[2]
    assert row in _shown_matrix()


#: documents that are not in the repository: a citation of one sends the reader nowhere.  Built
#: from parts so that this file does not name them itself.
_ABSENT_DOCS = tuple("".join(parts) for parts in (
    ("kernel", "-series.md"), ("arch", "-facts.md"), ("v2", "-designs.md"), ("design", ".md"),
    ("style", ".md"), ("..", "/shared")))
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".ini", ".txt", ".cfg", ".json", ".yml", ".yaml"}


def test_no_citation_of_a_document_outside_the_repository():
    """Docstrings, comments and docs cite the kernel (file, function, version, commit id, lore
    message-id), never a document that is not shipped with the repository."""
    files = [ROOT / name for name in ("README.md", "pyproject.toml", "tox.ini", "conftest.py")]
    for top in ("pgconform", "tests", "examples", "bench", "strategies"):
        files += [p for p in (ROOT / top).rglob("*")
                  if p.suffix in _TEXT_SUFFIXES and "__pycache__" not in p.parts]
    assert len(files) > 100  # the walk found the tree
    found = [f"{path.relative_to(ROOT)}:{n}: {doc}"
             for path in files if path.is_file()
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             for doc in _ABSENT_DOCS if doc in line]
    assert not found, "citations of documents not in the repository:\n" + "\n".join(found)


#: a kernel source file: mm/*.c, arch/..., include/..., kernel/*.c (not a path of this package)
_KERNEL_FILE = re.compile(r"(?<![\w/.])(?:mm/[\w-]+\.c|arch/[\w/-]+\.[ch]|include/[\w/-]+\.h"
                          r"|kernel/[\w-]+\.c)")
#: a kernel version (6.5, v6.6, 7.0) or a commit id
_KERNEL_VERSION = re.compile(r"\b(?:v?[67]\.\d+|[0-9a-f]{12,40})\b")


def _reference_functions():
    from pgconform.reference import ALL_REFERENCE_FUNCTIONS

    return sorted(ALL_REFERENCE_FUNCTIONS, key=lambda fn: (fn.__module__, fn.__qualname__))


@pytest.mark.parametrize("fn", _reference_functions(),
                         ids=lambda fn: f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}")
def test_reference_function_cites_its_kernel_source(fn):
    """Every function of the reference's table (generic and per arch) names its kernel source in
    its docstring: the file, the function, and the version or commit it follows."""
    import inspect

    doc = inspect.getdoc(fn) or ""
    assert _KERNEL_FILE.search(doc), f"{fn.__qualname__}: no kernel source file in {doc[:120]!r}"
    assert _KERNEL_VERSION.search(doc), f"{fn.__qualname__}: no kernel version in {doc[:120]!r}"
    # (s390 defines pte_free_tlb() whole where other arches define the __pte_free_tlb() it wraps)
    assert fn.__name__.lstrip("_") in doc, f"{fn.__qualname__}: the docstring does not name it"
