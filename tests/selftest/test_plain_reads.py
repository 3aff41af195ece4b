"""Plain reads of a page-table entry (kernel/mprotect.py pmd_none_plain_read(), clause
``pt.plain-read-race``).

change_pmd_range() reads ``*pmd`` twice without READ_ONCE() (pte_alloc()'s test, then its own
pmd_none() test; mm/mprotect.c, 6.6 and 7.0).  Fused into one load (GCC 12.2 on x86-64, the
default form), khugepaged's retract clearing the PMD in between is caught by
pte_offset_map_lock() and the markers land in a new table; split into two loads
(``PGCONFORM_PLAIN_READS=split``) the pmd_none() test skips the range.  The sweep found the pair
at bound 2 (3,552 schedules into the shared world on x86_64)."""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness import runs
from pgconform.harness.scenario import Op
from pgconform.harness.sweep import Pair, explore_pair
from pgconform.kernel.config import PLAIN_READS_ENV, plain_reads_form
from pgconform.kernel.mprotect import PLAIN_READ_RACE
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.registry import resolve

#: khugepaged's collapse_file() -> retract_page_tables() against UFFDIO_REGISTER(MISSING|WP) +
#: UFFDIO_WRITEPROTECT of the same VMA
PAIR = Pair("shared", Op("khugepaged", 0, 4, 1), Op("uffd_register", 0, 5, 6))
#: the reference without its declaration of the race
UNDECLARED = attrs.evolve(REFERENCE, name="reference-undeclared", known_violations={},
                          known_consequences={})


def test_the_pair_is_the_writeprotect_one():
    assert "MISSING|WP" in str(PAIR) and "WRITEPROTECT" in str(PAIR)


def test_fused_reads_leave_the_markers(monkeypatch):
    """One load: the race is caught by pte_offset_map_lock() (-EAGAIN, "goto again"), in every
    schedule up to bound 2, with nothing declared."""
    monkeypatch.delenv(PLAIN_READS_ENV, raising=False)
    assert plain_reads_form() == "fused"
    r = explore_pair(UNDECLARED, "x86_64", PAIR, bound=2)
    assert r.complete and r.violation is None, r.violation


def test_split_reads_are_a_plain_read_race(monkeypatch):
    """Two loads: the clear between them is reported as the data race it is, in
    change_pmd_range(), before the missing markers are (not data.uffd-marker-lost)."""
    monkeypatch.setenv(PLAIN_READS_ENV, "split")
    v = explore_pair(UNDECLARED, "x86_64", PAIR, bound=2).violation
    assert v is not None and v.clause == "pt.plain-read-race", v
    assert "change_pmd_range()" in str(v) and "then None" in str(v)
    assert "WRITEPROTECT" in v.task.name


def test_split_reads_with_the_race_declared_lose_the_markers_as_known(monkeypatch):
    """The reference (and v6.6, v2, v7.0) declare the race in change_pmd_range() with its
    consequences: the pair passes, and the race was counted."""
    monkeypatch.setenv(PLAIN_READS_ENV, "split")
    monkeypatch.setattr(runs, "tolerated_hits", {})
    assert explore_pair(REFERENCE, "x86_64", PAIR, bound=2).violation is None
    assert runs.tolerated_hits.get(PLAIN_READ_RACE, 0) > 0
    # the consequence alone, without the race that explains it, is not tolerated
    lost_only = attrs.evolve(UNDECLARED, known_consequences=REFERENCE.known_consequences)
    assert explore_pair(lost_only, "x86_64", PAIR, bound=2).violation.clause == \
        "pt.plain-read-race"


def test_the_declaration_is_scoped_to_change_pmd_range():
    """The key names the function, so the same clause anywhere else would still fail."""
    assert PLAIN_READ_RACE == "pt.plain-read-race@change_pmd_range"
    for spec in ("reference", "v6.6", "v1", "v2", "v7.0"):
        impl = resolve(spec)
        assert PLAIN_READ_RACE in impl.known_violations, spec
        assert "data.uffd-marker-lost" in impl.known_consequences[PLAIN_READ_RACE], spec
    # 6.5's retract holds mmap_lock for write: no PMD is cleared under UFFDIO_WRITEPROTECT
    assert PLAIN_READ_RACE not in resolve("v6.5").known_violations


def test_v6_5_has_no_plain_read_race(monkeypatch):
    """Split reads in 6.5: retract_page_tables() takes mmap_write_trylock(), so the PMD cannot
    change under change_pmd_range() (mmap_lock for read) and the pair passes undeclared."""
    monkeypatch.setenv(PLAIN_READS_ENV, "split")
    assert explore_pair(resolve("v6.5"), "x86_64", PAIR, bound=2).violation is None


def test_a_bad_form_is_refused(monkeypatch):
    monkeypatch.setenv(PLAIN_READS_ENV, "twice")
    with pytest.raises(ValueError, match="one of fused, split"):
        plain_reads_form()


def test_a_bad_form_is_a_usage_error(pgconform_pytester, run_pgconform, monkeypatch):
    pgconform_pytester.makepyfile(test_never="def test_never(): pass")
    monkeypatch.setenv(PLAIN_READS_ENV, "twice")
    # an option of pgconform's: the plugin acts only on its own runs
    result = run_pgconform("--impl", "reference")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "PGCONFORM_PLAIN_READS='twice'" in result.stderr.str()
    assert "fused, split" in result.stderr.str()


def test_7_0_pt_reclaim_of_an_emptied_table_is_the_same_race(monkeypatch):
    """In 7.0 MADV_DONTNEED's PT reclaim can free the table between the two reads too (one it
    emptied, so pte_alloc() saw it populated): split, that is the plain-read race, which v7.0
    declares."""
    from pgconform.harness.sweep import RECLAIM_FREER

    v7_0 = resolve("v7.0")
    undeclared = attrs.evolve(v7_0, known_violations={}, known_consequences={})
    pair = Pair("shared", RECLAIM_FREER, PAIR.second)
    monkeypatch.setenv(PLAIN_READS_ENV, "split")
    v = explore_pair(undeclared, "x86_64", pair, bound=1).violation
    assert v is not None and v.clause == "pt.plain-read-race", v
    assert explore_pair(v7_0, "x86_64", pair, bound=1).violation is None


def test_a_bad_form_is_an_error_of_the_command(monkeypatch, capsys):
    from pgconform.__main__ import main

    monkeypatch.setenv(PLAIN_READS_ENV, "twice")
    assert main(["list"]) == 2
    assert "PGCONFORM_PLAIN_READS='twice'" in capsys.readouterr().err
