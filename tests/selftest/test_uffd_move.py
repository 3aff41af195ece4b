"""UFFDIO_MOVE (6.8+, the 7.0 environment only: KernelVersion.uffd_move) and the anonymous private
VMAs it works on (kernel/userfaultfd.py move_pages(), reference/userfaultfd.py move_pages_pte();
kernel/memory.py do_anonymous_page()).

A move takes one page from an anonymous VMA to a none entry of an anonymous VMA registered with
userfaultfd: the data, the rmap and the anon shadow follow it, the counters stay.  The errors are
the kernel's.  Against MADV_DONTNEED's PT reclaim, the destination table may be freed between its
lockless map and double_pt_lock(): the pmd_same() recheck of dd95d2782a25 is what makes 7.0 safe,
and a move_pages_pte() without it is caught.
"""

from __future__ import annotations

import attrs
import pytest

from pgconform.harness.operations import KINDS, op_kinds_for
from pgconform.harness.scenario import (
    Op,
    VmaSpec,
    WorldSpec,
    build_world,
    start_op,
)
from pgconform.harness.sweep import WORLDS, Pair, explore_pair, pairs, sweep, worlds_for
from pgconform.implementation import SERIES_FUNCTIONS
from pgconform.kernel.arch import arches_except
from pgconform.kernel.objects import VM_UFFD_MISSING, Pte
from pgconform.kernel.version import V6_6, V7_0
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference import REFERENCE_FUNCTIONS
from pgconform.reference import userfaultfd as reference_userfaultfd
from pgconform.sim.effects import Lock, Unlock
from pgconform.sim.errors import Violation
from pgconform.versions.v7_0 import IMPLEMENTATION as V7_0_IMPL
from pgconform.versions.v7_0 import PT_RECLAIM_ARCHES
from tests.selftest.helpers import (
    explore_both_ways,
    finish,
    in_path,
    pte_at,
    run,
    run_to_end,
    step_until,
)

#: mainline 7.0 as registered (``v7.0``: on x86 its tables' destructor runs in the RCU callback,
#: which readers of a reclaimed table rely on)
IMPL_7_0 = V7_0_IMPL

#: the sweep's anon world: mm0 has an anonymous private VMA over [4, 12) (PMDs 1 and 2),
#: registered with userfaultfd (missing) after pages 5 and 9 were written
ANON = WORLDS["anon"]
#: the same VMA with only page 5 written: PMD 2 has no table
ANON_PMD1 = WorldSpec(vmas=ANON.vmas, prefault=((0, 5, True),))
#: the same VMA, not registered with userfaultfd
ANON_UNREGISTERED = WorldSpec(vmas=(VmaSpec(0, 4, 8, 4, shared=False, anon=True),),
                              prefault=((0, 5, True), (0, 9, True)))
#: a shared file VMA at [0, 4) and a private one at [4, 12), both registered, pages 1 and 5 in
FILE_VMAS = WorldSpec(vmas=(VmaSpec(0, 0, 4, 0, uffd_missing=True),
                            VmaSpec(0, 4, 8, 0, shared=False, uffd_missing=True)),
                      prefault=((0, 1, True), (0, 5, True)))
#: the anon VMA and, at [0, 4), a registered private file VMA with page 1 copied (COW)
ANON_AND_FILE = WorldSpec(vmas=(*ANON.vmas, VmaSpec(0, 0, 4, 0, shared=False, uffd_missing=True)),
                          prefault=((0, 5, True), (0, 1, True)))

MOVE_9_6 = Op("uffd_move", 0, 9, 6)    # from PMD 2 into the table PT reclaim frees
MOVE_5_9 = Op("uffd_move", 0, 5, 9)    # from the table PT reclaim frees into PMD 2
DONTNEED_PMD1 = Op("dontneed", 0, 4, 4)
X86_64_PT_RECLAIM = list(PT_RECLAIM_ARCHES)
ARCHES = list(arches_except("x86_64-alloc-ptlocks", "s390-6.7"))


