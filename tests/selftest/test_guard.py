"""Guard regions (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE on shmem VMAs, Linux 7.0): the model does
what 7.0 does (SIGSEGV on access, markers kept by MADV_DONTNEED, hole punch and mprotect, dropped
by munmap and exit without a false alarm, -EINVAL in 6.6), and data.guard-marker-lost fires on a
kernel that loses a guard marker: a retract_page_tables() that ignores VMA_MAYBE_GUARD_BIT (the
6.6 one, run in a 7.0 kernel) frees the table with the markers, while 7.0's leaves it alone.
"""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness.operations import KINDS, OP_KINDS, op_kinds_for
from pgconform.harness.scenario import (
    Op,
    VmaSpec,
    WorldSpec,
    build_world,
    start_op,
)
from pgconform.harness.sweep import sweep
from pgconform.implementation import Implementation
from pgconform.kernel.madvise_guard import EINTR_KILLED
from pgconform.kernel.objects import PTE_MARKER_GUARD, VMA_MAYBE_GUARD, Pte
from pgconform.kernel.version import VERSIONS
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import SCAN_PTE_NON_PRESENT, SCAN_SUCCEED
from pgconform.sim.effects import Load, Lock
from pgconform.sim.errors import Violation
from pgconform.versions import v7_0
from pgconform.versions.v7_0 import GUARD_COLLAPSE_KEY, GUARD_UFFD_WP_KEY
from pgconform.versions.v7_0 import IMPLEMENTATION as V7_0
from tests.selftest.helpers import (
    SHARED,
    clear_entry,
    entries,
    finish,
    in_function,
    run,
    run_to_end,
    step_until,
)

#: the 6.6 reference in a 7.0 kernel: guard regions exist, but retract_page_tables() is 6.6's,
#: which knows nothing of VMA_MAYBE_GUARD_BIT (the broken implementation of these tests)
#: (with the reference's declared findings, which are about poison markers: a guard marker freed
#: in the same function still fails)
REFERENCE_IN_7_0 = Implementation(name="reference-in-7.0", kernel="7.0",
                                  known_violations=POISON_KNOWN_VIOLATIONS,
                                  known_consequences=POISON_KNOWN_CONSEQUENCES)
#: v7.0 without its declared findings: the findings themselves, as the kernel commits them
V7_0_UNDECLARED = attrs.evolve(V7_0, name="v7.0-undeclared", known_violations={},
                               known_consequences={})

#: the same file also mapped by mm1 at [4, 12), its page 0 faulted in too
TWO_MMS = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0), VmaSpec(1, 4, 8, 0)),
                    prefault=((0, 4, False), (1, 4, False)))
#: mm0's VMA registered with userfaultfd (MISSING), nothing mapped
SHARED_MISSING = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, uffd_missing=True),),
                           cached=(True,) + (False,) * 7)

GUARD_5_6 = Op("guard_install", 0, 5, 2)  # [5, 7)
TOLERATE_FREE = {"pt.free-nonempty": "the broken retract frees the table with the guard markers: "
                                     "what data.guard-marker-lost is about is what follows"}


# ------------------------------------------------------------------------------------------------
# the model


def test_op_kinds_registered():
    """The guard operations are in the default mix of the 7.0 kernel (its real findings there
    are declared known violations of v7.0, scoped: the tests below) and not in 6.6's; they took
    bits of the kinds bitmask after every kind stored runs had named (test_operations.py pins
    the bitmask)."""
    assert OP_KINDS.index("guard_install") > OP_KINDS.index("uffd_poison")
    assert {"guard_install", "guard_remove"} <= set(op_kinds_for(VERSIONS["7.0"]))
    assert not {"guard_install", "guard_remove"} & set(op_kinds_for(VERSIONS["6.6"]))
    assert all(KINDS[k].user_context and KINDS[k].needs == "guard_regions"
               for k in ("guard_install", "guard_remove"))
    assert str(GUARD_5_6) == "madvise(mm0@5+2, MADV_GUARD_INSTALL)"


def test_einval_in_6_6():
    """6.6 has no guard regions: both calls are -EINVAL and touch nothing (not even a step)."""
    k = build_world(SHARED, REFERENCE)
    before = entries(k)
    for op in (GUARD_5_6, Op("guard_remove", 0, 5, 2)):
        t = start_op(k, "CPU0", op)
        run_to_end(k.m, t)
        assert t.result == -22
    assert [entry[-1] for entry in k.m.trace] == ["start", "start"]  # no effect ran
    assert entries(k) == before and VMA_MAYBE_GUARD not in k.mms[0].vmas[0].flags
    assert not k.oracles.guard.guards(k.mms[0])
    finish(k)


