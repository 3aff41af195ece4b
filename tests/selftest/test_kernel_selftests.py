"""The kernel's own functional tests of these paths, as positive-path oracles.

tools/testing/selftests/mm/khugepaged.c (6.6): the file/shmem cases of collapse_full, the
PTE-mapped THP cases (collapse_single_pte_entry_compound, collapse_full_of_compound),
madvise_collapse_existing_thps and madvise_retracted_page_tables, in both contexts the selftest
uses: ``khugepaged`` (wait for khugepaged, then re-fault the range, because retract leaves the pmd
none) and ``madvise`` (MADV_COLLAPSE, which installs the PMD itself).  Each runs as a deterministic
schedule, one operation after another, on every architecture with THP, and must end where the
selftest expects: the range PMD-mapped by the THP, the counters balanced (the end-of-run
oracles), and ``nr_ptes`` down by one per retracted table in every mm mapping the file.
"""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.kernel.arch import ARCHES
from pgconform.kernel.objects import HugePmd, TablePmd
from pgconform.reference import IMPLEMENTATION as REFERENCE
from tests.selftest.helpers import finish, run_to_end

THP_ARCHES = [name for name, arch in ARCHES.items() if arch.thp]

#: the selftest's shmem area: memfd_create + MAP_SHARED, one PMD range at [4, 8) (file pages 0-3)
SHMEM = (VmaSpec(0, 4, 4, 0),)
#: every page of the range faulted in (collapse_full's fill_memory)
FULL = tuple((0, a, True) for a in range(4, 8))


def run(k, *ops):
    """Run each operation to its end, one after another; return their results."""
    results = []
    for op in ops:
        t = start_op(k, "CPU0", op)
        run_to_end(k.m, t)
        results.append(t.result)
    finish(k)
    return results


def refault(mm=0):
    """The selftest's khugepaged context re-faults the range before checking smaps."""
    return tuple(Op("read", mm, a) for a in range(4, 8))


def pmd_at(k, mm, addr):
    return k.mms[mm].pmd_table.entries[k.geo.pmd_index(addr)]


def assert_pmd_mapped(k, mm=0, addr=4):
    """check_huge_shmem(): the range is one PMD mapping of the THP in the page cache."""
    pmdv = pmd_at(k, mm, addr)
    assert type(pmdv) is HugePmd, f"{pmdv!r} is not a huge PMD"
    f = k.files[0]
    assert pmdv.folio is f.pages[0] and pmdv.folio.nr == k.geo.hpage_pmd_nr
    assert k.mms[mm].rss["MM_SHMEMPAGES"] == k.geo.hpage_pmd_nr


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_collapse_full_khugepaged(arch):
    k = build_world(WorldSpec(SHMEM, prefault=FULL), REFERENCE, arch)
    assert k.mms[0].nr_ptes == 1
    (result, *_) = run(k, Op("khugepaged", 0, 4), *refault())
    assert result == "SCAN_SUCCEED"
    assert_pmd_mapped(k)
    assert k.mms[0].nr_ptes == 0
    assert all(t.released for t in k.tables)  # (a powerpc fragment's page may stay cached)


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_collapse_full_madvise(arch):
    """MADV_COLLAPSE: collapse_file() retracts, collapse_pte_mapped_thp(install_pmd) maps."""
    k = build_world(WorldSpec(SHMEM, prefault=FULL), REFERENCE, arch)
    (result,) = run(k, Op("madv_collapse", 0, 4))
    assert result == "SCAN_SUCCEED"
    assert_pmd_mapped(k)
    assert k.mms[0].nr_ptes == 0