def shadow(k, mm_i=0):
    mm = k.mms[mm_i]
    return {addr: v for (m, addr), v in k.oracles.data.shadow.items() if m is mm}


# ------------------------------------------------------------------------------------------------
# the model


def test_op_kind_registered():
    """uffd_move is a user operation, drawn only in a kernel that has it (its place in the
    kinds' bitmask: test_operations.py); move_pages_pte is a series function with a
    reference."""
    assert KINDS["uffd_move"].user_context and KINDS["uffd_move"].needs == "uffd_move"
    assert "uffd_move" not in op_kinds_for(V6_6) and "uffd_move" in op_kinds_for(V7_0)
    assert SERIES_FUNCTIONS["move_pages_pte"] == "userfaultfd"
    assert REFERENCE_FUNCTIONS["move_pages_pte"] is reference_userfaultfd.move_pages_pte
    assert str(MOVE_9_6) == "UFFDIO_MOVE(mm0: 9 -> 6)"
    assert str(Op("uffd_move", 0, 9, 22)) == "UFFDIO_MOVE(mm0: 9 -> 6, ALLOW_SRC_HOLES)"


def test_6_6_sweep_is_unchanged():
    """6.6 has neither the kind nor the anon world: its sweep pairs are what they were."""
    assert "anon" not in worlds_for(V6_6) and "anon" in worlds_for(V7_0)
    assert not any("uffd_move" in (p.first.kind, p.second.kind)
                   for p in pairs("shared", op_kinds_for(V6_6)))


def test_einval_in_6_6():
    """6.6 has no UFFDIO_MOVE: -EINVAL, and not a step taken."""
    k = build_world(ANON, REFERENCE)
    assert run(k, MOVE_9_6) == -22
    assert [entry[-1] for entry in k.m.trace] == ["start"]
    assert type(pte_at(k, 9)) is Pte and pte_at(k, 6) is None
    finish(k)


# ------------------------------------------------------------------------------------------------
# anonymous VMAs


@pytest.mark.parametrize("arch", ARCHES)
def test_anonymous_faults(arch):
    """A read fault maps a new zeroed anonymous page, a write then writes it; the VMA is in no
    i_mmap; a VM_UFFD_MISSING fault on a hole goes to the monitor; rss, mapcount, refcount and the
    data are exact at the end."""
    k = build_world(ANON_UNREGISTERED, IMPL_7_0, arch)
    mm = k.mms[0]
    vma = mm.vmas[0]
    assert vma.file is None and vma.anonymous and not vma.shared and vma.anon_vma is not None
    assert not k.files[0].i_mmap
    assert shadow(k) == {5: 1, 9: 1} and mm.rss["MM_ANONPAGES"] == 2
    assert run(k, Op("read", 0, 6)) == "ok"
    assert shadow(k)[6] == 0 and pte_at(k, 6).folio.anon and pte_at(k, 6).folio.data == [0]
    assert run(k, Op("write", 0, 6)) == "ok" and shadow(k)[6] == 1
    assert mm.rss == {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 3}
    finish(k)
    k = build_world(ANON, IMPL_7_0, arch)
    assert VM_UFFD_MISSING in k.mms[0].vmas[0].flags
    assert run(k, Op("write", 0, 7)) == "UFFD_MISSING" and pte_at(k, 7) is None
    finish(k)


