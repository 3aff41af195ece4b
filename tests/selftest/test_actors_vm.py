"""The actors that move, copy or tear down page tables: mremap (kernel/mremap.py), fork
(kernel/fork.py), exit_mmap (kernel/mmap.py) and hole punch (kernel/truncate.py).

Hand-driven schedules, as in test_oracles.py: each actor alone leaves a consistent end state on
every layout; each meets khugepaged's retract_page_tables()/collapse at the point that matters
and the reference comes through; the VMA lifetime clauses fire on a broken kernel action or
implementation and not on the reference under the same schedule; and 6.6.0's move_normal_pmd()
(without 6fa1066fc5d0) loses the race with retract_page_tables() (CVE-2024-50066).
"""

from __future__ import annotations

import types

import pytest

from pgconform.harness.operations import KINDS
from pgconform.harness.scenario import (
    Op,
    VmaSpec,
    WorldSpec,
    build_world,
    start_op,
)
from pgconform.implementation import Implementation
from pgconform.kernel import mmap as kmmap
from pgconform.kernel import mremap as kmremap
from pgconform.kernel.arch import ARCHES
from pgconform.kernel.fork import is_cow_mapping
from pgconform.kernel.mmap import FreedVma
from pgconform.oracle.pagetable import life
from pgconform.oracle.state import check_end_state
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import (
    SCAN_SUCCEED,
    i_mmap_lock_read,
    i_mmap_unlock_read,
    retract_page_tables_as,
)
from pgconform.registry import resolve
from pgconform.sim.effects import DownWrite, Load, Lock
from tests.selftest.helpers import assert_clause, finish, in_path, run_to_end, step_until

LAYOUTS = list(ARCHES)

#: mm0 maps file pages 0-3 shared at [4, 8) (PMD 1): page 4 read, page 5 written
SHARED = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0),), prefault=((0, 4, False), (0, 5, True)))
#: the same, private: page 5 is an anonymous COW copy (the VMA has an anon_vma)
PRIVATE = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0, shared=False),),
                    prefault=((0, 4, False), (0, 5, True)))
#: mm0 and mm1 both map file pages 0-3 shared at [4, 8); mm0 has page 4 faulted in
TWO_MMS = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0), VmaSpec(1, 4, 4, 0)), prefault=((0, 4, False),))
#: nothing faulted in: no page table below the VMA
SHARED_COLD = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0),))

#: mremap of mm0's VMA to the first free range with its PMD alignment ([0, 4): move_normal_pmd)
MREMAP_ALIGNED = Op("mremap", 0, 4, 0)
#: to the first free range with another alignment ([9, 13): move_ptes into two tables)
MREMAP_UNALIGNED = Op("mremap", 0, 4, 3)


def touch_everything(k):
    """Read and write every page of every mm through the model (faults, COW), then check the
    end state again: the data each address reads is what was last written there."""
    for i, mm in enumerate(list(k.mms)):
        for vma in list(mm.vmas):
            for a in range(vma.start, vma.end):
                start_op(k, "CPU2", Op("read", i, a))
                finish(k)
                start_op(k, "CPU2", Op("write", i, a))
                finish(k)


def test_op_kinds_registered():
    for kind in ("mremap", "fork", "exit", "punch_hole"):
        assert kind in KINDS
    # punch_hole is the file's, not a process's: it runs in no mm
    assert [KINDS[k].user_context for k in ("mremap", "fork", "exit", "punch_hole")] == [
        True, True, True, False]


# ------------------------------------------------------------------------------------------------
# each actor alone


