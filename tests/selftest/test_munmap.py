"""munmap: the VMA is detached, unlinked from i_mmap, zapped, and its page tables are freed through
the arch's mmu_gather path (pgconform/kernel/mmap.py, pgconform/kernel/mmu_gather.py).

Hand-driven schedules, as in test_oracles.py: the reference frees each layout's tables with the
right accounting (RCU-batched where MMU_GATHER_RCU_TABLE_FREE is selected, right after the TLB
flush on native x86-64), keeps tables a remaining VMA shares, meets khugepaged without a
violation, and a broken free_pgtables() is caught.
"""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.kernel import mmap as kmmap
from pgconform.kernel.arch import arches_except
from pgconform.kernel.mmu_gather import tlb_finish_mmu
from pgconform.oracle.pagetable import life
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.sim.effects import DowngradeWrite, DownWrite, IpiSync, Lock
from tests.selftest.helpers import (
    SHARED_TWO_TABLES,
    assert_clause,
    finish,
    in_path,
    run_to_end,
    step_until,
)

#: the same, private, with a COW (anonymous) page at 9
PRIVATE = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False),),
                    prefault=((0, 4, False), (0, 9, True)))
#: two VMAs of mm0 sharing PMD 1: A = [4, 6) (file pages 0-1), B = [6, 12) (file pages 2-7)
SPLIT = WorldSpec(vmas=(VmaSpec(0, 4, 2, 0), VmaSpec(0, 6, 6, 2)),
                  prefault=((0, 4, False), (0, 6, False), (0, 9, False)))

MUNMAP = Op("munmap", 0, 5)
MUNMAP_A = Op("munmap", 0, 4)
MUNMAP_B = Op("munmap", 0, 8)

LAYOUTS = list(arches_except("x86_64-nosplit"))


def storage_freed(table):
    return table.freed if table.page is None else table.page.freed


@pytest.mark.parametrize("arch", LAYOUTS)
@pytest.mark.parametrize("world", [SHARED_TWO_TABLES, PRIVATE], ids=["shared", "private"])
def test_munmap_frees_the_tables(arch, world):
    k = build_world(world, REFERENCE, arch)
    m, mm, f = k.m, k.mms[0], k.files[0]
    (vma,) = mm.vmas
    tables = list(k.tables)
    assert len(tables) == 2 and mm.nr_ptes == 2
    folios = [ent.folio for tb in tables for ent in tb.entries if ent is not None]
    t = start_op(k, "CPU0", MUNMAP)
    run_to_end(m, t)
    assert t.result == 0
    assert mm.find_vma(5) is None and vma not in f.i_mmap and mm.vmas == []
    assert mm.pmd_table.entries == [None] * k.geo.ptrs_per_pmd
    assert mm.nr_ptes == 0 and mm.rss == {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 0}
    # given back at once by a pagetable_pte_dtor() in __pte_free_tlb() (generic, x86) or by
    # page_table_free_rcu() clearing the AA bit (s390 6.6); after the grace period elsewhere
    early = k.arch.allocator in ("generic", "s390")
    assert all(tb.released == early and life(tb).state == "detached" for tb in tables)
    if k.arch.rcu_table_free:
        # MMU_GATHER_RCU_TABLE_FREE: the batch waits for a grace period (powerpc and s390 6.6
        # then free the page only when every table in it has gone)
        assert len(m.callbacks) == 1 and not any(storage_freed(tb) for tb in tables)
    else:
        # native x86-64, arm: tlb_remove_page(), freed by tlb_finish_mmu() after the flush
        assert not m.callbacks and all(tb.freed for tb in tables)
    finish(k)
    assert all(tb.released and storage_freed(tb) for tb in tables)
    assert all(p.freed for p in k.pt_pages)
    assert all(fo.mapcount == 0 for fo in folios)
    assert not any(key[0] is mm for key in k.oracles.data.shadow)
    # the address is gone: a later access faults with SIGSEGV and touches no table
    r = start_op(k, "CPU1", Op("write", 0, 9))
    finish(k)
    assert r.result == "SIGSEGV" and len(k.tables) == 2


def test_dtor_runs_before_the_gather_frees_the_page():
    """x86 ___pte_free_tlb(): pagetable_pte_dtor() (with ALLOC_SPLIT_PTLOCKS, the ptlock kfree)
    happens before the TLB-flush IPI; the page itself goes after it."""
    k = build_world(SHARED_TWO_TABLES, REFERENCE, "x86_64-alloc-ptlocks")
    m = k.m
    tables = list(k.tables)
    t = start_op(k, "CPU0", MUNMAP)
    step_until(m, t, lambda t: type(t.pending) is IpiSync and in_path(t, tlb_finish_mmu.__name__))
    assert all(tb.released and not tb.ptl.alive and not tb.freed for tb in tables)
    finish(k)
    assert all(tb.freed for tb in tables)


def test_a_shared_pmd_range_keeps_its_table():
    """free_pgd_range()'s floor/ceiling: unmapping A leaves the table of PMD 1, which B still
    covers; unmapping B then frees both tables."""
    k = build_world(SPLIT, REFERENCE, "s390")
    m, mm = k.m, k.mms[0]
    a, b = mm.vmas
    t1, t2 = k.tables
    start_op(k, "CPU0", MUNMAP_A)
    finish(k)
    assert mm.nr_ptes == 2 and not t1.released and t1.entries[0] is None
    assert t1.entries[2] is not None and mm.find_vma(6) is b and a not in k.files[0].i_mmap
    start_op(k, "CPU1", MUNMAP_B)
    finish(k)
    assert mm.nr_ptes == 0 and t1.freed and t2.freed and not m.callbacks