@pytest.mark.parametrize("arch", ["x86_64", "x86_pae", "powerpc64", "s390", "arm"])
def test_install_then_access_is_sigsegv(arch):
    """MADV_GUARD_INSTALL sets VMA_MAYBE_GUARD and puts guard markers into the none entries; a
    load, a store and GUP (fast or slow) there fail; the page next to them is unaffected."""
    k = build_world(SHARED, REFERENCE_IN_7_0, arch=arch)
    assert run(k, GUARD_5_6) == 0
    assert VMA_MAYBE_GUARD in k.mms[0].vmas[0].flags
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2 and entries(k)[3] is None
    assert set(k.oracles.guard.guards(k.mms[0])) == {5, 6}
    assert run(k, Op("read", 0, 5)) == "SIGSEGV"
    assert run(k, Op("write", 0, 6)) == "SIGSEGV"
    assert run(k, Op("gup", 0, 5, 1)) == 0
    assert run(k, Op("gup_fast", 0, 6, 1)) == 0
    assert run(k, Op("read", 0, 7)) == "ok"
    assert run(k, GUARD_5_6) == 0  # again: the markers are counted, nothing changes
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
    finish(k)


def test_install_zaps_mapped_pages():
    """A page mapped in the range stops the walk; the range is zapped (the guard markers already
    installed stay) and walked again: every entry ends a guard marker, the page unmapped."""
    k = build_world(SHARED, REFERENCE_IN_7_0, warm=((0, 6, True),))
    assert isinstance(entries(k)[0], Pte) and isinstance(entries(k)[2], Pte)
    assert run(k, Op("guard_install", 0, 4, 4)) == 0
    assert entries(k) == [PTE_MARKER_GUARD] * 4
    assert k.mms[0].rss["MM_SHMEMPAGES"] == 0
    assert run(k, Op("write", 0, 4)) == "SIGSEGV"
    finish(k)


def test_install_allocates_a_table():
    """With nothing mapped the walk allocates the PTE table (->install_pte), as far as the VMA
    goes: [10, 14) is clipped to [10, 12)."""
    k = build_world(WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),)), REFERENCE_IN_7_0)
    assert k.mms[0].pmd_table.entries[2] is None
    assert run(k, Op("guard_install", 0, 10, 4)) == 0
    assert entries(k, pmd=2) == [None, None, PTE_MARKER_GUARD, PTE_MARKER_GUARD]
    assert k.mms[0].nr_ptes == 1
    assert run(k, Op("guard_install", 0, 1, 1)) == -12  # no VMA there
    finish(k)


def test_install_over_a_huge_pmd():
    """A PMD-mapped THP in the range: the walk stops at the huge pmd, the zap splits it (the range
    is part of the PMD) and the next walk allocates a table for the markers."""
    world = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), prefault=((0, 4, False),))
    k = build_world(world, REFERENCE_IN_7_0)
    assert type(k.mms[0].pmd_table.entries[1]).__name__ == "HugePmd"
    assert run(k, GUARD_5_6) == 0
    assert entries(k) == [None, PTE_MARKER_GUARD, PTE_MARKER_GUARD, None]
    assert run(k, Op("read", 0, 4)) == "ok"
    assert run(k, Op("read", 0, 5)) == "SIGSEGV"
    finish(k)


def test_remove_then_access_is_normal():
    """MADV_GUARD_REMOVE clears the markers (the promise ends with them); the page faults in
    again; VMA_MAYBE_GUARD stays set (the kernel never clears it)."""
    k = build_world(SHARED, REFERENCE_IN_7_0)
    assert run(k, GUARD_5_6) == 0
    assert run(k, Op("guard_remove", 0, 4, 4)) == 0
    assert entries(k)[1:3] == [None, None] and not k.oracles.guard.guards(k.mms[0])
    assert isinstance(entries(k)[0], Pte)  # other entries are left alone
    assert run(k, Op("write", 0, 5)) == "ok"
    assert run(k, Op("read", 0, 6)) == "ok"
    assert VMA_MAYBE_GUARD in k.mms[0].vmas[0].flags
    assert run(k, Op("guard_remove", 0, 10, 2)) == 0  # a none pmd: nothing to do
    finish(k)