@pytest.mark.parametrize("arch", LAYOUTS)
@pytest.mark.parametrize("world", [SHARED, PRIVATE], ids=["shared", "private"])
@pytest.mark.parametrize("op", [MREMAP_ALIGNED, MREMAP_UNALIGNED], ids=["aligned", "unaligned"])
def test_mremap_moves_the_mapping(arch, world, op):
    k = build_world(world, REFERENCE, arch)
    mm, f = k.mms[0], k.files[0]
    (old,) = mm.vmas
    anon_before = dict(k.oracles.data.shadow)
    t = start_op(k, "CPU0", op)
    finish(k)
    (new,) = mm.vmas
    assert t.result == new.start and new.start != 4 and new.end - new.start == 4
    assert type(old) is FreedVma and new in f.i_mmap and len(f.i_mmap) == 1
    assert new.pgoff == 0 and new.anon_vma is (None if world is SHARED else new.anon_vma)
    # the anonymous page's content moved with its PTE
    if world is PRIVATE:
        assert k.oracles.data.shadow == {(mm, new.start + 1): anon_before[(mm, 5)]}
    aligned = op is MREMAP_ALIGNED and kmremap.have_move_pmd(k.arch)
    assert mm.nr_ptes == (1 if op is MREMAP_ALIGNED else 2)
    if aligned:  # move_normal_pmd(): the very table moved
        assert mm.pmd_table.entries[1] is None and mm.pmd_table.entries[0] is not None
    touch_everything(k)


@pytest.mark.parametrize("arch", LAYOUTS)
@pytest.mark.parametrize("world", [SHARED, PRIVATE, TWO_MMS], ids=["shared", "private", "two"])
def test_fork_copies_what_it_must(arch, world):
    k = build_world(world, REFERENCE, arch)
    parent = k.mms[0]
    t = start_op(k, "CPU0", Op("fork", 0, 4))
    finish(k)
    child = k.mms[t.result]
    assert child is k.mms[-1] and child is not parent and len(child.vmas) == 1
    (cvma,) = child.vmas
    assert cvma in k.files[0].i_mmap
    if world is PRIVATE:
        # vma_needs_copy(): the parent has an anon_vma, so the table is copied; the anonymous
        # page is shared COW, write-protected in both
        assert child.nr_ptes == 1 and cvma.anon_vma is not None
        assert child.rss == parent.rss == {"MM_SHMEMPAGES": 1, "MM_ANONPAGES": 1}
        anon = k.pmd_table(parent.pmd_table.entries[1]).entries[1]
        assert anon.folio.anon and not anon.write and anon.folio.mapcount == 2
        assert k.pmd_table(child.pmd_table.entries[1]).entries[1].folio is anon.folio
        assert k.oracles.data.shadow[(child, 5)] == k.oracles.data.shadow[(parent, 5)]
    else:
        # shared file VMAs are not copied: the child faults
        assert child.nr_ptes == 0 and child.rss == {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 0}
    touch_everything(k)


@pytest.mark.parametrize("arch", LAYOUTS)
@pytest.mark.parametrize("world", [SHARED, PRIVATE, TWO_MMS], ids=["shared", "private", "two"])
def test_exit_tears_the_mm_down(arch, world):
    k = build_world(world, REFERENCE, arch)
    mm, f = k.mms[0], k.files[0]
    (vma,) = mm.vmas
    t = start_op(k, "CPU0", Op("exit", 0, 4))
    finish(k)
    assert t.result == 0 and mm.users == 0 and mm.vmas == [] and type(vma) is FreedVma
    assert vma not in f.i_mmap and mm.nr_ptes == 0
    assert mm.rss == {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 0}
    assert all(e is None for e in mm.pmd_table.entries)
    # the process is gone: its operations do nothing; exiting again is -ESRCH
    for kind in ("write", "exit", "fork", "mremap"):
        r = start_op(k, "CPU1", Op(kind, 0, 5))
        finish(k)
        assert r.result == -3
    touch_everything(k)


