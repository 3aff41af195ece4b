"""collapse_pte_mapped_thp() and retract_page_tables() against the actors their v2 and v3 fixes are
about: UFFDIO_COPY inserting an anonymous PTE without the huge folio's lock (A7, B1) and munmap
tearing the page tables down while collapse holds only mmap_lock for read (A11).

Each test drives one schedule by hand: the mutant must get its clause, and the reference must come
through the very same schedule clean, end-of-run checks included.
"""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.kernel.objects import HugePmd
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import SCAN_SUCCEED, SCAN_VMA_CHECK
from pgconform.registry import resolve
from pgconform.sim.effects import DownRead, Lock
from pgconform.sim.errors import Violation
from tests.selftest.helpers import finish, in_path, step_until
from tests.selftest.test_oracles import PRIVATE_UFFD, UFFD_COPY_5

A7 = resolve("zoo.retract_no_anon_vma_recheck")
A11 = resolve("zoo.collapse_walk_before_vma_check")
B1 = resolve("zoo.collapse_pte_mapped_thp_uffd_window")

#: mm0 maps the file privately at [4, 12), registered with userfaultfd (MISSING); file pages 0-3
#: are one PMD-sized folio in the page cache, mapped by PTEs (an empty table existed before the
#: read of address 4): MADV_COLLAPSE goes straight to collapse_pte_mapped_thp()
PRIVATE_UFFD_PTE_MAPPED_THP = WorldSpec(
    vmas=(VmaSpec(0, 4, 8, 0, shared=False, uffd_missing=True),), thps=(0,), tables=((0, 4),),
    prefault=((0, 4, False),))
#: the same, shared and not registered: khugepaged's scan finds the PTE-mapped THP
SHARED_PTE_MAPPED_THP = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), tables=((0, 4),),
                                  prefault=((0, 4, False),))


def pending_pmd_lock_in(fname):
    def pred(t):
        return type(t.pending) is Lock and in_path(t, "pmd_lock") and in_path(t, fname)

    return pred


def uffd_copy_before_retract_locks(impl):
    """khugepaged's retract passes its lockless checks (no anon_vma yet) and is about to take
    pml; UFFDIO_COPY into the private VMA attaches an anon_vma and installs an anonymous PTE in
    the table; then the retract goes on."""
    k = build_world(PRIVATE_UFFD, impl)
    m = k.m
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    copy = start_op(k, "CPU0", UFFD_COPY_5)
    step_until(m, collapse, pending_pmd_lock_in("retract_page_tables"))
    m.run(copy, m.step_bound)
    assert copy.done and copy.result == 0
    finish(k)
    return k


def uffd_copy_between_step2_and_step4(impl):
    """MADV_COLLAPSE of a PTE-mapped THP in a uffd-armed private VMA: collapse_pte_mapped_thp()
    runs up to its first pmd_lock() (the early one of a98460494b16, or step 4's without it);
    UFFDIO_COPY into a none entry of the table then runs as far as it can; then collapse goes
    on."""
    k = build_world(PRIVATE_UFFD_PTE_MAPPED_THP, impl)
    m = k.m
    collapse = start_op(k, "CPU1", Op("madv_collapse", 0, 4))
    copy = start_op(k, "CPU0", UFFD_COPY_5)
    step_until(m, collapse, pending_pmd_lock_in("collapse_pte_mapped_thp"))
    m.run(copy, m.step_bound)
    finish(k)
    return k


def munmap_before_collapse_relocks(impl):
    """khugepaged finds the VMA, drops mmap_lock and scans the file (a PTE-mapped THP); the
    process munmaps the VMA; khugepaged retakes mmap_lock for collapse_pte_mapped_thp()."""
    k = build_world(SHARED_PTE_MAPPED_THP, impl)
    m = k.m
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    unmap = start_op(k, "CPU0", Op("munmap", 0, 4))
    step_until(m, collapse, lambda t: type(t.pending) is DownRead
               and in_path(t, "khugepaged_scan_mm_slot"))
    m.run(unmap, m.step_bound)
    assert unmap.done
    finish(k)
    return k


