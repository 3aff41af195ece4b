"""Reference: sparc64's PTE tables, arch/sparc/mm/init_64.c (Linux 6.6; pte_free_defer from patch 06,
ad1ac8d94cde).  Tables are whole pages, but pgtable_t is ``pte_t *`` (a virtual address), so the
generic pte_free_defer(), which takes pgtable_t for a struct page, cannot be used: sparc converts
the address to its page and queues that page's rcu_head."""

from __future__ import annotations

from pgconform.reference.arch.generic import pte_alloc_one, table_address
from pgconform.reference.arch.generic import pte_free as _generic_pte_free
from pgconform.sim.effects import CallRcu


def pte_free(k, mm, pgtable):
    """arch/sparc/mm/init_64.c: pte_free() (6.6): __pte_free(): dtor and free the page that
    ``pgtable`` (pte_t *) lies in."""
    yield from _generic_pte_free(k, mm, pgtable)


def pte_free_now(k, head):
    """arch/sparc/mm/init_64.c: pte_free_now() (6.6): the RCU callback; __pte_free() of
    page_address() of the page owning ``head``."""
    page = head.owner
    yield from k.impl.pte_free(k, page.mm, table_address(page))


def pte_free_defer(k, mm, pgtable):
    """arch/sparc/mm/init_64.c: pte_free_defer() (6.6, patch 06): virt_to_page(pgtable), then
    call_rcu() on that page's rcu_head with pte_free_now()."""
    page = pgtable.table.storage  # virt_to_page()
    yield CallRcu(page.rcu_head, k.impl.pte_free_now, (k, page.rcu_head))


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free, "pte_free_now": pte_free_now,
             "pte_free_defer": pte_free_defer}