@pytest.mark.parametrize("arch", LAYOUTS)
@pytest.mark.parametrize("world", [SHARED, PRIVATE], ids=["shared", "private"])
def test_punch_hole_zeroes_the_range(arch, world):
    k = build_world(world, REFERENCE, arch)
    mm, f = k.mms[0], k.files[0]
    anon = dict(k.oracles.data.shadow)
    t = start_op(k, "CPU0", Op("punch_hole", 0, 0, 2))
    finish(k)
    assert t.result == 0 and f.content[:2] == [0, 0] and 0 not in f.pages and 1 not in f.pages
    # the file page at 4 is unmapped; a private COW copy at 5 stays mapped, with its content
    table = k.pmd_table(mm.pmd_table.entries[1])
    assert table.entries[0] is None
    assert (table.entries[1] is not None) == (world is PRIVATE)
    assert {key: v for key, v in k.oracles.data.shadow.items()} == anon
    start_op(k, "CPU1", Op("read", 0, 4))
    finish(k)
    assert f.pages[0].data == [0]
    touch_everything(k)


# ------------------------------------------------------------------------------------------------
# mremap racing retract_page_tables()


CVE_2024_50066 = resolve("zoo.move_normal_pmd_no_recheck")

#: mm0's VMA moves from [4, 8) to [0, 4) (move_normal_pmd); mm1 maps the same file pages, and
#: khugepaged collapses them through mm1, retracting mm0's table too
MREMAP_RETRACT = TWO_MMS


def mremap_paused_before_rmap_locks(arch, impl=REFERENCE):
    """mremap of mm0's aligned VMA has read its old PMD (a table) in move_page_tables() and waits
    for take_rmap_locks() before move_normal_pmd(); khugepaged collapses the range through mm1
    and retracts mm0's table (it needs only i_mmap_rwsem for read); then mremap goes on."""
    k = build_world(MREMAP_RETRACT, impl, arch)
    m, mm0 = k.m, k.mms[0]
    table = k.pmd_table(mm0.pmd_table.entries[1])
    mremap = start_op(k, "CPU0", MREMAP_ALIGNED)
    step_until(m, mremap, lambda t: type(t.pending) is DownWrite
               and in_path(t, "take_rmap_locks") and in_path(t, "move_pgt_entry"))
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED
    assert mm0.pmd_table.entries[1] is None and life(table).state != "linked"
    finish(k)
    return k


@pytest.mark.parametrize("arch", ["x86_64", "x86_pae", "powerpc64"])
def test_mremap_meets_retract_with_the_fix(arch):
    """6fa1066fc5d0: under the pmd lock move_normal_pmd() sees the PMD retract cleared and moves
    nothing; move_page_tables() finds it none and goes on.  The new VMA faults the THP in."""
    k = mremap_paused_before_rmap_locks(arch)
    mm0 = k.mms[0]
    (vma,) = mm0.vmas
    assert vma.start == 0 and mm0.nr_ptes == 0
    assert all(e is None for e in mm0.pmd_table.entries)
    touch_everything(k)


@pytest.mark.parametrize("arch", ["x86_64", "x86_pae", "powerpc64"])
def test_mremap_meets_retract_in_6_6_0(arch):
    """CVE-2024-50066: 6.6.0's move_normal_pmd() moves the none PMD retract left, as a page
    table: pmd_populate(pmd_pgtable(none))."""
    v = assert_clause(lambda: mremap_paused_before_rmap_locks(arch, CVE_2024_50066),
                      "pt.populate-dead")
    assert "CVE-2024-50066" in str(v) and "move_normal_pmd" in v.diagram


def test_mremap_move_ptes_meets_retract():
    """Unaligned: move_ptes() has snapshot the old PMD in pte_offset_map_lock() and is about to
    take the table's ptl; khugepaged retracts that table (i_mmap_rwsem read, pml + ptl); mremap
    then takes the detached table's ptl (RCU keeps it), sees pmd_same() fail, gets NULL: -EAGAIN,
    and finds the pmd none on the retry."""
    k = build_world(MREMAP_RETRACT, REFERENCE, "x86_64")
    m, mm0 = k.m, k.mms[0]
    mremap = start_op(k, "CPU0", MREMAP_UNALIGNED)
    step_until(m, mremap, lambda t: type(t.pending) is Lock and in_path(t, "move_ptes")
               and in_path(t, "pte_offset_map_lock"))
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED and mm0.pmd_table.entries[1] is None
    finish(k)
    (vma,) = mm0.vmas
    # the new range's first table was pte_alloc()ed before move_ptes() failed: it stays, empty
    assert vma.start == 9 and mm0.nr_ptes == 1
    touch_everything(k)


