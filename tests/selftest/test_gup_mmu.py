"""GUP-fast, slow GUP and a secondary MMU: their oracles fire on broken code, and the reference
comes through the same deterministic schedules clean (end-of-run checks included)."""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.harness.sweep import Pair, explore_pair
from pgconform.implementation import Implementation
from pgconform.kernel import gup
from pgconform.kernel.gup import gup_put_folio, stack_pmd, try_grab_folio
from pgconform.kernel.memory import zap_pte_range
from pgconform.kernel.objects import pte_present
from pgconform.kernel.secondary_mmu import device_access, secondary_mmus
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import SCAN_PAGE_COUNT, SCAN_SUCCEED
from pgconform.sim.effects import Atomic, DownRead, Load, Lock, UpRead
from pgconform.sim.errors import Violation
from pgconform.zoo import a9_retract_no_pmd_notifier
from tests.selftest.helpers import finish, in_path, run_to_end, step_until

#: mm0 maps the 8-page shmem file shared at [4, 12) with a device (secondary MMU); file page 0
#: (address 4) is faulted in, so PMD 1 has a PTE table
SHARED_DEV = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False),),
                       secondary_mmu=True)
#: the same mapping private, page 0 read-faulted in (a read-only file PTE a write COWs)
PRIVATE = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False),), prefault=((0, 4, False),))


def smmu_of(k, mm=0):
    return secondary_mmus(k.mms[mm])[0]


# ------------------------------------------------------------------------------------------------
# A9: the device walks a retracted table through its cached pointer


def blind_pmd_clear_oracle(k, mm=0):
    """Run the PMD store hook of ``mm`` as if an mmu_notifier range covered every PMD write, so
    that mmu.pmd-clear-unnotified (which catches A9 at the clear) stays silent and the
    secondary-MMU oracle is judged on its own."""
    table = k.mms[mm].pmd_table
    hook = table.check_store
    ranges = k.mms[mm].notifier_ranges

    def blinded(m, t, page, idx, value):
        whole = (idx * k.geo.ptrs_per_pte, (idx + 1) * k.geo.ptrs_per_pte)
        ranges.append(whole)
        try:
            hook(m, t, page, idx, value)
        finally:
            ranges.remove(whole)

    table.check_store = blinded


def device_across_retract(impl, blind=True):
    """khugepaged collapses PMD 1 and stops before retract_page_tables(): the old pages are
    unmapped (the table T is empty) and the THP is locked in the page cache.  The device reads 5:
    its fault walks through T, finds nothing and faults, which waits for the THP's lock.
    khugepaged retracts T and finishes; T's grace period passes and T is freed; the device's fault
    maps the THP by PMD, and its driver installs what the walk went through unless the notifier
    sequence says an invalidation came in between.  Then the device reads 6."""
    k = build_world(SHARED_DEV, impl)
    m = k.m
    if blind:
        blind_pmd_clear_oracle(k)
    smmu = smmu_of(k)
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    step_until(m, collapse, lambda t: in_path(t, "retract_page_tables"))
    dev = start_op(k, "CPU0", Op("device", 0, 5))
    m.run(dev, m.step_bound)
    assert type(dev.pending) is Lock and dev.pending.lock.sleeps, dev.pending  # the THP's lock
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED
    for cb in m.ready_callbacks():  # the grace period: pte_free_now() frees T
        m.run_callback(cb)
    run_to_end(m, start_op(k, "CPU2", Op("read", 0, 8)))  # a new table for PMD 2 reuses T's frame
    run_to_end(m, dev)
    assert dev.result == "ok"
    m.run(m.spawn("CPU0", device_access(k, smmu, 6), "device DMA read mm0@6"), m.step_bound)
    finish(k)
    return k


def test_a9_device_walks_the_freed_table():
    with pytest.raises(Violation) as excinfo:
        device_across_retract(a9_retract_no_pmd_notifier.MUTANT)
    v = excinfo.value
    assert v.clause == "mmu.secondary-stale-table", str(v)
    assert "freed and reused" in str(v)