def test_dontneed_keeps_the_marker():
    """7.0 zap_nonpresent_ptes(): MADV_DONTNEED zaps the page and keeps the guard markers."""
    k = build_world(SHARED, REFERENCE_IN_7_0)
    assert run(k, GUARD_5_6) == 0
    assert run(k, Op("dontneed", 0, 4, 4)) == "ok"
    assert entries(k) == [None, PTE_MARKER_GUARD, PTE_MARKER_GUARD, None]
    assert set(k.oracles.guard.guards(k.mms[0])) == {5, 6}
    assert run(k, Op("read", 0, 5)) == "SIGSEGV"
    finish(k)


def test_hole_punch_and_mprotect_keep_the_marker():
    """Truncation keeps guard markers (unmap_mapping_range() zaps without dropping markers, and
    the folio is then no longer mapped); so do mprotect() and change_pte_range()."""
    k = build_world(TWO_MMS, REFERENCE_IN_7_0, warm=((1, 5, False),))
    assert run(k, GUARD_5_6) == 0
    assert run(k, Op("punch_hole", 0, 0, 4)) == 0
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
    assert run(k, Op("mprotect", 0, 4, 1)) == 0
    assert run(k, Op("mprotect", 0, 4, 2)) == 0
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
    assert run(k, Op("read", 0, 5)) == "SIGSEGV"
    assert run(k, Op("read", 1, 5)) == "ok"  # mm1 has no guard
    finish(k)


def test_uffd_copy_does_not_fill_a_guard():
    """7.0 mfill_atomic_install_pte() overwrites only a none entry or a uffd marker: UFFDIO_COPY
    onto a guard marker is -EEXIST."""
    k = build_world(SHARED_MISSING, REFERENCE_IN_7_0)
    assert run(k, GUARD_5_6) == 0
    assert run(k, Op("read", 0, 7)) == "UFFD_MISSING"
    assert run(k, Op("uffd_copy", 0, 5, 1)) == "EEXIST"
    assert run(k, Op("read", 0, 5)) == "SIGSEGV"
    assert run(k, Op("uffd_copy", 0, 7, 1)) == 0
    finish(k)


@pytest.mark.parametrize("how", ["munmap", "exit"])
def test_unmap_drops_the_marker(how):
    """munmap and exit zap with ZAP_FLAG_DROP_MARKER: the guard markers go (the promise with
    them), the empty table is freed: no false alarm at the end of the run."""
    k = build_world(SHARED, REFERENCE_IN_7_0)
    assert run(k, Op("guard_install", 0, 4, 8)) == 0
    assert entries(k, pmd=2) == [PTE_MARKER_GUARD] * 4
    assert run(k, Op(how, 0, 4)) in (0, None)
    assert k.mms[0].pmd_table.entries[1:3] == [None, None]
    assert not k.oracles.guard.guards(k.mms[0])
    finish(k)


# ------------------------------------------------------------------------------------------------
# the oracle: a broken kernel action fires it, the legitimate ones do not




def guard_then_clear(then=None):
    k = build_world(SHARED, REFERENCE_IN_7_0)
    assert run(k, GUARD_5_6) == 0
    t = k.m.spawn("CPU0", clear_entry(k, k.mms[0], 5), "broken clear")
    run_to_end(k.m, t)
    result = run(k, then) if then is not None else None
    finish(k)
    return result


@pytest.mark.parametrize("then", [Op("read", 0, 5), Op("write", 0, 5), Op("gup", 0, 5, 1),
                                  Op("gup_fast", 0, 5, 1)])
def test_access_after_a_lost_marker(then):
    with pytest.raises(Violation) as excinfo:
        guard_then_clear(then)
    v = excinfo.value
    assert v.clause == "data.guard-marker-lost"
    assert "addr 5" in v.message and "instead of SIGSEGV" in v.message


def test_lost_marker_at_end_of_run():
    with pytest.raises(Violation) as excinfo:
        guard_then_clear()
    v = excinfo.value
    assert v.clause == "data.guard-marker-lost" and "not the guard marker" in v.message


# ------------------------------------------------------------------------------------------------
# retract_page_tables() against guard markers: 7.0 checks VMA_MAYBE_GUARD_BIT, 6.6 does not


