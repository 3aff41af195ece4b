"""The architecture actors of the model, driven by hand: arm's make_coherent() -> adjust_pte() on a
VIVT cache, powerpc's assert_pte_locked() under CONFIG_DEBUG_VM, and the A14 mutant (the ptl
derived from a re-read of the pmd) that those two patches of the series retired.

As in test_oracles.py, each test builds a small world, starts operations on CPUs and drives one
deterministic schedule; the reference comes through clean (end-of-run checks included) and a
broken implementation raises the clause.
"""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.implementation import Implementation
from pgconform.kernel.arch.arm import do_adjust_pte
from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.objects import PmdTable, PteTable, pmd_none
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import SCAN_SUCCEED
from pgconform.sim.effects import Load, Lock, SpinIsLocked, Store, Unlock
from pgconform.sim.errors import Violation
from pgconform.sim.machine import call_path
from pgconform.sim.sync import Spinlock
from pgconform.zoo import a14_ptl_from_reread_pmd
from tests.selftest.helpers import SHARED, finish, run_to_end, step_until

A14 = a14_ptl_from_reread_pmd.MUTANT

#: mm0 maps file pages 0-3 twice, both shared: at [0, 4) and (from the same pgoff) at [4, 12).
#: Page 0 is faulted in through the second mapping (address 4): address 0 is its alias.
ALIAS = WorldSpec(vmas=(VmaSpec(0, 0, 4, 0), VmaSpec(0, 4, 8, 0)), prefault=((0, 4, False),))
#: the same with the first mapping private (the faulting VMA need not be shared)
ALIAS_PRIVATE_FAULTER = WorldSpec(vmas=(VmaSpec(0, 0, 4, 0, shared=False), VmaSpec(0, 4, 8, 0)),
                                  prefault=((0, 4, False),))
#: the same with the already-mapped alias private: not VM_MAYSHARE, so make_coherent() skips it
ALIAS_PRIVATE_ALIAS = WorldSpec(vmas=(VmaSpec(0, 0, 4, 0), VmaSpec(0, 4, 8, 0, shared=False)),
                                prefault=((0, 4, False),))
#: a PMD-sized folio in the page cache for pages 0-3, mapped by PTEs (an empty table existed)
PTE_MAPPED_THP = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), thps=(0,), tables=((0, 4),),
                           prefault=((0, 4, False), (0, 5, False)))

READ_0 = Op("read", 0, 0)
READ_5 = Op("read", 0, 5)
DONTNEED_PMD1 = Op("dontneed", 0, 4, 4)
KHUGEPAGED = Op("khugepaged", 0, 4)
REFERENCED_0 = Op("referenced", 0, 0)


def entry(k, mm, addr):
    pmdval = mm.pmd_table.entries[k.geo.pmd_index(addr)]
    return k.pmd_table(pmdval).entries[k.geo.pte_index(addr)]


def steps_in(k, fname):
    """The effects of the run so far executed inside kernel function ``fname``."""
    return [(eff, res) for _, path, eff, res in k.m.trace if eff is not None and fname in path]


# ------------------------------------------------------------------------------------------------
# arm: update_mmu_cache_range() -> make_coherent() -> adjust_pte()


def alias_fault(impl, world=ALIAS):
    """A read fault at address 0 while the alias at address 4 maps the same file page."""
    k = build_world(world, impl, arch="arm")
    start_op(k, "CPU0", READ_0)
    finish(k)
    return k


@pytest.mark.parametrize("world", [ALIAS, ALIAS_PRIVATE_FAULTER],
                         ids=["shared-faulter", "private-faulter"])
def test_arm_fault_makes_shared_alias_uncached(world):
    k = alias_fault(REFERENCE, world)
    assert not k.m.failed
    mm = k.mms[0]
    alias, fresh = entry(k, mm, 4), entry(k, mm, 0)
    assert alias.folio is fresh.folio is k.files[0].pages[0]
    # the alias and the faulting PTE are both switched to the uncached memory type
    assert alias.uncached and fresh.uncached
    # adjust_pte() mapped the alias with pte_offset_map_nolock() and wrote it, under
    # mm->page_table_lock (the ptl of every table on arm), taken by the fault and not again
    writes = [eff for eff, _ in steps_in(k, "do_adjust_pte") if type(eff) is Store]
    assert len(writes) == 2
    assert steps_in(k, "pte_offset_map_nolock") and steps_in(k, "adjust_pte")
    assert not any(type(eff).__name__ == "Lock" and eff.lock is mm.page_table_lock
                   for eff, _ in steps_in(k, "adjust_pte"))