def test_a9_is_caught_at_the_clear_when_not_blinded():
    with pytest.raises(Violation) as excinfo:
        device_across_retract(a9_retract_no_pmd_notifier.MUTANT, blind=False)
    assert excinfo.value.clause == "mmu.pmd-clear-unnotified", str(excinfo.value)


def test_reference_device_across_retract_is_clean():
    k = device_across_retract(REFERENCE)
    assert not k.m.failed
    smmu = smmu_of(k)
    assert not smmu.pwc  # the PMD is huge now: no table to cache
    assert set(smmu.tlb) == {5, 6}


# ------------------------------------------------------------------------------------------------
# a cached translation outliving the mapping


def dontneed_without_notifier(k, mm, start, end):
    """A broken MADV_DONTNEED: zap_pte_range() with no mmu_notifier range around it."""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(start)
    pmdp = mm.pmd_offset(start, k.geo)
    yield from zap_pte_range(k, vma, pmdp, start, end)
    yield UpRead(mm.mmap_lock)


def device_across_zap(zap):
    k = build_world(SHARED_DEV, REFERENCE)
    m = k.m
    smmu = smmu_of(k)
    run_to_end(m, m.spawn("CPU0", device_access(k, smmu, 5), "device DMA read mm0@5"))
    assert 5 in smmu.tlb
    run_to_end(m, m.spawn("CPU1", zap(k, k.mms[0], 4, 8), "MADV_DONTNEED mm0@4+4"))
    run_to_end(m, m.spawn("CPU0", device_access(k, smmu, 5), "device DMA read mm0@5"))
    finish(k)
    return k


def test_device_uses_a_translation_the_zap_did_not_invalidate():
    with pytest.raises(Violation) as excinfo:
        device_across_zap(dontneed_without_notifier)
    assert excinfo.value.clause == "mmu.secondary-stale-translation", str(excinfo.value)


def test_reference_zap_invalidates_the_device():
    from pgconform.kernel.memory import madvise_dontneed

    k = device_across_zap(madvise_dontneed)
    assert not k.m.failed


# ------------------------------------------------------------------------------------------------
# GUP-fast


def gup_pte_range_no_recheck(k, mm, pmd, pmdp, addr, end, pages):
    """gup_pte_range() as before the PMD recheck (70cbc3cc78a9) and without the PTE recheck:
    whatever the PTE read named is returned once grabbed.  Plain implementation code: it calls
    no check and never confirms a pin with gup_pte_unchanged()."""
    ptep = yield from k.ops.pte_offset_map(k, stack_pmd(k, pmd), addr)
    if ptep is None:
        return 0
    pte = yield Load(ptep.table, ptep.idx)
    ret = 0
    if pte_present(pte):
        folio = yield from try_grab_folio(k, pte.folio)
        if folio is not None:
            pages.append((addr, folio, pte.idx))
            ret = int(addr + 1 == end)
    yield from k.ops.pte_unmap(k, ptep)
    return ret


def gup_pte_range_pmd_recheck_only(k, mm, pmd, pmdp, addr, end, pages):
    """gup_pte_range() with the PMD recheck but with a PTE recheck of its own (a plain load), not
    gup_pte_unchanged(): right, but it shows the model no confirmation, so its pages are judged
    when it returns."""
    ptep = yield from k.ops.pte_offset_map(k, stack_pmd(k, pmd), addr)
    if ptep is None:
        return 0
    pte = yield Load(ptep.table, ptep.idx)
    ret = 0
    if pte_present(pte):
        folio = yield from try_grab_folio(k, pte.folio)
        if folio is not None:
            if pmd == (yield Load(pmdp.table, pmdp.idx)) and \
                    pte == (yield Load(ptep.table, ptep.idx)):
                pages.append((addr, folio, pte.idx))
                ret = int(addr + 1 == end)
            else:
                yield from gup_put_folio(k, folio)
    yield from k.ops.pte_unmap(k, ptep)
    return ret


GUP_NO_RECHECK = Implementation(name="gup-fast-no-recheck",
                                overrides={"gup_pte_range": gup_pte_range_no_recheck})


