"""Reference: s390 from Linux 6.7 (d08d4e7cd6bf "s390/mm: use full 4KB page for 2KB PTE"): each
PTE table has its own page; pgtable_t stays ``unsigned long *``, so s390 keeps its own
pte_free_defer(): call_rcu() on the page's rcu_head, pte_free_now() = dtor + free
(arch/s390/mm/pgalloc.c, 6.7)."""

from __future__ import annotations

from pgconform.reference.arch.generic import pte_alloc_one, pte_free, table_address
from pgconform.sim.effects import Atomic, CallRcu


def pte_free_now(k, head):
    """arch/s390/mm/pgalloc.c: pte_free_now() (6.7): pagetable_pte_dtor() + pagetable_free()."""
    page = head.owner
    yield from k.ops.pte_free(k, page.mm, table_address(page))


def pte_free_defer(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: pte_free_defer() (6.7): call_rcu(&ptdesc->pt_rcu_head,
    pte_free_now) on the table's own page."""
    page = pgtable.table.storage
    yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free, "pte_free_now": pte_free_now,
             "pte_free_defer": pte_free_defer}


# ------------------------------------------------------------------------------------------------
# freeing through the mmu_gather (free_pgtables(), 6.7)


def page_table_free_rcu(k, tlb, pgtable, vmaddr):
    """arch/s390/mm/pgalloc.c: page_table_free_rcu() (6.7, d08d4e7cd6bf), not for a pgste mm:
    tlb_remove_ptdesc() = tlb_remove_table() of the table; no AA/PP bits, no list."""
    from pgconform.kernel.mmu_gather import tlb_remove_table

    yield from tlb_remove_table(k, tlb, pgtable)


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/s390/include/asm/tlb.h: pte_free_tlb() (6.7): page_table_free_rcu()."""
    yield from k.ops.page_table_free_rcu(k, tlb, pgtable, address)


def _dtor_free(m, t, k, table):
    k.free_pte_table(m, t, table)


def __tlb_remove_table(k, pgtable):
    """arch/s390/mm/pgalloc.c: __tlb_remove_table() (6.7): a PTE table's page (not a crst one)
    gets pagetable_pte_dtor() + pagetable_free() after the batch's grace period."""
    table = pgtable.table
    yield Atomic(f"pagetable_pte_dtor() + pagetable_free({table!r})", _dtor_free, (k, table),
                 touches=(table,))


FUNCTIONS.update({"__pte_free_tlb": __pte_free_tlb, "page_table_free_rcu": page_table_free_rcu,
                  "__tlb_remove_table": __tlb_remove_table})