# ------------------------------------------------------------------------------------------------
# fork copying a table being retracted


def test_fork_meets_retract_shared():
    """fork (holding the parent's mmap_lock for write) has linked the child's VMA into i_mmap,
    and will not copy (no anon_vma); khugepaged, collapsing through mm1, retracts the parent's
    table (no mmap_lock needed) and finds the child's VMA without one; the child faults later."""
    k = build_world(TWO_MMS, REFERENCE, "x86_64")
    m, parent = k.m, k.mms[0]
    fork = start_op(k, "CPU0", Op("fork", 0, 4))
    step_until(m, fork, lambda t: in_path(t, "dup_mmap") and type(t.pending) is not DownWrite
               and len(k.files[0].i_mmap) == 3 and "vma_iter_bulk_store" in str(t.pending))
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED and parent.nr_ptes == 0
    finish(k)
    child = k.mms[fork.result]
    assert child.nr_ptes == 0
    touch_everything(k)


def test_fork_copying_meets_khugepaged_private():
    """fork copies the private VMA's table (it has an anon_vma) and has taken the child's table
    and snapshot the parent's, before spin_lock_nested() of the parent's ptl; khugepaged collapses
    the file pages meanwhile (try_to_unmap() takes the parent's ptl) and retract skips both VMAs
    (anon_vma).  Whatever fork then copies is consistent."""
    k = build_world(PRIVATE, REFERENCE, "x86_64")
    m, parent = k.m, k.mms[0]
    fork = start_op(k, "CPU0", Op("fork", 0, 4))
    step_until(m, fork, lambda t: type(t.pending) is Lock and t.pending.subclass == 1
               and in_path(t, "copy_pte_range"))
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    run_to_end(m, collapse)
    finish(k)
    child = k.mms[fork.result]
    assert parent.nr_ptes == 1 and child.nr_ptes == 1
    touch_everything(k)


def test_fork_without_write_protect_is_caught(monkeypatch):
    """A copy_pte_range() that forgets ptep_set_wrprotect(): parent and child share a writable
    anonymous page, and a write by one shows in the other."""
    from pgconform.kernel import fork as kfork

    def run(broken):
        if broken:
            monkeypatch.setattr(kfork, "is_cow_mapping", lambda vma: False)
        k = build_world(PRIVATE, REFERENCE, "x86_64")
        start_op(k, "CPU0", Op("fork", 0, 4))
        finish(k)
        touch_everything(k)

    run(False)
    assert is_cow_mapping(types.SimpleNamespace(shared=False))
    assert_clause(lambda: run(True), "data.mismatch")


# ------------------------------------------------------------------------------------------------
# exit racing khugepaged


def test_exit_waits_for_the_other_threads():
    """mm_users drops to 0 only after every thread of the process has left its system call: exit
    waits for a fault of mm0 in progress, and operations of mm0 started after it are -ESRCH."""
    k = build_world(SHARED_COLD, REFERENCE, "x86_64")
    m, mm0 = k.m, k.mms[0]
    fault = start_op(k, "CPU1", Op("read", 0, 6))
    step_until(m, fault, lambda t: in_path(t, "handle_mm_fault"))
    ex = start_op(k, "CPU0", Op("exit", 0, 4))
    assert m.blocker(ex) == (fault,) and mm0.users == 1
    run_to_end(m, fault)
    m.step(ex)
    assert mm0.users == 0
    late = start_op(k, "CPU1", Op("write", 0, 5))
    finish(k)
    assert late.result == -3 and ex.result == 0 and mm0.nr_ptes == 0