def gup_fast_across_cow(arch="powerpc64", impl=REFERENCE):
    """GUP-fast reads the read-only file PTE at 4 of a private mapping and takes its reference;
    a write at 4 replaces it with an anonymous copy (COW); GUP-fast goes on.  (On powerpc the
    PTE change interrupts nobody: no IPI waits for GUP-fast's IRQ-off section.)"""
    k = build_world(PRIVATE, impl, arch=arch)
    m = k.m
    g = start_op(k, "CPU0", Op("gup_fast", 0, 4, 1))
    step_until(m, g, lambda t: type(t.pending) is Atomic and "try_grab_folio" in t.pending.label)
    m.step(g)
    run_to_end(m, start_op(k, "CPU1", Op("write", 0, 4)))
    run_to_end(m, g)
    finish(k)
    return k, g


def test_gup_fast_without_its_rechecks_returns_the_replaced_page():
    """A plugged-in gup_pte_range() without its rechecks is caught: the page it returns is not
    the one the address maps any more (judged when it returns: it confirmed nothing)."""
    with pytest.raises(Violation) as excinfo:
        gup_fast_across_cow(impl=GUP_NO_RECHECK)
    assert excinfo.value.clause == "gup.stale-page", str(excinfo.value)


def test_gup_fast_without_its_rechecks_is_caught_by_the_sweep():
    """The same broken gup_pte_range() is found by the sweep of GUP-fast against a write, with
    no hand-made schedule; the reference's passes the same sweep."""
    pair = Pair("private", Op("gup_fast", 0, 4, 1), Op("write", 0, 4))
    r = explore_pair(GUP_NO_RECHECK, "powerpc64", pair, bound=1)
    assert r.violation is not None and r.violation.clause == "gup.stale-page", r.violation
    clean = explore_pair(REFERENCE, "powerpc64", pair, bound=1)
    assert clean.violation is None and clean.complete


def test_a_right_gup_pte_range_that_confirms_nothing_is_judged_at_return():
    """A gup_pte_range() with both rechecks written as plain loads passes a run where nothing
    races with it (its pages are judged when it returns, and still mapped then)."""
    impl = Implementation(name="gup-own-recheck",
                          overrides={"gup_pte_range": gup_pte_range_pmd_recheck_only})
    k = build_world(PRIVATE, impl, arch="powerpc64")
    g = start_op(k, "CPU0", Op("gup_fast", 0, 4, 1))
    finish(k)
    assert not k.m.failed and g.result == 1
    assert any("unconfirmed" in str(eff) for t, _, eff, _ in k.m.trace if t is g)


def test_reference_gup_fast_recheck_falls_back_to_slow_gup():
    k, g = gup_fast_across_cow()
    assert not k.m.failed and g.result == 1
    # the PTE recheck failed, so the page came from follow_page_pte()
    assert any(in_path_name(path, "follow_page_pte") for _, path, _, _ in k.m.trace)


def in_path_name(path, name):
    return any(name in fn for fn in path)


def test_a_gup_reference_makes_collapse_back_off():
    """A page held by GUP cannot be frozen: collapse_file() fails with SCAN_PAGE_COUNT; and a
    page frozen by collapse_file() cannot be grabbed: GUP-fast falls back and waits."""
    k = build_world(SHARED_DEV, REFERENCE)
    m = k.m
    g = start_op(k, "CPU0", Op("gup_fast", 0, 4, 1))
    step_until(m, g, lambda t: type(t.pending) is Atomic and "try_grab_folio" in t.pending.label)
    m.step(g)
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    run_to_end(m, collapse)
    assert collapse.result == SCAN_PAGE_COUNT
    finish(k)


def test_gup_of_every_kind_is_clean_on_the_reference():
    for op in (Op("gup_fast", 0, 4, 2), Op("gup", 0, 6, 2), Op("gup_fast", 0, 7, 2),
               Op("device", 0, 5)):
        k = build_world(SHARED_DEV, REFERENCE)
        t = start_op(k, "CPU0", op)
        finish(k)
        assert t.result in (1, 2, "ok"), (op, t.result)


