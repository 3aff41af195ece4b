"""Reference: s390 from Linux 6.7 (d08d4e7cd6bf "s390/mm: use full 4KB page for 2KB PTE"): each
PTE table has its own page; pgtable_t stays ``unsigned long *``, so s390 keeps its own
pte_free_defer(): call_rcu() on the page's rcu_head, pte_free_now() = dtor + free
(arch/s390/mm/pgalloc.c, 6.7)."""

from __future__ import annotations

from pgconform.reference.arch.generic import pte_alloc_one, pte_free, table_address
from pgconform.sim.effects import CallRcu


def pte_free_now(k, head):
    """arch/s390/mm/pgalloc.c: pte_free_now() (6.7): pagetable_pte_dtor() + pagetable_free()."""
    page = head.owner
    yield from k.impl.pte_free(k, page.mm, table_address(page))


def pte_free_defer(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: pte_free_defer() (6.7): call_rcu(&ptdesc->pt_rcu_head,
    pte_free_now) on the table's own page."""
    page = pgtable.table.storage
    yield CallRcu(page.rcu_head, k.impl.pte_free_now, (k, page.rcu_head))


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free, "pte_free_now": pte_free_now,
             "pte_free_defer": pte_free_defer}