def guard_against_collapse(impl, when, collapser="khugepaged", who=0, access=True,
                           tolerated=None):
    """mm0 guards [5, 7) in the table of PMD 1 while mm``who`` collapses the file range: the guard
    install either completes before the collapse starts ("before"), or runs while the retract sits
    between its lockless checks and pmd_lock ("race": it saw no VMA_MAYBE_GUARD then).  Then mm0
    reads address 5 (if ``access``).  Returns (collapse result, read result, kernel)."""
    k = build_world(TWO_MMS, impl, tolerated=tolerated)
    m = k.m
    op = Op(collapser, who, 4)
    if when == "before":
        assert run(k, GUARD_5_6) == 0
        collapse = run(k, op, "CPU1")
    else:
        t = start_op(k, "CPU1", op)
        step_until(m, t, lambda t: in_function("retract_page_tables")(t)
                   and in_function("mmu_notifier_invalidate_range_start")(t))
        assert run(k, GUARD_5_6) == 0
        run_to_end(m, t)
        collapse = t.result
    read = run(k, Op("read", 0, 5)) if access else None
    finish(k)
    return collapse, read, k


CASES = [(when, collapser, who) for when in ("before", "race")
         for collapser in ("khugepaged", "madv_collapse") for who in (0, 1)]


@pytest.mark.parametrize("when,collapser,who", CASES)
def test_retract_ignoring_the_guard_flag_frees_the_markers(when, collapser, who):
    """The first violation of the 6.6 retract in 7.0: the table goes with the guard markers."""
    with pytest.raises(Violation) as excinfo:
        guard_against_collapse(REFERENCE_IN_7_0, when, collapser, who)
    v = excinfo.value
    assert v.clause == "pt.free-nonempty" and "GUARD" in v.message


@pytest.mark.parametrize("when,collapser,who", CASES)
@pytest.mark.parametrize("access", [True, False])
def test_retract_ignoring_the_guard_flag_loses_the_guard(when, collapser, who, access):
    """data.guard-marker-lost: with the free itself tolerated, the read of the guarded address
    reaches the collapsed THP instead of SIGSEGV; without a read, the end of the run finds the
    address without its marker."""
    with pytest.raises(Violation) as excinfo:
        guard_against_collapse(REFERENCE_IN_7_0, when, collapser, who, access,
                               tolerated=TOLERATE_FREE)
    v = excinfo.value
    assert v.clause == "data.guard-marker-lost"
    assert ("instead of SIGSEGV" if access else "not the guard marker") in v.message


@pytest.mark.parametrize("when,collapser,who", CASES)
def test_7_0_retract_keeps_the_guard(when, collapser, who):
    """7.0's file_backed_vma_is_retractable() skips mm0's VMA (VMA_MAYBE_GUARD_BIT, before and
    under the ptl) through the same schedules: the markers stay, the read is SIGSEGV, and
    MADV_COLLAPSE of mm0's own range fails on them (guard-regions.c: collapse)."""
    collapse, read, k = guard_against_collapse(V7_0, when, collapser, who)
    assert read == "SIGSEGV" and not k.m.failed
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
    if collapser == "madv_collapse" and who == 0:
        assert collapse == SCAN_PTE_NON_PRESENT
    elif collapser == "khugepaged":
        assert collapse == SCAN_SUCCEED


# ------------------------------------------------------------------------------------------------
# finding: collapse_pte_mapped_thp() against MADV_GUARD_INSTALL (7.0 too)

#: mm0 maps the file shared at [4, 12); file pages 0-3 are one PMD-sized folio mapped by PTEs (an
#: empty table existed before the read of address 4): khugepaged's scan and MADV_COLLAPSE go
#: straight to collapse_pte_mapped_thp(), no retract_page_tables()
SHARED_PTE_MAPPED_THP = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), tables=((0, 4),),
                                  prefault=((0, 4, False),))


def guard_into_emptied_table(impl, collapser, access=True, tolerated=None, hits=None):
    """collapse_pte_mapped_thp() has cleared the PTEs under the ptl (step 2), dropped it (a shared
    VMA: no early pml) and waits for pml (step 4); MADV_GUARD_INSTALL, under the mmap_lock for
    read as collapse is, runs whole: it sets VMA_MAYBE_GUARD_BIT and puts its markers into the
    emptied table under the ptl; then step 4 rechecks pmd_same() only, and frees the table.
    Then mm0 reads address 5 (if ``access``).  Returns (collapse result, read result)."""
    k = build_world(SHARED_PTE_MAPPED_THP, impl, tolerated=tolerated, hits=hits)
    m = k.m
    t = start_op(k, "CPU1", Op(collapser, 0, 4))
    step_until(m, t, lambda t: type(t.pending) is Lock and in_function("pmd_lock")(t)
               and in_function("collapse_pte_mapped_thp")(t))
    assert entries(k) == [None] * 4  # step 2 done
    assert run(k, GUARD_5_6) == 0
    assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
    run_to_end(m, t)
    read = run(k, Op("read", 0, 5)) if access else None
    finish(k)
    return t.result, read


