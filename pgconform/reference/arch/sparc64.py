"""Reference: sparc64's PTE tables, arch/sparc/mm/init_64.c (Linux 6.6; pte_free_defer from patch
06, ad1ac8d94cde).  Tables are whole pages, but pgtable_t is ``pte_t *`` (a virtual address), so the
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
    yield from k.ops.pte_free(k, page.mm, table_address(page))


def pte_free_defer(k, mm, pgtable):
    """arch/sparc/mm/init_64.c: pte_free_defer() (6.6, patch 06): virt_to_page(pgtable), then
    call_rcu() on that page's rcu_head with pte_free_now()."""
    page = pgtable.table.storage  # virt_to_page()
    yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free, "pte_free_now": pte_free_now,
             "pte_free_defer": pte_free_defer}


# ------------------------------------------------------------------------------------------------
# freeing through the mmu_gather (free_pgtables(); SMP, which selects MMU_GATHER_RCU_TABLE_FREE)


def pgtable_free_tlb(k, tlb, table, is_page):
    """arch/sparc/include/asm/pgalloc_64.h: pgtable_free_tlb() (6.6, CONFIG_SMP): tag the pointer
    with is_page and tlb_remove_table() it."""
    from pgconform.kernel.mmu_gather import TaggedTable, tlb_remove_table

    yield from tlb_remove_table(k, tlb, TaggedTable(table, int(is_page)))


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/sparc/include/asm/pgalloc_64.h: __pte_free_tlb() (6.6) = pgtable_free_tlb(tlb, pte,
    true).  The destructor runs after the grace period, in __pte_free()."""
    yield from pgtable_free_tlb(k, tlb, pgtable, True)


def __tlb_remove_table(k, tagged):
    """arch/sparc/include/asm/pgalloc_64.h: __tlb_remove_table() (6.6, CONFIG_SMP): untag and
    pgtable_free(table, is_page): a PTE table page goes through __pte_free() (dtor + free); a
    kmem_cache table (not a PTE table) does not occur in the model."""
    if tagged.tag:
        yield from _generic_pte_free(k, None, tagged.ptr)


FUNCTIONS.update({"__pte_free_tlb": __pte_free_tlb, "__tlb_remove_table": __tlb_remove_table})
