"""A secondary MMU: a device that shares the process's address space through an mmu_notifier
subscription (an IOMMU doing SVA with its IOTLB and paging-structure caches, an HMM mirror, KVM's
shadow pages), Linux 6.6.

The device caches two things for its mm: translations ``addr -> (folio, subpage)`` (its TLB, or
its own page table), and pointers to the CPU's PTE tables, per PMD (a paging-structure cache: the
PMD -> table step of a walk).  It fills them by walking the CPU page tables the way
hmm_range_fault() does (mm/hmm.c: under mmap_lock for read, pte_offset_map(), faulting what is not
present) inside the interval-notifier read side (mmu_interval_read_begin() before the walk,
mmu_interval_read_retry() under the driver lock before installing), and drops them only in its
ops->invalidate, called by mmu_notifier_invalidate_range_start() for a range that overlaps.

A device access uses the TLB, else reads the PTE through its cached table pointer (as IOMMU
hardware walks from a paging-structure-cache hit), else takes a device fault that fills.
"""

from __future__ import annotations

import attrs

from pgconform.kernel.memory import VM_FAULT_ERROR, __handle_mm_fault
from pgconform.kernel.mmap import mmget_not_zero, mmput
from pgconform.kernel.mmu_notifier import MmuNotifierSubscriptions
from pgconform.kernel.objects import pmd_none, pmd_trans_huge, pte_present
from pgconform.sim.effects import Atomic, DownRead, Effect, Load, Lock, Unlock, UpRead
from pgconform.sim.sync import SleepLock

EFAULT = -14
EBUSY = -16
ENODEV = -19


@attrs.define(slots=True, eq=False, repr=False)
class SecondaryMmu:
    """A struct mmu_interval_notifier over [start, end) of ``mm`` plus its driver's state: the
    driver lock that serialises invalidation against installing (the "user_lock" of
    mmu_interval_read_retry()), ``tlb`` (addr -> (folio, idx)) and ``pwc`` (PMD index -> the PTE
    table object cached for it).  ``invalidate`` is ops->invalidate."""

    name: str
    mm: object
    start: int
    end: int
    lock: SleepLock
    invalidate_seq: int = 1
    tlb: dict = attrs.field(factory=dict)
    pwc: dict = attrs.field(factory=dict)
    invalidate: object = None

    def __repr__(self) -> str:
        return self.name


def mmu_interval_notifier_insert(k, mm, name: str | None = None) -> SecondaryMmu:
    """mm/mmu_notifier.c: mmu_interval_notifier_insert() (6.6) over the whole user address space,
    done at world set-up (no invalidation in progress: the subscriber's sequence is the mm's
    minus one, so mmu_interval_read_begin() does not wait)."""
    subs = mm.notifier_subscriptions
    if subs is None:
        subs = mm.notifier_subscriptions = MmuNotifierSubscriptions(mm)
    name = name or f"smmu({mm.name})"
    smmu = SecondaryMmu(name, mm, 0, k.geo.task_size,
                        SleepLock(f"{name}.lock", cls="secondary_mmu_lock"),
                        invalidate_seq=subs.invalidate_seq - 1,
                        invalidate=secondary_mmu_invalidate)
    subs.subs.append(smmu)
    return smmu


def secondary_mmus(mm) -> list:
    subs = mm.notifier_subscriptions
    return [] if subs is None else [s for s in subs.subs if type(s) is SecondaryMmu]


# ------------------------------------------------------------------------------------------------
# the interval notifier read side


@attrs.frozen(slots=True)
class MmuIntervalReadBegin(Effect):
    """mm/mmu_notifier.c: mmu_interval_read_begin() (6.6): the subscriber's sequence; waits
    (wait_event on subscriptions->wq) while an invalidation that hit it is in progress."""

    sub: SecondaryMmu
    sleeps = True
    shows_result = True
    preempt_point = True

    def blocked(self, m, t):
        subs = self.sub.mm.notifier_subscriptions
        return subs if self.sub.invalidate_seq == subs.invalidate_seq else None

    def execute(self, m, t):
        return self.sub.invalidate_seq

    def objects(self):
        return (self.sub,)

    def __str__(self):
        return f"mmu_interval_read_begin({self.sub!r})"