def test_exit_after_retract_checked_test_exit():
    """retract_page_tables() passed hpage_collapse_test_exit(mm0) and waits to take pml; mm0
    exits: its zap runs (mmap_lock read), but free_pgtables() waits in unlink_file_vma() for
    retract's i_mmap_rwsem; retract then frees the table itself (pte_free_defer) and
    free_pgtables() finds the PMD none."""
    k = build_world(TWO_MMS, REFERENCE, "x86_64")
    m, mm0 = k.m, k.mms[0]
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    step_until(m, collapse, lambda t: in_path(t, "retract_page_tables")
               and type(t.pending) is Lock and t.pending.subclass == 0)
    assert collapse.pending.lock.owner is None
    ex = start_op(k, "CPU0", Op("exit", 0, 4))
    step_until(m, ex, lambda t: type(t.pending) is DownWrite and in_path(t, "unlink_file_vma"))
    assert m.blocker(ex) is not None and mm0.users == 0
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED and mm0.pmd_table.entries[1] is None
    finish(k)
    assert mm0.nr_ptes == 0 and mm0.vmas == []
    touch_everything(k)


def test_exit_before_retract_is_skipped():
    """mm0 has dropped mm_users (and is in exit_mmap's unmap): retract sees
    hpage_collapse_test_exit() and leaves mm0's table to exit_mmap's free_pgtables()."""
    k = build_world(TWO_MMS, REFERENCE, "x86_64")
    m, mm0 = k.m, k.mms[0]
    table = k.pmd_table(mm0.pmd_table.entries[1])
    ex = start_op(k, "CPU0", Op("exit", 0, 4))
    step_until(m, ex, lambda t: in_path(t, "unmap_vmas"))
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED and life(table).state == "linked"
    finish(k)
    assert table.released and mm0.nr_ptes == 0


def test_exit_waits_for_khugepaged_in_collapse_pte_mapped_thp():
    """khugepaged_exit() takes mmap_lock for write: exit waits for khugepaged's mmap_lock read
    section (collapse_pte_mapped_thp() after hpage_collapse_test_exit())."""
    world = WorldSpec(vmas=(VmaSpec(0, 4, 4, 0),), thps=(0,), tables=((0, 4),),
                      prefault=((0, 4, False), (0, 5, False)))
    k = build_world(world, REFERENCE, "x86_64")
    m, mm0 = k.m, k.mms[0]
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    step_until(m, collapse, lambda t: in_path(t, "collapse_pte_mapped_thp"))
    ex = start_op(k, "CPU0", Op("exit", 0, 4))
    step_until(m, ex, lambda t: type(t.pending) is DownWrite and in_path(t, "khugepaged_exit"))
    assert m.blocker(ex) is not None
    finish(k)
    assert mm0.nr_ptes == 0


# ------------------------------------------------------------------------------------------------
# truncate racing collapse


@pytest.mark.parametrize("nr", [2, 4], ids=["part", "whole"])
def test_punch_hole_waits_for_the_collapsing_folio(nr):
    """collapse_file() has stored the new THP, locked, in the page cache and is retracting; the
    hole punch unmaps (i_mmap read, alongside retract), finds the THP and waits for its lock;
    then truncates it (whole) or zeroes its part (partial)."""
    k = build_world(SHARED, REFERENCE, "x86_64")
    m, f = k.m, k.files[0]
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    step_until(m, collapse, lambda t: in_path(t, "retract_page_tables") and type(t.pending) is Load)
    hpage = f.pages[0]
    assert hpage.nr == 4 and hpage.lock.owner is collapse
    punch = start_op(k, "CPU0", Op("punch_hole", 0, 0, nr))
    step_until(m, punch, lambda t: type(t.pending) is Lock and t.pending.lock is hpage.lock)
    assert m.blocker(punch) is not None
    finish(k)
    assert punch.result == 0 and f.content[:nr] == [0] * nr
    if nr == 4:
        assert hpage.freed and not any(i in f.pages for i in range(4))
    else:
        assert f.pages[0] is hpage and hpage.data[:2] == [0, 0] and hpage.data[2] != 0
    touch_everything(k)


