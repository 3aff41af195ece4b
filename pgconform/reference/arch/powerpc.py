"""Reference: powerpc book3s64 PTE fragments, arch/powerpc/mm/pgtable-frag.c (Linux 6.6; the
pte_free_defer() of patch 05 as merged, 32cc0b7c9d50, Suggested-by Jason Gunthorpe).

A page is carved into ``tables_per_page`` fragments handed out in order through the per-mm cache
``mm->context.pte_frag`` (under mm->page_table_lock); ``pt_frag_refcount`` counts the fragments not
yet freed, and a fragment is never handed out twice: the page goes when the count reaches zero.
pte_free_defer() marks the page Active; the last free of an Active page queues the whole page
for RCU, so the grace period starts after every fragment of the page was freed.  pgtable_t is the
fragment's address (pte_t *).
"""

from __future__ import annotations

from pgconform.reference.arch.generic import table_address
from pgconform.sim.effects import Atomic, CallRcu, Lock, Unlock


def _cache_take(m, t, k, mm):
    """pte_frag_get() and advance: the next fragment of the cached page, or None."""
    frag = mm.context.get("pte_frag")
    if frag is None:
        return None
    page, slot = frag
    mm.context["pte_frag"] = (page, slot + 1) if slot + 1 < k.arch.tables_per_page else None
    return k.hand_out(m, t, page, slot)


def get_pte_from_cache(k, mm):
    """arch/powerpc/mm/pgtable-frag.c: get_pte_from_cache() (6.6): under mm->page_table_lock, take
    the next fragment of the page cached in mm->context.pte_frag (NULL when the page is used up)."""
    yield Lock(mm.page_table_lock)
    table = yield Atomic(f"pte_frag_get({mm!r})", _cache_take, (k, mm), touches=(mm,))
    yield Unlock(mm.page_table_lock)
    return table


def _new_page(m, t, k, mm):
    page = k.new_pt_page(mm)
    page.frag_refcount = 1
    return page


def _cache_page(m, t, k, mm, page):
    """If nobody cached a page meanwhile, this one's other fragments become the cache."""
    if mm.context.get("pte_frag") is None:
        page.frag_refcount = k.arch.tables_per_page
        mm.context["pte_frag"] = (page, 1)
    return k.hand_out(m, t, page, 0)


def __alloc_for_ptecache(k, mm):
    """arch/powerpc/mm/pgtable-frag.c: __alloc_for_ptecache() (6.6): a new page, ctor'd, refcount 1;
    under mm->page_table_lock, if no page is cached, refcount PTE_FRAG_NR and cache the rest."""
    page = yield Atomic("pagetable_alloc() + pagetable_pte_ctor()", _new_page, (k, mm))
    yield Lock(mm.page_table_lock)
    table = yield Atomic(f"pte_frag_set({mm!r}, {page!r})", _cache_page, (k, mm, page),
                         touches=(mm, page))
    yield Unlock(mm.page_table_lock)
    return table


def pte_fragment_alloc(k, mm):
    """arch/powerpc/mm/pgtable-frag.c: pte_fragment_alloc() (6.6): from the cache, else a new
    page."""
    table = yield from get_pte_from_cache(k, mm)
    if table is None:
        table = yield from __alloc_for_ptecache(k, mm)
    return table_address(table)


def pte_alloc_one(k, mm):
    """arch/powerpc/include/asm/book3s/64/pgalloc.h: pte_alloc_one() (6.6) =
    pte_fragment_alloc()."""
    return (yield from k.ops.pte_fragment_alloc(k, mm))


def pte_free(k, mm, pgtable):
    """arch/powerpc/include/asm/book3s/pgalloc.h: pte_free() (6.6) = pte_fragment_free(table, 0)."""
    yield from k.ops.pte_fragment_free(k, pgtable, 0)


def _dec_and_test(m, t, k, table):
    """The fragment is given back (Kernel.release_table) and its page's count dropped.  The
    kernel's BUG_ON(pt_frag_refcount <= 0) is the model's: a fragment freed twice, or freed with
    its page, is pt.double-free in release_table(), before any count is looked at."""
    page = table.page
    k.release_table(m, t, table, "pte_fragment_free")
    page.frag_refcount -= 1
    return page.frag_refcount == 0