CASES = [
    (uffd_copy_before_retract_locks, A7),
    (uffd_copy_between_step2_and_step4, B1),
    (munmap_before_collapse_relocks, A11),
]


@pytest.mark.parametrize(("schedule", "mutant"), CASES, ids=["A7", "B1", "A11"])
def test_mutant_is_caught(schedule, mutant):
    with pytest.raises(Violation) as excinfo:
        schedule(mutant)
    assert excinfo.value.clause in mutant.expected, str(excinfo.value)


@pytest.mark.parametrize(("schedule", "mutant"), CASES, ids=["A7", "B1", "A11"])
def test_reference_comes_through(schedule, mutant):
    k = schedule(REFERENCE)
    assert not k.m.failed


def test_retract_skips_the_mm_that_got_an_anon_vma():
    """The recheck under ptl: the table (now holding the anonymous page) stays linked."""
    k = uffd_copy_before_retract_locks(REFERENCE)
    mm = k.mms[0]
    assert mm.nr_ptes == 1 and mm.rss["MM_ANONPAGES"] == 1


def test_collapse_holds_pml_across_steps_2_to_4_for_uffd():
    """With a98460494b16 the copy cannot get in: it waits for ptl, finds the PMD changed, and
    installs its page in a new table after the collapse; the THP is no longer PTE-mapped."""
    k = uffd_copy_between_step2_and_step4(REFERENCE)
    mm = k.mms[0]
    assert mm.rss == {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 1}
    assert mm.nr_ptes == 1


def test_collapse_after_munmap_is_a_vma_check():
    k = munmap_before_collapse_relocks(REFERENCE)
    results = {t.name: t.result for t in k.m.tasks}
    assert results["CPU1:khugepaged(mm0@4)"] == "SCAN_VMA_CHECK"


# ------------------------------------------------------------------------------------------------
# madvise_collapse() over more than one PMD extent

#: a shared mapping of the 8-page file over PMDs 1 and 2, a page of each read in
SHARED_TWO_PMDS = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False), (0, 8, False)))


def collapse_two_pmds(impl=REFERENCE, interloper=None):
    """MADV_COLLAPSE of [4, 12) (both extents); with ``interloper``, that operation runs on CPU1
    once the first extent has dropped mmap_lock, and to its end before the loop takes it again."""
    k = build_world(SHARED_TWO_PMDS, impl)
    m, mm = k.m, k.mms[0]
    t = m.spawn("CPU0", k.ops.madvise_collapse(k, mm, 4, 12), "MADV_COLLAPSE(mm0@4+8)")
    t.mm = mm
    if interloper is not None:
        step_until(m, t, lambda t: in_path(t, "hpage_collapse_scan_file"))
        other = start_op(k, "CPU1", interloper)
        m.run(other, m.step_bound)
        assert other.done
    m.run(t, m.step_bound)
    assert t.done
    finish(k)
    return k, t


def test_madvise_collapse_loops_over_every_extent():
    """Each PMD extent is collapsed in turn: the second after mmap_lock is taken again and the
    VMA revalidated."""
    k, t = collapse_two_pmds()
    pmds = k.mms[0].pmd_table.entries
    assert t.result == SCAN_SUCCEED
    assert type(pmds[1]) is HugePmd and type(pmds[2]) is HugePmd
    downs = [eff for tt, _, eff, _ in k.m.trace if tt is t and type(eff) is DownRead]
    assert len(downs) >= 2  # madvise()'s lock, then the one retaken for the second extent


def test_madvise_collapse_stops_when_the_vma_went():
    """munmap() of the VMA while the first extent is scanned: hugepage_vma_revalidate() finds no
    VMA at the second extent and the loop ends (SCAN_VMA_CHECK), nothing collapsed there."""
    k, t = collapse_two_pmds(interloper=Op("munmap", 0, 4, 1))
    assert t.result == SCAN_VMA_CHECK
    assert k.mms[0].pmd_table.entries[2] is None