def test_collapse_meets_a_punched_page():
    """The punch has removed page 1 before collapse_file() looks it up: collapse stops at the
    hole (this model does not fill holes); nothing is retracted."""
    k = build_world(SHARED, REFERENCE, "x86_64")
    m = k.m
    punch = start_op(k, "CPU0", Op("punch_hole", 0, 1, 1))
    run_to_end(m, punch)
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    finish(k)
    assert collapse.result != SCAN_SUCCEED and k.mms[0].nr_ptes == 1
    touch_everything(k)


# ------------------------------------------------------------------------------------------------
# VMA lifetime clauses


def retract_dropping_i_mmap_between_vmas(k, mapping, pgoff):
    """Broken retract_page_tables(): snapshots i_mmap, then retracts each VMA of the snapshot under
    i_mmap_rwsem taken afresh for that VMA alone: between two VMAs the lock is dropped, and the
    snapshot goes stale."""
    yield from i_mmap_lock_read(mapping)
    vmas = list(mapping.i_mmap)
    yield from i_mmap_unlock_read(mapping)
    for vma in vmas:
        one = types.SimpleNamespace(i_mmap=[vma], i_mmap_rwsem=mapping.i_mmap_rwsem)
        yield from retract_page_tables_as(k, one, pgoff)


WALK_WITHOUT_I_MMAP = Implementation(
    name="broken.retract_drops_i_mmap_rwsem_between_vmas",
    overrides={"retract_page_tables": retract_dropping_i_mmap_between_vmas})


def retract_meets_munmap(impl):
    """khugepaged (through mm0) is retracting mm0's table and waits for its pml; mm1 munmaps its
    VMA, which is next in i_mmap; then everything finishes."""
    k = build_world(TWO_MMS, impl, "x86_64")
    m = k.m
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    step_until(m, collapse, lambda t: in_path(t, "retract_page_tables")
               and type(t.pending) is Lock and t.pending.subclass == 0)
    unmap = start_op(k, "CPU0", Op("munmap", 1, 4))
    # munmap goes first whenever it can
    while not collapse.done:
        m.run(unmap, m.step_bound)
        m.step(collapse)
    finish(k)
    return k, unmap


def test_vma_use_after_free_fires():
    k, unmap = retract_meets_munmap(REFERENCE)  # munmap waited for retract's i_mmap_rwsem
    assert unmap.result == 0 and k.mms[1].vmas == []
    v = assert_clause(lambda: retract_meets_munmap(WALK_WITHOUT_I_MMAP), "vma.use-after-free")
    assert "mm1.vma[4:8]" in str(v)


def test_vma_free_linked_fires(monkeypatch):
    """munmap that forgets unlink_file_vma(): the freed VMA is still in i_mmap."""

    def run():
        k = build_world(SHARED_COLD, REFERENCE, "x86_64")
        start_op(k, "CPU0", Op("munmap", 0, 4))
        finish(k)

    run()

    def no_unlink(k, vma):
        return
        yield

    monkeypatch.setattr(kmmap, "unlink_file_vma", no_unlink)
    v = assert_clause(run, "vma.free-linked")
    assert "i_mmap" in str(v)


def test_child_mm_is_covered_by_the_end_state():
    """After fork, operations pick the child by index and the end-state oracles cover it."""
    k = build_world(PRIVATE, REFERENCE, "x86_64")
    t = start_op(k, "CPU0", Op("fork", 0, 4))
    finish(k)
    child = k.mms[t.result]
    start_op(k, "CPU0", Op("write", t.result, 6))
    finish(k)
    assert child.rss["MM_ANONPAGES"] == 2
    child.rss["MM_ANONPAGES"] += 1
    assert_clause(lambda: k.m.check(lambda: check_end_state(k)), "acct.rss")
