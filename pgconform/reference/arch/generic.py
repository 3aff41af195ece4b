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


# ------------------------------------------------------------------------------------------------
# freeing through the mmu_gather (free_pgtables(); mm/mmu_gather.c, include/asm-generic/tlb.h, 6.6)


def _dtor(m, t, k, table):
    k.pte_table_dtor(m, t, table, "pagetable_pte_dtor")


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/x86/mm/pgtable.c: ___pte_free_tlb() (6.6), and the same shape in arm's and
    asm-generic's __pte_free_tlb(): pagetable_pte_dtor() *before* the page is handed to the gather
    (the ptlock is released at once: with ALLOC_SPLIT_PTLOCKS it is kfree'd here, ahead of the TLB
    flush and of any grace period; no pte_offset_map() user can reach a table free_pgtables()
    frees, so this early dtor is harmless there), then paravirt_tlb_remove_table() /
    tlb_remove_ptdesc(): tlb_remove_table() with MMU_GATHER_RCU_TABLE_FREE (x86 PARAVIRT builds),
    tlb_remove_page() without it (native x86-64, arm without LPAE)."""
    from pgconform.kernel.mmu_gather import tlb_remove_page, tlb_remove_table

    table = pgtable if k.arch.pgtable_is_page else pgtable.table
    yield Atomic(f"pagetable_pte_dtor({table!r})", _dtor, (k, table), touches=(table,))
    if k.arch.rcu_table_free:
        yield from tlb_remove_table(k, tlb, table)
    else:
        yield from tlb_remove_page(k, tlb, table)


def _free_page(m, t, k, table):
    k.free_pte_page(m, t, table)


def __tlb_remove_table(k, table):
    """arch/x86/include/asm/tlb.h: __tlb_remove_table() (6.6) = free_page_and_swap_cache(): the
    page goes (its destructor ran in ___pte_free_tlb())."""
    yield Atomic(f"free_page_and_swap_cache({table!r})", _free_page, (k, table), touches=(table,))


FUNCTIONS.update({"__pte_free_tlb": __pte_free_tlb, "__tlb_remove_table": __tlb_remove_table})