@pytest.mark.parametrize("collapser", ["khugepaged", "madv_collapse"])
def test_collapse_pte_mapped_thp_fails_on_guard_markers(collapser):
    """guard-regions.c (collapse): with guard markers in the table, collapse_pte_mapped_thp()
    finds a non-present entry in step 1 and gives up; the markers stay."""
    for impl in (REFERENCE_IN_7_0, V7_0):
        k = build_world(SHARED_PTE_MAPPED_THP, impl)
        assert run(k, GUARD_5_6) == 0
        assert run(k, Op(collapser, 0, 4), "CPU1") == SCAN_PTE_NON_PRESENT
        assert entries(k)[1:3] == [PTE_MARKER_GUARD] * 2
        assert run(k, Op("read", 0, 6)) == "SIGSEGV"
        finish(k)


@pytest.mark.xfail(strict=True, raises=Violation, reason=(
    "finding: Linux 7.0 try_collapse_pte_mapped_thp() drops the ptl of a shared VMA between "
    "step 2 (PTEs cleared) and step 4 (pml, ptl again, pmd_same() only), under the mmap_lock for "
    "read; MADV_GUARD_INSTALL, also under a read lock and taking no folio lock, can put guard "
    "markers into the emptied table there, and step 4 frees it with them (pt.free-nonempty; "
    "then data.guard-marker-lost).  file_backed_vma_is_retractable()'s VMA_MAYBE_GUARD_BIT check "
    "covers retract_page_tables() only."))
@pytest.mark.parametrize("collapser", ["khugepaged", "madv_collapse"])
def test_guard_survives_collapse_pte_mapped_thp(collapser):
    assert guard_into_emptied_table(V7_0_UNDECLARED, collapser)[1] == "SIGSEGV"


@pytest.mark.parametrize("collapser", ["khugepaged", "madv_collapse"])
def test_v7_0_declares_the_collapse_finding(collapser):
    """v7.0 declares the finding (GUARD_COLLAPSE_KEY), so that random runs judge the rest of the
    guard paths: the free is counted under the key, and what follows it (the free in the RCU
    callback, the read reaching the THP) as its consequences."""
    hits = {}
    assert guard_into_emptied_table(V7_0, collapser, hits=hits)[1] == "ok"
    assert hits.get(GUARD_COLLAPSE_KEY, 0) >= 1
    assert set(hits) <= {GUARD_COLLAPSE_KEY, "pt.free-nonempty[PTE_MARKER_GUARD]",
                         "data.guard-marker-lost"}


@pytest.mark.parametrize("impl", [V7_0_UNDECLARED, REFERENCE_IN_7_0],
                         ids=["v7.0-undeclared", "reference-in-7.0"])
@pytest.mark.parametrize("collapser", ["khugepaged", "madv_collapse"])
def test_guard_lost_by_collapse_pte_mapped_thp(impl, collapser):
    """What the xfail above trips on: the free of the table holding the guard markers; with that
    tolerated, data.guard-marker-lost at the read (or, without one, at the end of the run)."""
    with pytest.raises(Violation) as excinfo:
        guard_into_emptied_table(impl, collapser)
    assert excinfo.value.clause == "pt.free-nonempty" and "GUARD" in excinfo.value.message
    for access in (True, False):
        with pytest.raises(Violation) as excinfo:
            guard_into_emptied_table(impl, collapser, access, tolerated=TOLERATE_FREE)
        assert excinfo.value.clause == "data.guard-marker-lost"


# ------------------------------------------------------------------------------------------------
# finding: MADV_GUARD_INSTALL over uffd-wp protection never finishes (7.0)

#: mm0's VMA registered for uffd-wp, addresses 4-7 write-protected (a uffd-wp PTE at 4, markers
#: at 5-7)
SHARED_WP = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, uffd_wp=True),), prefault=((0, 4, False),),
                      writeprotect=((0, 4, 4),))