#: mm0 and mm1 both map the file shared at [4, 12); mm0 has pages 4 and 9 faulted in
TWO_MMS = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0), VmaSpec(1, 4, 8, 0)),
                    prefault=((0, 4, False), (0, 9, True)))


@pytest.mark.parametrize("arch", ["x86_64", "x86_pae", "powerpc64", "s390", "s390-6.7", "sparc64"])
def test_munmap_meets_retract(arch):
    """The free_pgtables() exception (it clears PMDs without the ptl): munmap has detached mm0's VMA
    (and
    downgraded mmap_lock) but not yet unlinked it from i_mmap; khugepaged, collapsing the file
    range through mm1, retracts mm0's table too (retract_page_tables() finds the VMA in i_mmap);
    munmap then zaps around the none PMD and frees only the other table."""
    k = build_world(TWO_MMS, REFERENCE, arch)
    m, mm0 = k.m, k.mms[0]
    t1, t2 = k.tables
    unmap = start_op(k, "CPU0", MUNMAP)
    step_until(m, unmap, lambda t: type(t.pending) is DowngradeWrite)
    m.step(unmap)
    collapse = start_op(k, "CPU1", Op("khugepaged", 1, 4))
    run_to_end(m, collapse)
    assert collapse.result == "SCAN_SUCCEED"
    # PMD 1 was cleared by retract (munmap has not zapped yet), PMD 2 is untouched
    assert mm0.pmd_table.entries[1] is None
    assert life(t1).state != "linked" and life(t2).state == "linked"
    assert mm0.nr_ptes == 1
    finish(k)
    assert mm0.nr_ptes == 0 and t1.released and t2.released


def test_munmap_meets_khugepaged_on_its_own_mm():
    """khugepaged and MADV_COLLAPSE find VMAs under mmap_lock: after the detach they no longer
    find the one munmap is tearing down, even with munmap holding mmap_lock for read only."""
    k = build_world(SHARED_TWO_TABLES, REFERENCE, "x86_64")
    m = k.m
    unmap = start_op(k, "CPU0", MUNMAP)
    step_until(m, unmap, lambda t: type(t.pending) is DowngradeWrite)
    m.step(unmap)
    for i, kind in enumerate(("khugepaged", "madv_collapse")):
        op = start_op(k, f"CPU{i + 1}", Op(kind, 0, 4))
        run_to_end(m, op)
        assert op.result in ("SCAN_VMA_CHECK", "EINVAL")
    finish(k)
    assert k.mms[0].nr_ptes == 0


def test_munmap_waits_for_retract_holding_i_mmap():
    """retract_page_tables() holds i_mmap_rwsem for read: unlink_file_vma() waits for it, so no
    table below a VMA retract can see is freed under it."""
    k = build_world(SHARED_TWO_TABLES, REFERENCE, "x86_64")
    m = k.m
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    step_until(m, collapse, lambda t: in_path(t, "retract_page_tables") and type(t.pending) is Lock)
    unmap = start_op(k, "CPU0", MUNMAP)
    step_until(m, unmap, lambda t: type(t.pending) is DownWrite and in_path(t, "unlink_file_vma"))
    assert m.blocker(unmap) is not None  # retract is in its i_mmap read section
    finish(k)
    assert k.mms[0].nr_ptes == 0 and all(tb.released for tb in k.tables)


# ------------------------------------------------------------------------------------------------
# broken frees are caught


def test_freeing_a_table_a_vma_still_covers_is_caught(monkeypatch):
    """free_pgd_range() without the floor/ceiling check frees PMD 1's table while B maps it."""
    original = kmmap.free_pgd_range

    def no_floor_ceiling(k, tlb, addr, end, floor, ceiling):
        yield from original(k, tlb, addr, end, 0, None)

    monkeypatch.setattr(kmmap, "free_pgd_range", no_floor_ceiling)

    def run():
        k = build_world(SPLIT, REFERENCE, "x86_64")
        start_op(k, "CPU0", MUNMAP_A)
        finish(k)

    v = assert_clause(run, "pt.pmd-write-unlocked")
    assert "free_pte_range" in str(v.diagram) or "WRITE" in v.diagram


@pytest.mark.parametrize("arch", ["x86_64", "s390"])
def test_skipping_unlink_file_vma_is_caught(monkeypatch, arch):
    """free_pgtables() that leaves the VMA in i_mmap frees tables rmap walkers and
    retract_page_tables() can still reach."""

    def no_unlink(k, vma):
        return
        yield

    monkeypatch.setattr(kmmap, "unlink_file_vma", no_unlink)

    def run():
        k = build_world(SHARED_TWO_TABLES, REFERENCE, arch)
        start_op(k, "CPU0", MUNMAP)
        finish(k)

    assert_clause(run, "pt.pmd-write-unlocked")


def test_skipping_the_zap_is_caught(monkeypatch):
    """unmap_region() without unmap_vmas(): the tables are freed with live entries."""

    def no_zap(k, tlb, vmas, start, end):
        return
        yield

    monkeypatch.setattr(kmmap, "unmap_vmas", no_zap)

    def run():
        k = build_world(SHARED_TWO_TABLES, REFERENCE, "powerpc64")
        start_op(k, "CPU0", MUNMAP)
        finish(k)

    assert_clause(run, "pt.free-nonempty")
