"""Reference: mm/pgtable-generic.c and its include/linux/pgtable.h helpers as merged in Linux 6.6
(patches 01, 02 and 08 of "mm: free retracted page table by RCU", on top of 0d940a9b270b).

Every function is a generator taking the kernel context ``k`` first; out-parameters of the C API are
returned as tuples: ``__pte_offset_map`` returns ``(pte, pmdval)``, the ``*_lock``/``*_nolock``
variants return ``(pte, ptl)``; ``pte`` is None where the kernel returns NULL.
"""

from __future__ import annotations

from pgconform.kernel.objects import PtePtr, pmd_none, pmd_trans_huge
from pgconform.kernel.pgtable import pae_compose, set_pmd
from pgconform.kernel.tlbflush import flush_tlb_range
from pgconform.sim.effects import (
    CallRcu,
    IpiSync,
    IrqDisable,
    IrqEnable,
    Load,
    Lock,
    RcuReadLock,
    RcuReadUnlock,
    Unlock,
)


def pmdp_get_lockless(k, pmdp):
    """include/linux/pgtable.h: pmdp_get_lockless() (6.6): one READ_ONCE of the PMD entry on
    architectures whose PMD fits a word.  With CONFIG_GUP_GET_PXX_LOW_HIGH (x86 PAE): read low,
    then high, then low again, and retry until the two reads of the low half agree; that alone
    cannot tell a low half that changed and came back (ABA), which is what the callers' IRQ-off
    section and the writers' pmdp_get_lockless_sync() are for."""
    if not k.arch.pmd_low_high:
        return (yield Load(pmdp.table, pmdp.idx))
    halves, i = pmdp.table.halves, 2 * pmdp.idx
    while True:
        lo = yield Load(halves, i)
        hi = yield Load(halves, i + 1)
        if (yield Load(halves, i)) == lo:
            return pmd_from_halves(k, pmdp, lo, hi)


def pmd_from_halves(k, pmdp, lo, hi):
    """The pmd_t that the two 32-bit halves read make up.  The model knows which write each half
    came from: halves of two different values make a torn value, and using that as a page table
    is a violation (see Kernel.pmd_table)."""
    return pae_compose(lo, hi)[0]


def pmdp_get_lockless_start(k):
    """mm/pgtable-generic.c: pmdp_get_lockless_start() (6.6, patch 02): local_irq_save() only where
    PMD reads are split in halves (GUP_GET_PXX_LOW_HIGH, SMP); otherwise nothing."""
    if k.arch.pmd_low_high:
        yield IrqDisable()
        return True
    return False


def pmdp_get_lockless_end(k, irqflags):
    """mm/pgtable-generic.c: pmdp_get_lockless_end() (6.6): undo pmdp_get_lockless_start()."""
    if irqflags:
        yield IrqEnable()


def pmdp_get_lockless_sync(k):
    """include/linux/pgtable.h: pmdp_get_lockless_sync() (6.6, patch 02): after clearing a PMD that
    lockless readers may be reading, tlb_remove_table_sync_one() where PMD reads are split in
    halves; nothing elsewhere.  tlb_remove_table_sync_one() (mm/mmu_gather.c) is an IPI to all
    CPUs, waiting, with MMU_GATHER_RCU_TABLE_FREE, and empty without it."""
    if k.arch.pmd_low_high and k.arch.rcu_table_free:
        yield IpiSync()


def __pte_offset_map(k, pmdp, addr):
    """mm/pgtable-generic.c: __pte_offset_map() (6.6, patches 01 and 02).

    Enters an RCU read-side section, snapshots ``*pmd`` once and classifies the snapshot: none,
    migration, trans-huge or bad -> leave RCU and return NULL; otherwise a pointer into the table
    named by the snapshot (which may already be detached; RCU keeps it valid and empty).
    Returns ``(pte, pmdval)``; the snapshot is returned even when ``pte`` is NULL."""
    yield RcuReadLock()
    irqflags = yield from k.ops.pmdp_get_lockless_start(k)
    pmdval = yield from k.ops.pmdp_get_lockless(k, pmdp)
    yield from k.ops.pmdp_get_lockless_end(k, irqflags)
    if pmd_none(pmdval) or pmd_trans_huge(pmdval):
        yield RcuReadUnlock()
        return None, pmdval  # window: __pte_offset_map finds no table
    # __pte_map(): pointer arithmetic on the snapshot's pmd_page()
    return PtePtr(k.pmd_table(pmdval), k.geo.pte_index(addr)), pmdval


