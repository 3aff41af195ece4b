"""Reference: the generic page-table allocator, include/asm-generic/pgalloc.h (Linux 6.6), used by
x86 and arm: one PTE table per page, pgtable_t is struct page *.  pte_free_defer()/pte_free_now()
are the generic ones of mm/pgtable-generic.c (:mod:`pgconform.reference.pgtable_generic`)."""

from __future__ import annotations

from pgconform.sim.effects import Atomic


def _alloc(m, t, k, mm):
    return k.new_pte_table(mm)


def _free(m, t, k, table):
    k.free_pte_table(m, t, table)


def pte_alloc_one(k, mm):
    """include/asm-generic/pgalloc.h: pte_alloc_one() (6.6): a page, pagetable_pte_ctor().
    Returns pgtable_t."""
    table = yield Atomic("pte_alloc_one()", _alloc, (k, mm))
    return table if k.arch.pgtable_is_page else table_address(table)


def pte_free(k, mm, pgtable):
    """include/asm-generic/pgalloc.h: pte_free() (6.6): pagetable_pte_dtor() (which frees a
    separately allocated ptlock) and free the page, immediately."""
    table = pgtable if k.arch.pgtable_is_page else pgtable.table
    yield Atomic(f"pte_free({table!r})", _free, (k, table), touches=(table,))


def table_address(table):
    """page_address() of a table: the pte_t * of its first entry."""
    from pgconform.kernel.objects import PtePtr

    return PtePtr(table, 0)


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free}