def test_arm_without_lpae_has_no_lockless_gup():
    """arch/arm/Kconfig (6.6): HAVE_FAST_GUP only with ARM_LPAE; the VIVT arm modelled here frees
    page tables without a grace period or an IPI, so a lockless walk there would be a
    use-after-free of the model's making.  get_user_pages_fast() takes the slow path; the
    schedule where the lockless walk met munmap's free (found by CI) passes."""
    from pathlib import Path

    from pgconform.harness import replay
    from pgconform.kernel.arch import ARCHES
    from pgconform.sim.effects import IrqDisable

    assert not ARCHES["arm"].fast_gup and ARCHES["x86_64"].fast_gup
    string = (Path(__file__).parent / "data" / "arm_gup_fast_replay.txt").read_text()
    run = replay.decode(string)
    machine, v = replay.run_steps(replay.machine_for(run), run.steps)
    assert v is None, v
    gup = [t for t in machine.k.m.tasks if t.label.startswith("get_user_pages_fast")]
    assert gup and all(t.done for t in gup)
    assert not any(type(e) is IrqDisable and t in gup for t, _, e, _ in machine.k.m.trace)


def test_a_second_exit_does_not_drop_a_device_reference():
    """A process exits once: a second exit op of the same mm must not drop the mm_users reference
    a device fault holds (mmget_not_zero()), which let exit_mmap() free a table the fault then
    filled (pt.free-nonempty, found by CI on the reference); no new operation of the process
    starts once it has exited, however many references others hold."""
    from pathlib import Path

    from pgconform.harness import replay

    string = (Path(__file__).parent / "data" / "exit_twice_with_device_replay.txt").read_text()
    run = replay.decode(string)
    machine, v = replay.run_steps(replay.machine_for(run, "reference"), run.steps)
    assert v is None, v
    assert machine.k.mms[0].exited


#: 2026-12-03's soak, powerpc64, scenario private: GUP-fast passes its PMD recheck, mremap's
#: move_normal_pmd() clears that PMD, and GUP-fast's PTE recheck finds the entry unchanged in the
#: now detached table (on powerpc no IPI waits for GUP-fast's IRQ-off section)
SOAK_MREMAP_BETWEEN_RECHECKS = (
    "pgc1:eNqVUrtuwzAM_BfOGhwncVFP_YcC7RAYBmFTsVDrAVqOUQT-91Jy4HTo0o0ij3enk-6A3A1QQ_ALceiqEygwNozSYtLE"
    "5DqS1tSRQzY-IdncMOZmpDBBfbmAcSa2i-exB3UHzUQMdalg8BHqQsGXcb0gD-fiXJQvCgJydAlzF_1rhiaIsFsmi0HIrRW8"
    "gmUQD8KxqiRskb__tzRFvEpZSRNZppezKtWxkWN2K1xvQvCZDu-BOkgypHEeY7pYoSqlcZyoUVKfVOR5K6vf5YYQzpvFlMfG"
    "-WHxwZhcSQguiBWZn0Tj6rXO1TQgk_jIHNkuxzyYte5ba5yXlJLW3pkm465bb23WVTwA9jeUd2qjb0fffaU3cJuOkVNdZtBG"
    "rR7hVc_wZvcM77iHV77-sXXYtxY2-Q887rYnnnaYeHayszbN-gP2xMCq")


def test_gup_fast_is_judged_at_its_pmd_recheck(monkeypatch):
    """GUP-fast's pin stands for what the address mapped at its PMD recheck: a table unlinked
    after that recheck and before the PTE recheck (the soak's schedule) is no stale page, and the
    same schedule judged as if the PMD had been confirmed after the unlink is one."""
    from pgconform.harness import replay

    run = replay.decode(SOAK_MREMAP_BETWEEN_RECHECKS)
    again = replay.replay_run(run)
    assert again.stale is None and again.violation is None, again.violation
    recheck = gup._pte_recheck

    def confirmed_late(m, t, k, mm, addr, ptep, pte, folio, pmd_confirmed, pages):
        return recheck(m, t, k, mm, addr, ptep, pte, folio, len(m.trace), pages)

    monkeypatch.setattr(gup, "_pte_recheck", confirmed_late)
    late = replay.replay_run(run)
    assert late.violation is not None and late.violation.clause == "gup.stale-page"
    assert "which is detached" in late.violation.message