def pte_offset_map(k, pmdp, addr):
    """include/linux/pgtable.h: pte_offset_map() (6.6) = __pte_offset_map(pmd, addr, NULL)."""
    pte, _ = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    return pte


def pte_unmap(k, pte):
    """include/linux/pgtable.h: pte_unmap() (6.6, patch 01): rcu_read_unlock() (and kunmap_local()
    with HIGHPTE)."""
    yield RcuReadUnlock()


def pte_unmap_unlock(k, pte, ptl):
    """include/linux/mm.h: pte_unmap_unlock() (6.6): spin_unlock(ptl), then pte_unmap()."""
    yield Unlock(ptl)
    yield from k.ops.pte_unmap(k, pte)


def pte_offset_map_nolock(k, mm, pmdp, addr):
    """mm/pgtable-generic.c: pte_offset_map_nolock() (6.5-6.12): map as __pte_offset_map() and
    return the ptl computed from the *same* snapshot, not taken.  Returns ``(pte, ptl)``."""
    pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, None
    ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
    return pte, ptl


def pte_offset_map_ro_nolock(k, mm, pmdp, addr):
    """mm/pgtable-generic.c: pte_offset_map_ro_nolock() (6.13+, Qi Zheng's split of
    pte_offset_map_nolock()): the same as pte_offset_map_nolock(), for callers that only read
    the entries under the ptl (the model keeps one body for both names).  Returns
    ``(pte, ptl)``."""
    return (yield from k.ops.pte_offset_map_nolock(k, mm, pmdp, addr))


def pte_offset_map_rw_nolock(k, mm, pmdp, addr):
    """mm/pgtable-generic.c: pte_offset_map_rw_nolock() (6.13+): map as __pte_offset_map() and
    return the pmd snapshot with the ptl computed from it; a caller that writes must first check,
    under the ptl, that the table is still linked (pmd_same() against the snapshot, or pte_same()
    on a non-none entry).  Returns ``(pte, pmdval, ptl)``; ptl is None when pte is."""
    pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, pmdval, None
    ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
    return pte, pmdval, ptl


def pte_offset_map_lock(k, mm, pmdp, addr):
    """mm/pgtable-generic.c: __pte_offset_map_lock() (6.6): map, take the snapshot table's ptl, and
    return only if ``*pmd`` still names that table (pmd_same); otherwise unlock, unmap and retry.
    Returns ``(pte, ptl)`` with ptl held and RCU entered, or ``(None, None)``."""
    while True:
        pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
        if pte is None:
            return None, None
        ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
        yield Lock(ptl)
        if pmdval == (yield from k.ops.pmdp_get_lockless(k, pmdp)):
            return pte, ptl
        yield from k.ops.pte_unmap_unlock(k, pte, ptl)  # window: pte_offset_map_lock retries


def pmdp_collapse_flush(k, vma, addr, pmdp):
    """mm/pgtable-generic.c: pmdp_collapse_flush() (6.6): clear the PMD (pmdp_huge_get_and_clear)
    and flush the TLB for the range; returns the old value.  Caller holds pml and ptl."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    yield from set_pmd(k, pmdp, None)
    yield from flush_tlb_range(k, vma, addr, addr + k.geo.hpage_pmd_nr)
    return pmdval


def pte_free_now(k, head):
    """mm/pgtable-generic.c: pte_free_now() (6.6, patch 08): the RCU callback, pte_free() of the
    page the rcu_head lives in (destructor, then free)."""
    table = head.owner
    yield from k.ops.pte_free(k, table.mm, table)


def pte_free_defer(k, mm, pgtable):
    """mm/pgtable-generic.c: pte_free_defer() (6.6, patch 08): call_rcu() on the page's rcu_head
    (pgtable_t is the struct page here); the table and its ptlock stay valid until a grace period
    has passed, then pte_free_now()."""
    yield CallRcu(pgtable.rcu_head, k.ops.pte_free_now, (k, pgtable.rcu_head))