@pytest.mark.parametrize("op, result", [
    (Op("uffd_copy", 0, 6, 1), 0),
    (Op("khugepaged", 0, 4, 1), "SCAN_VMA_CHECK"),
    (Op("madv_collapse", 0, 4, 1), "EINVAL"),
    (Op("uffd_continue", 0, 6), "EINVAL"),
    (Op("uffd_register", 0, 6, 4), "EINVAL"),   # WP
    (Op("uffd_register", 0, 6, 1), "EINVAL"),   # MINOR
    (Op("uffd_register", 0, 6, 3), 0),          # MISSING
    (Op("uffd_unregister", 0, 6), 0),
    (Op("dontneed", 0, 4, 8), "ok"),
    (Op("munmap", 0, 5), 0),
    (Op("exit", 0), 0),
    (Op("mprotect", 0, 5, 1), 0),
    (Op("smaps", 0, 5), 1),
    (Op("gup", 0, 5, 2), None),
    (Op("gup_fast", 0, 5, 1), None),
])
def test_other_operations_on_an_anonymous_vma(op, result):
    """Every path that assumed a file: UFFDIO_COPY maps a new anonymous page, khugepaged and
    MADV_COLLAPSE leave the VMA alone (no anonymous collapse in the model), UFFDIO_CONTINUE and
    MINOR (and, a model restriction, WP) registration are -EINVAL, zap, munmap and exit free the
    anonymous pages; the end state is exact."""
    k = build_world(ANON, IMPL_7_0)
    ret = run(k, op)
    if result is not None:
        assert ret == result
    if op.kind == "uffd_copy":
        assert pte_at(k, 6).folio.anon and shadow(k)[6] == 1001
    finish(k)


@pytest.mark.parametrize("op", [Op("fork", 0), Op("mremap", 0, 5, 0)])
def test_fork_and_mremap_of_an_anonymous_vma(op):
    """fork() shares the anonymous pages (COW) and links no i_mmap; mremap() moves the VMA and
    its pages; then every mm exits: the end state is exact throughout."""
    k = build_world(ANON, IMPL_7_0)
    assert type(run(k, op)) is int
    assert not k.files[0].i_mmap
    for mm_i in range(len(k.mms)):
        for vma in k.mms[mm_i].vmas:
            assert vma.file is None
    if op.kind == "fork":
        assert run(k, Op("write", 1, 5)) == "ok"  # the child copies on write
        assert shadow(k, 1)[5] == 2 and shadow(k, 0)[5] == 1
    finish(k)
    for mm_i in range(len(k.mms)):
        run(k, Op("exit", mm_i))
    finish(k)


# ------------------------------------------------------------------------------------------------
# moves


@pytest.mark.parametrize("arch", ARCHES)
def test_moves_carry_the_page(arch):
    """9 -> 6 (into the other table), then 6 -> 7 (within one): the same folio, now at the
    destination, writable, with its data; the source is none; folio->index and ->mapping follow
    the destination VMA; rss, mapcount and refcount do not change (one mm, mapped once)."""
    k = build_world(ANON, IMPL_7_0, arch)
    mm = k.mms[0]
    folio = pte_at(k, 9).folio
    before = dict(mm.rss)
    assert run(k, MOVE_9_6) == 1
    assert pte_at(k, 9) is None and pte_at(k, 6) == Pte(folio, 0, write=True)
    assert shadow(k) == {5: 1, 6: 1}
    assert folio.index == mm.vmas[0].linear_page_index(6) == 6
    assert folio.mapping is mm.vmas[0].anon_vma
    assert (folio.mapcount, folio.refcount) == (1, 1) and not folio.lock.owner
    assert run(k, Op("uffd_move", 0, 6, 7)) == 1
    assert pte_at(k, 6) is None and pte_at(k, 7).folio is folio and shadow(k) == {5: 1, 7: 1}
    assert run(k, Op("write", 0, 7)) == "ok" and folio.data == [2] and shadow(k)[7] == 2
    assert mm.rss == before
    finish(k)


def test_move_into_a_none_pmd_allocates_the_table():
    """move_pages() pte_alloc()s the destination table: 5 -> 9 with PMD 2 none."""
    k = build_world(ANON_PMD1, IMPL_7_0)
    mm = k.mms[0]
    assert mm.pmd_table.entries[2] is None and mm.nr_ptes == 1
    assert run(k, MOVE_5_9) == 1
    assert mm.nr_ptes == 2 and pte_at(k, 9).folio.anon and shadow(k) == {9: 1}
    finish(k)