@pytest.mark.parametrize("arch", THP_ARCHES)
@pytest.mark.parametrize("context", ["khugepaged", "madv_collapse"])
@pytest.mark.parametrize("filled", [1, 4], ids=["single_pte_entry_compound", "full_of_compound"])
def test_pte_mapped_thp(arch, context, filled):
    """The THP is already in the page cache but mapped by PTEs (one, or all four): the scan
    returns SCAN_PTE_MAPPED_HUGEPAGE and collapse_pte_mapped_thp() removes the table."""
    world = WorldSpec(SHMEM, thps=(0,), tables=((0, 4),), prefault=FULL[:filled])
    k = build_world(world, REFERENCE, arch)
    thp = k.files[0].pages[0]
    assert type(pmd_at(k, 0, 4)) is TablePmd and thp.mapcount == filled
    ops = (Op(context, 0, 4),) + (refault() if context == "khugepaged" else ())
    (result, *_) = run(k, *ops)
    assert result == "SCAN_SUCCEED"
    assert_pmd_mapped(k)
    assert k.mms[0].nr_ptes == 0
    assert thp.mapcount == 1  # the PMD mapping only


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_madvise_collapse_existing_thps(arch):
    """MADV_COLLAPSE of a range that is already PMD-mapped succeeds (SCAN_PMD_MAPPED) and changes
    nothing; a second MADV_COLLAPSE after the first collapse likewise."""
    k = build_world(WorldSpec(SHMEM, prefault=FULL), REFERENCE, arch)
    first, second = run(k, Op("madv_collapse", 0, 4), Op("madv_collapse", 0, 4))
    assert (first, second) == ("SCAN_SUCCEED", "SCAN_PMD_MAPPED")
    assert_pmd_mapped(k)


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_madvise_retracted_page_tables(arch):
    """khugepaged collapses and retracts (the pmd is left none); MADV_COLLAPSE then installs the
    huge PMD from the page cache (find_pmd_or_thp_or_none() == SCAN_PMD_NONE -> install)."""
    k = build_world(WorldSpec(SHMEM, prefault=FULL), REFERENCE, arch)
    results = run(k, Op("khugepaged", 0, 4))
    assert results == ["SCAN_SUCCEED"] and pmd_at(k, 0, 4) is None
    k2 = k  # the same world goes on: MADV_COLLAPSE with no page table at all
    (result,) = run(k2, Op("madv_collapse", 0, 4))
    assert result == "SCAN_SUCCEED"
    assert_pmd_mapped(k2)
    assert k2.mms[0].nr_ptes == 0


@pytest.mark.parametrize("arch", THP_ARCHES)
def test_retract_in_every_mm(arch):
    """Two processes map the file (shared); khugepaged collapses it through mm0: retract removes
    the table of every mm, one nr_ptes decrement each, and both re-fault a PMD mapping."""
    vmas = SHMEM + (VmaSpec(1, 8, 4, 0),)
    prefault = FULL + tuple((1, a, False) for a in range(8, 12))
    k = build_world(WorldSpec(vmas, prefault=prefault), REFERENCE, arch)
    assert [mm.nr_ptes for mm in k.mms] == [1, 1]
    run(k, Op("khugepaged", 0, 4), *refault(0), *(Op("read", 1, a) for a in range(8, 12)))
    assert [mm.nr_ptes for mm in k.mms] == [0, 0]
    assert_pmd_mapped(k, 0, 4)
    assert_pmd_mapped(k, 1, 8)
    assert k.files[0].pages[0].mapcount == 2


def test_uffd_minor_collapse():
    """tools/testing/selftests/mm/uffd-unit-tests.c "minor-collapse" (6.6, shmem, x86-64: minor
    mode is x86-64 only in 6.6): the area is mapped twice; the second mapping is registered in
    MINOR mode; the pages are populated through the first; each read through the registered side
    takes a minor fault, resolved by UFFDIO_CONTINUE; then MADV_COLLAPSE of the registered range
    must leave it PMD-mapped with the same contents (retract skips nothing: minor mode is armed
    but not uffd-wp)."""
    vmas = (VmaSpec(0, 0, 4, 0), VmaSpec(0, 4, 4, 0, uffd_minor=True))
    k = build_world(WorldSpec(vmas, cached=(False,) * 8), REFERENCE, "x86_64")
    populate = tuple(Op("write", 0, a) for a in range(4))
    minor = tuple(Op("read", 0, a) for a in range(4, 8))
    cont = tuple(Op("uffd_continue", 0, a) for a in range(4, 8))
    reread = tuple(Op("read", 0, a) for a in range(4, 8))
    results = run(k, *populate, *minor, *cont, *reread, Op("madv_collapse", 0, 4), *reread)
    assert results[4:8] == ["UFFD_MINOR"] * 4
    assert results[8:12] == [0] * 4 and results[12:16] == ["ok"] * 4
    assert results[16] == "SCAN_SUCCEED" and results[17:] == ["ok"] * 4
    assert_pmd_mapped(k, 0, 4)
    assert type(pmd_at(k, 0, 0)) is not TablePmd  # the populating side was retracted too
    assert k.mms[0].nr_ptes == 0
    # the contents seen through the registered side are what the populating writes stored
    thp = k.files[0].pages[0]
    assert thp.data == [k.files[0].content[i] for i in range(4)]