def test_arm_private_alias_is_left_alone():
    k = alias_fault(REFERENCE, ALIAS_PRIVATE_ALIAS)
    mm = k.mms[0]
    assert steps_in(k, "make_coherent") and not steps_in(k, "adjust_pte")
    assert not entry(k, mm, 4).uncached and not entry(k, mm, 0).uncached


def test_arm_adjust_pte_excludes_a_zap_of_the_alias():
    """The fault stops inside adjust_pte() right before it rewrites the alias PTE; MADV_DONTNEED
    of the alias's range waits for mm->page_table_lock (the fault holds it); then both go on."""
    k = build_world(ALIAS, REFERENCE, arch="arm")
    m = k.m
    fault = start_op(k, "CPU0", READ_0)
    zap = start_op(k, "CPU1", DONTNEED_PMD1)
    step_until(m, fault, lambda t: type(t.pending) is Store and "adjust_pte" in call_path(t.gen))
    m.run(zap, m.step_bound)
    assert m.blocker(zap) is k.mms[0].page_table_lock
    finish(k)
    assert entry(k, k.mms[0], 4) is None and entry(k, k.mms[0], 0).uncached


def adjust_pte_locking_always(k, vma, address, pfn):
    """adjust_pte() that takes the alias's ptl whatever the configuration (do_pte_lock()
    unconditional): without split PTE ptlocks that is mm->page_table_lock, which its caller,
    the fault, already holds."""
    mm = vma.mm
    pmdp = mm.pmd_offset(address, k.geo)
    if pmd_none((yield Load(pmdp.table, pmdp.idx))):
        return 0
    pte, ptl = yield from k.ops.pte_offset_map_nolock(k, mm, pmdp, address)
    if pte is None:
        return 0
    yield Lock(ptl)
    ret = yield from do_adjust_pte(k, vma, address, pfn, pte)
    yield Unlock(ptl)
    yield from k.ops.pte_unmap(k, pte)
    return ret


def test_arm_adjust_pte_taking_the_held_ptl_is_caught():
    """A plugged-in adjust_pte() that locks the alias's ptl on a configuration where that is the
    lock the fault holds deadlocks on itself; the reference's leaves it alone
    (test_arm_fault_makes_shared_alias_uncached)."""
    impl = Implementation(name="adjust-pte-always-locks",
                          overrides={"adjust_pte": adjust_pte_locking_always})
    with pytest.raises(Violation) as excinfo:
        alias_fault(impl)
    assert excinfo.value.clause == "lock.recursive", str(excinfo.value)


def test_arm_a14_is_harmless():
    """Without split PTE ptlocks the re-read pmd names the same lock: A14 runs clean on arm."""
    k = alias_fault(A14)
    assert entry(k, k.mms[0], 4).uncached


# ------------------------------------------------------------------------------------------------
# powerpc64: assert_pte_locked() at the PTE updates


def _asserts(k):
    return [res for eff, res in steps_in(k, "assert_pte_locked") if type(eff) is SpinIsLocked]


@pytest.mark.parametrize("world, op, site", [
    (SHARED, DONTNEED_PMD1, "zap_pte_range"),
    (SHARED, REFERENCED_0, "_referenced_one"),
    (SHARED, KHUGEPAGED, "_unmap_one"),
    (PTE_MAPPED_THP, KHUGEPAGED, "collapse_pte_mapped_thp"),
], ids=["zap", "folio_referenced", "try_to_unmap", "collapse_pte_mapped_thp"])
def test_powerpc_assert_pte_locked_passes_for_the_reference(world, op, site):
    k = build_world(world, REFERENCE, arch="powerpc64")
    start_op(k, "CPU0", op)
    finish(k)
    checks = [res for _, path, eff, res in k.m.trace
              if type(eff) is SpinIsLocked and site in path and "assert_pte_locked" in path]
    assert checks and all(checks)


def test_powerpc_assert_pte_locked_returns_on_none_pmd():
    """The pmd_none() early return (the fixup of patch 04): nothing is mapped, nothing asserted."""
    k = build_world(SHARED, REFERENCE, arch="powerpc64")
    t = k.m.spawn("CPU0", assert_pte_locked(k, k.mms[0], 0), "assert_pte_locked(mm0, 0)")
    run_to_end(k.m, t)
    assert [str(eff) for _, _, eff, _ in k.m.trace if eff is not None] == ["READ pmd_table(mm0)[0]"]