def _read_retry(m, t, sub, seq):
    return sub.invalidate_seq != seq


def _invalidate(m, t, sub, start, end, cur_seq, geo):
    """mmu_interval_set_seq(), then drop the cached translations and table pointers of
    [start, end)."""
    sub.invalidate_seq = cur_seq
    for addr in [a for a in sub.tlb if start <= a < end]:
        del sub.tlb[addr]
    lo, hi = geo.pmd_index(start), geo.pmd_index(end - 1)
    for i in [i for i in sub.pwc if lo <= i <= hi]:
        del sub.pwc[i]


def secondary_mmu_invalidate(k, sub, start, end, cur_seq):
    """ops->invalidate of an interval subscriber (as in lib/test_hmm.c dmirror_interval_invalidate()
    or nouveau_svmm_range_invalidate(), 6.6): under the driver lock, mmu_interval_set_seq() and
    drop what the device caches for the range, page-table pointers included."""
    yield Lock(sub.lock)
    yield Atomic(f"{sub!r}: mmu_interval_set_seq({cur_seq}) + invalidate [{start}, {end})",
                 _invalidate, (sub, start, end, cur_seq, k.geo), touches=(sub,))
    yield Unlock(sub.lock)


# ------------------------------------------------------------------------------------------------
# filling: hmm_range_fault() and the driver's fault handler


def hmm_vma_walk_pmd(k, vma, addr):
    """mm/hmm.c: hmm_vma_walk_pmd() (6.6) for one address: pmdp_get_lockless(); a none PMD is a
    hole (hmm_vma_walk_hole() -> hmm_vma_fault()); a huge PMD gives the page directly; otherwise
    pte_offset_map() (NULL: look at the PMD again) and hmm_vma_handle_pte() on the entry, faulting
    a non-present one.  Returns ``(what, table, ...)``: ``("ok", table, folio, idx)``,
    ``("fault", table)`` or ``("again", None)``, ``table`` being the PTE table the walk went
    through (None for a none or huge PMD)."""
    pmdp = vma.mm.pmd_offset(addr, k.geo)
    pmd = yield from k.ops.pmdp_get_lockless(k, pmdp)
    if pmd_none(pmd):
        return ("fault", None)
    if pmd_trans_huge(pmd):
        return ("ok", None, pmd.folio, addr - k.geo.haddr(addr))  # hmm_vma_handle_pmd()
    ptep = yield from k.ops.pte_offset_map(k, pmdp, addr)
    if ptep is None:
        return ("again", None)
    pte = yield Load(ptep.table, ptep.idx)  # hmm_vma_handle_pte(): ptep_get()
    yield from k.ops.pte_unmap(k, ptep)
    if not pte_present(pte):
        return ("fault", ptep.table)
    return ("ok", ptep.table, pte.folio, pte.idx)


def hmm_range_fault(k, sub, seq, vma, addr):
    """mm/hmm.c: hmm_range_fault() (6.6) for one page, mmap_lock held for read: -EBUSY once the
    notifier sequence moved (mmu_interval_check_retry()), else walk; a fault
    (hmm_vma_fault() -> handle_mm_fault()) restarts the walk.  Returns ``(0, folio, idx, table)``
    or ``(errno,)``; ``table`` is the last PTE table a walk went through (the paging-structure
    entry a hardware walker would have cached on the way), None if none did."""
    walked = None
    while True:
        if (yield Atomic(f"mmu_interval_check_retry({sub!r}, {seq})", _read_retry, (sub, seq),
                         touches=(sub,))):
            return (EBUSY,)
        res = yield from hmm_vma_walk_pmd(k, vma, addr)
        walked = res[1] or walked
        if res[0] == "ok":
            return (0, res[2], res[3], walked)
        if res[0] == "fault" and \
                (yield from __handle_mm_fault(k, vma, addr, False)) in VM_FAULT_ERROR:
            return (EFAULT,)