@pytest.mark.parametrize("world, op, err", [
    (ANON, Op("uffd_move", 0, 9, 5), "EEXIST"),           # destination populated
    (ANON, Op("uffd_move", 0, 9, 9), "EEXIST"),           # onto itself
    (ANON, Op("uffd_move", 0, 6, 7), "ENOENT"),           # a hole in the source
    (ANON_PMD1, Op("uffd_move", 0, 10, 6), "ENOENT"),     # a none source PMD
    (ANON, Op("uffd_move", 0, 9, 2), "ENOENT"),           # no destination VMA
    (ANON, Op("uffd_move", 0, 14, 6), "ENOENT"),          # no source VMA
    (ANON_UNREGISTERED, Op("uffd_move", 0, 9, 6), "EINVAL"),  # destination not registered
    (FILE_VMAS, Op("uffd_move", 0, 5, 6), "EINVAL"),      # a private file VMA
    (FILE_VMAS, Op("uffd_move", 0, 1, 2), "EINVAL"),      # a shared file VMA
    (ANON_AND_FILE, Op("uffd_move", 0, 1, 6), "EINVAL"),  # file -> anonymous
    (ANON_AND_FILE, Op("uffd_move", 0, 5, 2), "EINVAL"),  # anonymous -> file
])
def test_errors(world, op, err):
    """The kernel's errors, and nothing moved."""
    k = build_world(world, IMPL_7_0)
    before = {a: pte_at(k, a) for a in range(16)}
    assert run(k, op) == err
    assert {a: pte_at(k, a) for a in range(16)} == before
    finish(k)


def test_allow_src_holes_counts_a_hole_as_moved():
    """UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: a hole in the source is moved (nothing to do)."""
    k = build_world(ANON, IMPL_7_0)
    assert run(k, Op("uffd_move", 0, 6, 7 + 16)) == 1
    assert pte_at(k, 6) is None and pte_at(k, 7) is None
    finish(k)


def test_a_page_shared_with_a_child_is_busy():
    """After fork() the page is not exclusive to the parent any more: -EBUSY."""
    k = build_world(ANON, IMPL_7_0)
    run(k, Op("fork", 0))
    assert run(k, MOVE_9_6) == "EBUSY"
    assert type(pte_at(k, 9)) is Pte and pte_at(k, 6) is None
    finish(k)


def test_a_locked_folio_is_waited_for():
    """folio_trylock() fails: unmap both tables, sleep in folio_lock(), start over, move."""
    k = build_world(ANON, IMPL_7_0)
    m = k.m
    folio = pte_at(k, 9).folio

    def holder():
        yield Lock(folio.lock)
        yield Unlock(folio.lock)

    h = m.spawn("CPU1", holder(), "holder")
    m.step(h)  # holds the folio lock
    t = start_op(k, "CPU0", MOVE_9_6)
    step_until(m, t, lambda t: type(t.pending) is Lock and t.pending.lock is folio.lock)
    assert m.blocker(t) is folio.lock
    run_to_end(m, h)
    run_to_end(m, t)
    assert t.result == 1 and pte_at(k, 6).folio is folio
    finish(k)


# ------------------------------------------------------------------------------------------------
# against PT reclaim


@pytest.mark.parametrize("arch", X86_64_PT_RECLAIM)
def test_move_against_pt_reclaim_passes_every_schedule(arch):
    """MADV_DONTNEED of PMD 1 (which reclaims its table) against a move into it (9 -> 6), out of
    it (5 -> 9) and within it (5 -> 6), both ways round: no oracle fires under any schedule with
    at most one preemption."""
    moves = (MOVE_9_6, MOVE_5_9, Op("uffd_move", 0, 5, 6))
    assert explore_both_ways(IMPL_7_0, arch, "anon", DONTNEED_PMD1, moves) > 300