def test_powerpc_assert_pte_locked_catches_an_unlocked_update():
    """Called with the pmd present and nobody holding the ptl: the BUG (a caller that updates a
    PTE without the lock)."""
    k = build_world(SHARED, REFERENCE, arch="powerpc64")
    t = k.m.spawn("CPU0", assert_pte_locked(k, k.mms[0], 4), "assert_pte_locked(mm0, 4)")
    with pytest.raises(Violation) as excinfo:
        k.m.run(t, k.m.step_bound)
    assert excinfo.value.clause == "pt.assert-pte-locked"
    assert "is not locked by anyone" in excinfo.value.message


def nolock_fails(k, mm, pmdp, addr):
    """pte_offset_map_nolock() that never maps (as if every pmd were bad)."""
    return None, None
    yield


def nolock_lock_copy(k, mm, pmdp, addr):
    """pte_offset_map_nolock() handing back a copy of the ptl rather than the ptl (a spinlock
    passed by value): nobody ever holds the lock it names."""
    pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, None
    ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
    return pte, Spinlock(f"copy of {ptl!r}", cls="ptlock")


@pytest.mark.parametrize("nolock, words", [
    (nolock_fails, "BUG_ON(!pte)"),
    (nolock_lock_copy, "is not locked by anyone"),
], ids=["no-map", "lock-copy"])
def test_assert_pte_locked_fires_on_a_broken_implementation(nolock, words):
    """MADV_DONTNEED zaps page 0 under the ptl (the reference pte_offset_map_lock()); the assertion
    after the clear maps the entry through the broken pte_offset_map_nolock()."""
    impl = Implementation(name=nolock.__name__, overrides={"pte_offset_map_nolock": nolock})

    def zap(arch):
        k = build_world(SHARED, impl, arch=arch)
        start_op(k, "CPU0", DONTNEED_PMD1)
        finish(k)

    with pytest.raises(Violation) as excinfo:
        zap("powerpc64")
    assert excinfo.value.clause == "pt.assert-pte-locked"
    assert words in excinfo.value.message
    assert "assert_pte_locked" in excinfo.value.diagram
    zap("x86_64")  # no DEBUG_VM assertion there: the zap itself is correct


# ------------------------------------------------------------------------------------------------
# A14: the ptl from a re-read of *pmd


def _after_snapshot(t):
    """The fault has snapshotted the pmd in pte_offset_map_nolock(): the mutant is about to read
    *pmd again for the lock, the reference about to read the entry from the snapshot's table."""
    eff = t.pending
    if type(eff) is not Load:
        return False
    if isinstance(eff.page, PmdTable):
        return call_path(t.gen)[-1] == "pte_offset_map_nolock"
    return isinstance(eff.page, PteTable) and call_path(t.gen)[-1] == "handle_pte_fault"


def fault_vs_retract_between_map_and_lockptr(impl, arch):
    """A read fault at 5 maps PMD 1's table in pte_offset_map_nolock() and stops there; khugepaged
    collapses the range and retracts that table (the pmd becomes none); the fault goes on."""
    k = build_world(SHARED, impl, arch=arch)
    m = k.m
    fault = start_op(k, "CPU0", READ_5)
    collapse = start_op(k, "CPU1", KHUGEPAGED)
    step_until(m, fault, _after_snapshot)
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED
    assert k.mms[0].pmd_table.entries[1] is None
    finish(k)
    return k


@pytest.mark.parametrize("arch", ["x86_64", "powerpc64", "x86_64-nosplit"])
def test_reference_passes_the_a14_schedule(arch):
    k = fault_vs_retract_between_map_and_lockptr(REFERENCE, arch)
    assert not k.m.failed


@pytest.mark.parametrize("arch", sorted(A14.arches))
def test_a14_is_caught(arch):
    with pytest.raises(Violation) as excinfo:
        fault_vs_retract_between_map_and_lockptr(A14, arch)
    v = excinfo.value
    assert v.clause == "pt.lock-mismatch" and v.clause in A14.expected
    assert arch in A14.arches
    assert "pte_lockptr() of None" in v.message and "handle_pte_fault" in v.diagram


def test_a14_is_harmless_without_split_ptlocks():
    k = fault_vs_retract_between_map_and_lockptr(A14, "x86_64-nosplit")
    assert not k.m.failed
    assert "x86_64-nosplit" not in A14.arches and "arm" not in A14.arches