def _test_clear_active(m, t, page):
    was = page.active
    page.active = False
    return was


def pte_fragment_free(k, table, kernel):
    """arch/powerpc/mm/pgtable-frag.c: pte_fragment_free() (6.6): drop the fragment's count; the
    last one frees the page, through RCU if some fragment of it was deferred (PageActive)."""
    table = table.table  # virt_to_ptdesc(): the fragment (and its page)
    page = table.page
    last = yield Atomic(f"atomic_dec_and_test({page!r}->pt_frag_refcount)", _dec_and_test,
                        (k, table), touches=(table, page))
    if not last:
        return
    if kernel or not (yield Atomic(f"TestClearPageActive({page!r})", _test_clear_active, (page,),
                                   touches=(page,))):
        yield from k.ops.pte_free_now(k, page.rcu_head)
    else:
        yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))


def _free_page(m, t, k, page):
    k.free_pt_page(m, t, page)


def pte_free_now(k, head):
    """arch/powerpc/mm/pgtable-frag.c: pte_free_now() (6.6): pagetable_pte_dtor() and free the
    page owning ``head`` (an RCU callback, or called directly)."""
    page = head.owner
    yield Atomic(f"pagetable_pte_dtor() + pagetable_free({page!r})", _free_page, (k, page),
                 touches=(page,))


def _set_active(m, t, page):
    page.active = True


def pte_free_defer(k, mm, pgtable):
    """arch/powerpc/mm/pgtable-frag.c: pte_free_defer() (6.6, patch 05 v3): SetPageActive on the
    fragment's page, then pte_fragment_free(): the page, when its last fragment goes, waits for a
    grace period."""
    page = pgtable.table.page  # virt_to_page()
    yield Atomic(f"SetPageActive({page!r})", _set_active, (page,), touches=(page,))
    yield from k.ops.pte_fragment_free(k, pgtable, 0)


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free,
             "pte_fragment_alloc": pte_fragment_alloc, "pte_fragment_free": pte_fragment_free,
             "pte_free_now": pte_free_now, "pte_free_defer": pte_free_defer}


# ------------------------------------------------------------------------------------------------
# freeing through the mmu_gather (free_pgtables(); arch/powerpc/mm/pgtable-frag.c,
# arch/powerpc/include/asm/book3s/64/pgalloc.h pgtable_free_tlb(), mm/mmu_gather.c, 6.6)

#: the level index pgtable_free_tlb() ORs into the pointer (MAX_PGTABLE_INDEX_SIZE bits)
PTE_INDEX = "PTE_INDEX"


def pgtable_free_tlb(k, tlb, table, index):
    """arch/powerpc/include/asm/book3s/64/pgalloc.h: pgtable_free_tlb() (6.6): tag the table with
    its level and tlb_remove_table() it (powerpc selects MMU_GATHER_RCU_TABLE_FREE)."""
    from pgconform.kernel.mmu_gather import TaggedTable, tlb_remove_table

    yield from tlb_remove_table(k, tlb, TaggedTable(table, index))


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/powerpc/include/asm/book3s/64/pgalloc.h: __pte_free_tlb() (6.6) =
    pgtable_free_tlb(tlb, table, PTE_INDEX).  No destructor here: it runs when the fragment's page
    goes (pte_fragment_free() -> pte_free_now())."""
    yield from pgtable_free_tlb(k, tlb, pgtable, PTE_INDEX)


def __tlb_remove_table(k, tagged):
    """arch/powerpc/include/asm/book3s/64/pgalloc.h: __tlb_remove_table() (6.6): untag and
    pgtable_free() (arch/powerpc/mm/book3s64/pgtable.c), which for PTE_INDEX is
    pte_fragment_free(table, 0): after the batch's grace period, the fragment's count drops and the
    last fragment frees the page (through RCU again if one was deferred)."""
    if tagged.tag == PTE_INDEX:
        yield from k.ops.pte_fragment_free(k, tagged.ptr, 0)


FUNCTIONS.update({"__pte_free_tlb": __pte_free_tlb, "__tlb_remove_table": __tlb_remove_table})