def guard_over_uffd_wp(impl=REFERENCE_IN_7_0, world=SHARED_WP, hits=None):
    k = build_world(world, impl, hits=hits)
    m = k.m
    t = start_op(k, "CPU0", GUARD_5_6)
    m.run(t, m.step_bound)
    if not t.done:
        m.step(t)  # past the step bound: sched.no-progress
    finish(k)
    return t.result


@pytest.mark.xfail(strict=True, raises=Violation, reason=(
    "finding: Linux 7.0 madvise_guard_install() on a file-backed VMA with uffd-wp markers (or "
    "uffd-wp PTEs) never finishes: guard_install_pte_entry() takes a uffd-wp marker for a "
    "populated entry, the zap that follows keeps uffd-wp markers of file VMAs (and turns a "
    "uffd-wp PTE into one), so every retry finds it again and restart_syscall() loops "
    "(sched.no-progress)."))
def test_guard_install_over_uffd_wp_finishes():
    assert guard_over_uffd_wp() == 0


def test_guard_install_over_uffd_wp_is_no_progress():
    with pytest.raises(Violation) as excinfo:
        guard_over_uffd_wp()
    assert excinfo.value.clause == "sched.no-progress"


def test_v7_0_declares_the_uffd_wp_finding():
    """v7.0 declares the loop as ``sched.no-progress@madvise_guard_install``: past the step bound
    the machine counts it and sends the task a fatal signal, and the call ends at its next
    restart_syscall(); the run goes on."""
    hits = {}
    assert guard_over_uffd_wp(V7_0, hits=hits) == EINTR_KILLED
    assert hits == {GUARD_UFFD_WP_KEY: 1}


def _pte_offset_map_lock_never(k, mm, pmdp, addr):
    """Broken: a pte_offset_map_lock() that never maps the table (always "try again")."""
    yield Load(pmdp.table, pmdp.idx)
    return None, None


#: v7.0's declarations over an implementation whose PTE walkers loop on ACTION_AGAIN
LOOPING = Implementation(name="v7.0-never-maps", kernel="7.0",
                         overrides={"pte_offset_map_lock": _pte_offset_map_lock_never},
                         known_violations=V7_0.known_violations,
                         known_consequences=V7_0.known_consequences)


def test_no_progress_elsewhere_still_fails():
    """The declared no-progress is the restart loop's: a guard install that loops without
    coming back to restart_syscall() (the walk's ACTION_AGAIN forever) is killed, fails to end,
    and is sched.no-progress; a fault that loops (not in madvise_guard_install) is at once."""
    world = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),))
    with pytest.raises(Violation) as excinfo:
        guard_over_uffd_wp(LOOPING, world)
    assert excinfo.value.clause == "sched.no-progress"
    assert "nor after a fatal signal" in excinfo.value.message
    k = build_world(world, LOOPING)
    t = start_op(k, "CPU0", Op("read", 0, 5))
    with pytest.raises(Violation) as excinfo:
        k.m.run(t, k.m.step_bound + 1)
    assert excinfo.value.clause == "sched.no-progress"
    assert "fatal signal" not in excinfo.value.message


# ------------------------------------------------------------------------------------------------
# the declared findings do not hide a broken guard path: the sweep a user runs catches one


def _retract_ignoring_the_guard_flag(k, mapping, pgoff):
    """Broken: 7.0's retract_page_tables() without the VMA_MAYBE_GUARD_BIT check."""
    yield from v7_0.retract_page_tables_as(
        k, mapping, pgoff,
        retractable=lambda vma: vma.anon_vma is None and not v7_0.userfaultfd_wp(vma))


V7_0_NO_GUARD_CHECK = attrs.evolve(V7_0, name="v7.0-no-guard-check", overrides={
    **V7_0.overrides, "retract_page_tables": _retract_ignoring_the_guard_flag})


def test_a_broken_guard_path_is_caught_by_the_sweep():
    """The guard operations are in the 7.0 sweep: v7.0 passes the shared world, and the retract
    without the guard flag check fails it with the free of the guard markers, which v7.0's
    declared finding (in try_collapse_pte_mapped_thp(), not retract) does not cover."""
    assert sweep(V7_0, "x86_64", worlds=("shared",), bound=0).violation is None
    r = sweep(V7_0_NO_GUARD_CHECK, "x86_64", worlds=("shared",), bound=0)
    assert r.violation is not None and r.violation.clause == "pt.free-nonempty"
    assert "GUARD" in r.violation.message and "GUARD_INSTALL" in str(r.pair)
