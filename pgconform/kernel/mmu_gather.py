"""struct mmu_gather: batching the TLB flush and the freeing of pages and page tables behind it
(mm/mmu_gather.c, include/asm-generic/tlb.h, Linux 6.6).

Page tables that free_pgtables() takes out go to the gather through the arch's ``pte_free_tlb``:

* with CONFIG_MMU_GATHER_RCU_TABLE_FREE they are queued by tlb_remove_table(); tlb_finish_mmu()
  flushes the TLB and then call_rcu()s the batch; tlb_remove_table_rcu() hands each entry to the
  arch's __tlb_remove_table() after the grace period ("semi-RCU": consolidated RCU waits for
  IRQ-disabled sections too, so GUP-fast is covered);
* without it (x86-64 without PARAVIRT, arm without LPAE) tlb_remove_table() is tlb_remove_page():
  the table page is freed by tlb_finish_mmu() right after the TLB flush, which on x86 is an IPI to
  the CPUs of mm_cpumask that waits for their IRQ-disabled sections.

Neither protects rcu_read_lock()-only walkers (pte_offset_map*): those cannot reach a table that
free_pgtables() frees, because its VMA was detached from the mm and unlinked from i_mmap first.

From 6.14 MADV_DONTNEED frees the PTE tables it empties through the same gather while the VMA stays
(CONFIG_PT_RECLAIM, kernel/memory.py zap_pte_range()), so pte_offset_map*() users can hold them:
PT_RECLAIM needs MMU_GATHER_RCU_TABLE_FREE (x86-64 selects it from 6.14, 718b13861d22), and the
fallback for a gather that gets no batch page, tlb_remove_table_one(), then call_rcu()s the table
itself instead of 6.6's IPI and immediate free.  The batch page is always allocated in the model
(:func:`_alloc_batch`; a test may make it fail) and never fills up in worlds this small.
"""

from __future__ import annotations

import attrs

from pgconform.sim.effects import Atomic, CallRcu, IpiSync
from pgconform.sim.sync import RcuHead


@attrs.define(slots=True, eq=False, repr=False)
class MmuTableBatch:
    """struct mmu_table_batch: the tables queued by tlb_remove_table() and the rcu_head the batch
    is freed through (the batch page's own, never a page table's)."""

    tables: list = attrs.field(factory=list)
    rcu_head: RcuHead | None = None

    def __repr__(self) -> str:
        return f"mmu_table_batch[{len(self.tables)}]"


@attrs.define(slots=True, eq=False, repr=False)
class MmuGather:
    """struct mmu_gather, as far as the model needs it: the mm, the range to flush, whether tables
    were freed (tlb->freed_tables), the RCU table batch and the page batch (tlb_remove_page())."""

    mm: object
    start: int = 0
    end: int = 0
    freed_tables: bool = False
    batch: MmuTableBatch | None = None
    pages: list = attrs.field(factory=list)

    def __repr__(self) -> str:
        return f"mmu_gather({self.mm!r})"


def tlb_gather_mmu(k, mm):
    """mm/mmu_gather.c: tlb_gather_mmu() (6.6): an empty gather on the caller's stack for ``mm``;
    no shared state is touched."""
    return MmuGather(mm, start=k.geo.task_size, end=0)
    yield  # a generator, like every modelled kernel function


def __tlb_adjust_range(tlb, address, size):
    """include/asm-generic/tlb.h: __tlb_adjust_range() (6.6): widen the range to flush."""
    tlb.start = min(tlb.start, address)
    tlb.end = max(tlb.end, address + size)


def pt_reclaim_enabled(k) -> bool:
    """IS_ENABLED(CONFIG_PT_RECLAIM): a kernel version with PT reclaim (6.14+) on an arch that
    supports it (ARCH_SUPPORTS_PT_RECLAIM in 6.14; in 7.0 MMU_GATHER_RCU_TABLE_FREE without
    HAVE_ARCH_TLB_REMOVE_TABLE)."""
    return k.version.pt_reclaim and k.arch.pt_reclaim


def _alloc_batch():
    """__get_free_page(GFP_NOWAIT | __GFP_NOWARN) for the gather's batch page; None when it fails.
    The model always gets one (a test may replace this to take tlb_remove_table_one())."""
    batch = MmuTableBatch()
    batch.rcu_head = RcuHead(batch)
    return batch


def tlb_remove_table(k, tlb, table):
    """mm/mmu_gather.c: tlb_remove_table() (6.6; 7.0) with MMU_GATHER_RCU_TABLE_FREE: queue
    ``table`` (the arch's pointer, possibly tagged) on the gather's batch for tlb_table_flush();
    with no batch page, tlb_table_invalidate() and tlb_remove_table_one().  Without
    MMU_GATHER_TABLE_FREE it is tlb_remove_page() (include/asm-generic/tlb.h)."""
    if not k.arch.rcu_table_free:
        yield from tlb_remove_page(k, tlb, table)
        return
    if tlb.batch is None:  # the gather is the caller's own (on its stack): no shared state
        tlb.batch = _alloc_batch()
        if tlb.batch is None:
            yield from tlb_table_invalidate(k, tlb)
            yield from tlb_remove_table_one(k, table)
            return
    tlb.batch.tables.append(table)


def tlb_table_invalidate(k, tlb):
    """mm/mmu_gather.c: tlb_table_invalidate() (6.6): tlb_needs_table_invalidate() (true for the
    model's arches) -> tlb_flush_mmu_tlbonly(): flush what the gather has collected, reset it."""
    yield from tlb_flush(k, tlb)
    tlb.start, tlb.end = k.geo.task_size, 0  # __tlb_reset_range()