def _install(m, t, k, sub, addr, folio, idx, table):
    geo = k.geo
    sub.tlb[addr] = (folio, idx)
    if table is not None:
        sub.pwc[geo.pmd_index(addr)] = table


def secondary_mmu_fault(k, sub, addr):
    """A device fault handled by its driver (the hmm_range_fault() pattern of
    Documentation/mm/hmm.rst, as nouveau_range_fault() or lib/test_hmm.c dmirror_range_fault(),
    6.6): mmu_interval_read_begin(); mmap_read_lock(); hmm_range_fault(); mmap_read_unlock();
    -EBUSY: again; take the driver lock; mmu_interval_read_retry(): again; else install the
    translation (and the table pointer the walk went through) and unlock.  The driver holds an
    mm_users reference meanwhile (mmget_not_zero(), as nouveau_svm and test_hmm do): once the
    process's last user is gone it gets -EFAULT.  Returns 0 or -errno."""
    mm = sub.mm
    if not (yield from mmget_not_zero(k, mm)):
        return EFAULT
    ret = yield from _secondary_mmu_fault(k, sub, addr)
    yield from mmput(k, mm)
    return ret


def _secondary_mmu_fault(k, sub, addr):
    mm = sub.mm
    while True:
        seq = yield MmuIntervalReadBegin(sub)
        yield DownRead(mm.mmap_lock)
        vma = mm.find_vma(addr)
        if vma is None:
            yield UpRead(mm.mmap_lock)
            return EFAULT
        res = yield from hmm_range_fault(k, sub, seq, vma, addr)
        yield UpRead(mm.mmap_lock)
        if res[0] == EBUSY:
            continue
        if res[0] != 0:
            return res[0]
        _, folio, idx, table = res
        yield Lock(sub.lock)
        if (yield Atomic(f"mmu_interval_read_retry({sub!r}, {seq})", _read_retry, (sub, seq),
                         touches=(sub,))):
            yield Unlock(sub.lock)
            continue
        yield Atomic(f"{sub!r}: map {addr} -> {folio!r}+{idx}"
                     + (f" (via {table!r})" if table is not None else ""),
                     _install, (k, sub, addr, folio, idx, table), touches=(sub,))
        yield Unlock(sub.lock)
        return 0


# ------------------------------------------------------------------------------------------------
# the device's access


def _device_access(m, t, k, sub, addr):
    """One DMA read by the device: its TLB, else a walk from its cached table pointer; False when
    neither translates (a device fault)."""
    hit = sub.tlb.get(addr)
    if hit is None:
        i = k.geo.pmd_index(addr)
        table = sub.pwc.get(i)
        if table is None:
            return False
        k.hooks.device_walk(k, t, sub, i, table)
        ent = table.entries[k.geo.pte_index(addr)]
        if not pte_present(ent):
            return False
        hit = sub.tlb[addr] = (ent.folio, ent.idx)
    k.hooks.device_translation(k, t, sub, addr, *hit)
    return True


def device_access(k, sub, addr):
    """A device reads ``addr`` of its process's address space: the hardware translation (TLB,
    then a walk through a cached page-table pointer), and on a miss a device fault that the driver
    fills (secondary_mmu_fault()), then again.  Returns "ok" or -errno."""
    while True:
        if (yield Atomic(f"{sub!r}: DMA read at {addr}", _device_access, (k, sub, addr),
                         touches=(sub,))):
            return "ok"
        ret = yield from secondary_mmu_fault(k, sub, addr)
        if ret != 0:
            return ret