def test_the_sweep_of_the_anon_world_passes_in_7_0():
    r = sweep(IMPL_7_0, "x86_64", worlds=("anon",), bound=1)
    assert r.violation is None, str(r.violation)
    assert r.complete and r.pairs > 200


def move_pages_pte_without_dst_recheck(k, mm, dst_pmdp, src_pmdp, dst_vma, src_vma, dst_addr,
                                       src_addr, mode):
    """move_pages_pte() as in 6.13, before dd95d2782a25: no pmd_same() of the destination."""
    return (yield from reference_userfaultfd.move_pages_pte_as(k, mm, dst_pmdp, src_pmdp, dst_vma,
                                                               src_vma, dst_addr, src_addr, mode,
                                                               dst_recheck=False))


NO_DST_RECHECK = attrs.evolve(
    V7_0_IMPL, name="v7-uffd-move-no-dst-pmd-same",
    overrides={**V7_0_IMPL.overrides, "move_pages_pte": move_pages_pte_without_dst_recheck},
    description="7.0 with UFFDIO_MOVE without the destination's pmd_same() recheck (before "
                "dd95d2782a25)")


def test_without_the_dst_recheck_the_move_writes_into_a_reclaimed_table():
    """The schedule by hand: the move maps the destination table and finds entry 6 none; PT
    reclaim empties PMD 1 and frees its table; the move takes both ptls, and pte_same() of the
    none entry passes: the page goes into the detached table (pt.write-detached), and the
    correct 7.0 code retries instead (the PMD changed) and moves it into a new table."""
    for impl, broken in ((NO_DST_RECHECK, True), (IMPL_7_0, False)):
        k = build_world(ANON, impl)
        m = k.m
        folio = pte_at(k, 9).folio
        t = start_op(k, "CPU0", MOVE_9_6)
        step_until(m, t, lambda t: type(t.pending) is Lock and in_path(t, "double_pt_lock"))
        d = start_op(k, "CPU1", DONTNEED_PMD1)
        run_to_end(m, d)
        assert k.mms[0].pmd_table.entries[1] is None  # reclaimed (the move's RCU keeps it)
        if broken:
            with pytest.raises(Violation) as excinfo:
                run_to_end(m, t)
            assert excinfo.value.clause == "pt.write-detached", str(excinfo.value)
            continue
        run_to_end(m, t)
        assert t.result == 1 and pte_at(k, 6).folio is folio and shadow(k) == {6: 1}
        finish(k)


@pytest.mark.parametrize("arch", X86_64_PT_RECLAIM)
def test_without_the_dst_recheck_the_sweep_catches_it(arch):
    """explore_pair() finds it with at most one preemption, in either order of the pair."""
    for pair in (Pair("anon", MOVE_9_6, DONTNEED_PMD1), Pair("anon", DONTNEED_PMD1, MOVE_9_6)):
        r = explore_pair(NO_DST_RECHECK, arch, pair, bound=1)
        assert r.violation is not None, f"{pair}: not caught in {r.schedules} schedules"
        assert r.violation.clause in {"pt.write-detached", "pt.use-after-free", "data.mismatch",
                                      "acct.rss", "acct.mapcount", "acct.refcount"}


def test_the_mutant_passes_without_pt_reclaim():
    """Where no table is reclaimed (arm: no ARCH_SUPPORTS_PT_RECLAIM), the recheck is not needed:
    the mutant passes the same pair (the oracles judge the race, not the code)."""
    for pair in (Pair("anon", MOVE_9_6, DONTNEED_PMD1), Pair("anon", DONTNEED_PMD1, MOVE_9_6)):
        r = explore_pair(NO_DST_RECHECK, "arm", pair, bound=1)
        assert r.violation is None, f"{pair}: {r.violation}"