def __tlb_remove_table_one_rcu(k, table):
    """mm/mmu_gather.c: __tlb_remove_table_one_rcu() (7.0, CONFIG_PT_RECLAIM): the RCU callback,
    the arch's __tlb_remove_table() of the ptdesc the rcu_head is in."""
    yield from k.ops.__tlb_remove_table(k, table)


def tlb_remove_table_one(k, table):
    """mm/mmu_gather.c: tlb_remove_table_one() (6.6; 7.0): a table without a batch.  With
    CONFIG_PT_RECLAIM, __tlb_remove_table_one() is call_rcu(&ptdesc->pt_rcu_head): a grace period
    covers rcu_read_lock() walkers of a table MADV_DONTNEED reclaimed (and GUP-fast, whose IRQs-off
    section is a reader too).  Otherwise tlb_remove_table_sync_one(), an IPI that waits only for
    IRQs-off walkers, then __tlb_remove_table() at once: enough for free_pgtables()' tables only."""
    if pt_reclaim_enabled(k):
        # pgtable_t is the ptdesc on the arches that select PT_RECLAIM
        yield CallRcu(table.rcu_head, __tlb_remove_table_one_rcu, (k, table))
        return
    yield IpiSync()  # tlb_remove_table_sync_one()
    yield from k.ops.__tlb_remove_table(k, table)


def tlb_remove_page(k, tlb, page):
    """include/asm-generic/tlb.h: tlb_remove_page() (6.6): queue the page; tlb_finish_mmu() drops
    the reference after the TLB flush (tlb_batch_pages_flush())."""
    tlb.pages.append(page)
    return
    yield


def tlb_flush(k, tlb):
    """The TLB flush of a gather (tlb_flush_mmu_tlbonly() -> tlb_flush(); x86:
    flush_tlb_mm_range(mm, start, end, stride, tlb->freed_tables), 6.6).  On x86 an IPI to every
    other CPU of mm_cpumask, waited for (with freed_tables, lazy-TLB CPUs too); elsewhere a
    hardware broadcast that interrupts nobody (kernel/pgtable.flush_tlb_range())."""
    if tlb.end <= tlb.start:
        return
    if k.arch.tlb_flush_ipi:
        yield IpiSync(tlb.mm, f"flush_tlb_mm_range({tlb.mm!r}, {tlb.start}, {tlb.end}, "
                              f"freed_tables={int(tlb.freed_tables)})  [IPI mm_cpumask, wait]")


def tlb_remove_table_rcu(k, batch):
    """mm/mmu_gather.c: tlb_remove_table_rcu() (6.6): the RCU callback of a table batch;
    __tlb_remove_table_free(): the arch's __tlb_remove_table() for each entry, then the batch
    page goes."""
    for table in batch.tables:
        yield from k.ops.__tlb_remove_table(k, table)


def tlb_table_flush(k, tlb):
    """mm/mmu_gather.c: tlb_table_flush() (6.6): tlb_table_invalidate() (the TLB was flushed just
    before, tlb_needs_table_invalidate()), then call_rcu(&batch->rcu, tlb_remove_table_rcu)."""
    if tlb.batch is None:
        return
    batch, tlb.batch = tlb.batch, None
    yield CallRcu(batch.rcu_head, tlb_remove_table_rcu, (k, batch))


def _free_pages(m, t, k, pages):
    for page in pages:
        k.free_pte_page(m, t, page)
    pages.clear()


def tlb_batch_pages_flush(k, tlb):
    """mm/mmu_gather.c: tlb_batch_pages_flush() (6.6): free_pages_and_swap_cache() of the queued
    pages.  Only page-table pages go through the model's page batch (zap drops folio references
    itself), and their destructor already ran in ___pte_free_tlb(): what is left is the page."""
    if tlb.pages:
        yield Atomic(f"free_pages_and_swap_cache({', '.join(map(repr, tlb.pages))})", _free_pages,
                     (k, tlb.pages), touches=tuple(tlb.pages))


def tlb_flush_mmu(k, tlb):
    """mm/mmu_gather.c: tlb_flush_mmu() (6.6): the TLB flush first, then tlb_flush_mmu_free():
    the table batch to RCU (tlb_table_flush()) and the page batch freed."""
    yield from tlb_flush(k, tlb)
    yield from tlb_table_flush(k, tlb)
    yield from tlb_batch_pages_flush(k, tlb)


def tlb_finish_mmu(k, tlb):
    """mm/mmu_gather.c: tlb_finish_mmu() (6.6): tlb_flush_mmu() and drop the batches."""
    yield from tlb_flush_mmu(k, tlb)


def pte_free_tlb(k, tlb, pgtable, address):
    """include/asm-generic/tlb.h: pte_free_tlb() (6.6): tlb_flush_pmd_range() and
    tlb->freed_tables = 1 (s390's own pte_free_tlb() does the same), then the arch's
    __pte_free_tlb()."""
    tlb.freed_tables = True
    __tlb_adjust_range(tlb, k.geo.haddr(address), k.geo.ptrs_per_pte)
    yield from k.ops.__pte_free_tlb(k, tlb, pgtable, address)


@attrs.frozen(slots=True, repr=False)
class TaggedTable:
    """A table pointer with flag bits in its low bits, as arches pass it to tlb_remove_table() and
    get it back in __tlb_remove_table(): powerpc's index (the table's level), s390's half
    (0x01/0x02), sparc64's is_page bit."""

    ptr: object
    tag: object

    def __repr__(self) -> str:
        return f"{self.ptr!r}|{self.tag}"
