"""Reference: s390 2K page tables, two per 4K page, arch/s390/mm/pgalloc.c (Linux 6.6; the
pte_free_defer() of patch 07 as merged, 8211dad62798, "much simpler, following Gerald").

The top byte of the page's _refcount holds AA (half allocated, bits 0-1) and PP (half pending
removal, bits 4-5; never both for one half).  A page with exactly one free half is kept on the
per-mm ``pgtable_list`` (under mm->context.lock) for reuse; the list links through pt_list, the
same storage as the page's rcu_head.  pte_free_defer() marks the page Active: page_table_free()
then takes it off the list for good, and the final free of an Active page waits for a grace
period.  pgtable_t is the table's address (unsigned long *).
"""

from __future__ import annotations

from pgconform.kernel.list import list_add, list_del_init
from pgconform.reference.arch.generic import table_address
from pgconform.sim.effects import Atomic, CallRcu, Lock, Unlock


def _take_listed(m, t, k, mm):
    """Under context.lock: the first listed page's free half (pending halves count as used)."""
    lst = mm.context["pgtable_list"]
    if not lst:
        return None
    page = lst[0]
    mask = page.bits
    mask = (mask | mask >> 4) & 0x03
    if mask == 0x03:
        return None
    bit = mask & 1  # lower half in use -> the upper one
    page.bits ^= 0x01 << bit
    list_del_init(m, t, page)
    return k.hand_out(m, t, page, bit)


def _new_page(m, t, k, mm):
    page = k.new_pt_page(mm)
    page.bits ^= 0x01
    return k.hand_out(m, t, page, 0)


def page_table_alloc(k, mm):
    """arch/s390/mm/pgalloc.c: page_table_alloc() (6.6): under context.lock, a free half of the
    first page on pgtable_list (taking it off the list); else a new page, ctor'd, whose lower half
    is returned and which is listed for its upper half."""
    lock = mm.context["lock"]
    yield Lock(lock)
    table = yield Atomic("pgtable_list: take a free 2K half", _take_listed, (k, mm), touches=(mm,))
    yield Unlock(lock)
    if table is not None:
        return table_address(table)
    table = yield Atomic("pagetable_alloc() + pagetable_pte_ctor(), AA=01", _new_page, (k, mm))
    yield Lock(lock)
    yield Atomic(f"list_add({table.page!r}, pgtable_list)", _list_add_head, (mm, table.page),
                 touches=(table.page,))
    yield Unlock(lock)
    return table_address(table)


def _list_add_head(m, t, mm, page):
    list_add(m, t, page, mm.context["pgtable_list"], tail=False)


def _free_half(m, t, k, mm, table):
    """Under context.lock: xor 0x11 (AA off, PP on) and relist or unlist the page."""
    page = table.page
    k.release_table(m, t, table, "page_table_free")
    page.bits ^= 0x11 << table.slot
    if page.bits & 0x03 and not page.active:
        list_add(m, t, page, mm.context["pgtable_list"], tail=False)
    else:
        list_del_init(m, t, page)
    return page.bits


def _clear_pending(m, t, page, bit):
    page.bits ^= 0x10 << bit
    return page.bits


def _test_clear_active(m, t, page):
    was = page.active
    page.active = False
    return was


def page_table_release(k, page):
    """The tail of page_table_free() and __tlb_remove_table() (6.6): the page has no half left;
    TestClearPageActive ? call_rcu(pte_free_now) : pte_free_now()."""
    if (yield Atomic(f"TestClearPageActive({page!r})", _test_clear_active, (page,),
                     touches=(page,))):
        yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))
    else:
        yield from k.ops.pte_free_now(k, page.rcu_head)


def page_table_free(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: page_table_free() (6.6): under context.lock clear AA and set PP for
    the half; list the page for reuse if the other half is allocated and the page is not Active,
    else take it off the list; then, unlocked, clear PP; if no bit is left, release the page."""
    table = pgtable.table
    page = table.page
    lock = mm.context["lock"]
    yield Lock(lock)
    yield Atomic(f"atomic_xor_bits({page!r}, 0x11 << {table.slot})", _free_half, (k, mm, table),
                 touches=(table, page))
    yield Unlock(lock)
    mask = yield Atomic(f"atomic_xor_bits({page!r}, 0x10 << {table.slot})", _clear_pending,
                        (page, table.slot), touches=(page,))
    if mask != 0:
        return
    yield from page_table_release(k, page)


def pte_alloc_one(k, mm):
    """arch/s390/include/asm/pgalloc.h: pte_alloc_one() (6.6) = page_table_alloc()."""
    return (yield from k.ops.page_table_alloc(k, mm))


def pte_free(k, mm, pgtable):
    """arch/s390/include/asm/pgalloc.h: pte_free() (6.6) = page_table_free()."""
    yield from k.ops.page_table_free(k, mm, pgtable)


def _free_page(m, t, k, page):
    k.free_pt_page(m, t, page)


def pte_free_now(k, head):
    """arch/s390/mm/pgalloc.c: pte_free_now() (6.6): pagetable_pte_dtor() and pagetable_free() of
    the page owning ``head``; it does not touch the mm, which may be gone by then."""
    page = head.owner
    yield Atomic(f"pagetable_pte_dtor() + pagetable_free({page!r})", _free_page, (k, page),
                 touches=(page,))


def _set_active(m, t, page):
    page.active = True


def pte_free_defer(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: pte_free_defer() (6.6, patch 07 v3): SetPageActive, then
    page_table_free(): the page leaves pgtable_list for good, and its final free waits for RCU."""
    page = pgtable.table.page  # virt_to_page()
    yield Atomic(f"SetPageActive({page!r})", _set_active, (page,), touches=(page,))
    yield from k.ops.page_table_free(k, mm, pgtable)


FUNCTIONS = {"pte_alloc_one": pte_alloc_one, "pte_free": pte_free,
             "page_table_alloc": page_table_alloc, "page_table_free": page_table_free,
             "pte_free_now": pte_free_now, "pte_free_defer": pte_free_defer}


# ------------------------------------------------------------------------------------------------
# freeing through the mmu_gather (free_pgtables(); arch/s390/mm/pgalloc.c page_table_free_rcu(),
# __tlb_remove_table(), 6.6)


def _free_half_rcu(m, t, k, mm, table):
    """Under context.lock: xor 0x11 (AA off, PP on); list_add_tail if the other half is allocated
    and the page not Active (the freed half becomes reusable once its PP bit is cleared), else
    list_del_init."""
    page = table.page
    k.release_table(m, t, table, "page_table_free_rcu")
    page.bits ^= 0x11 << table.slot
    if page.bits & 0x03 and not page.active:
        list_add(m, t, page, mm.context["pgtable_list"], tail=True)
    else:
        list_del_init(m, t, page)


def page_table_free_rcu(k, tlb, pgtable, vmaddr):
    """arch/s390/mm/pgalloc.c: page_table_free_rcu() (6.6), not for a pgste mm (gmap_unlink() and
    the 4K 0x03 tag are not modelled): under context.lock clear AA and set PP for the half and
    relist (at the tail) or unlist the page; then tlb_remove_table() of the pointer tagged with the
    half (1 << bit)."""
    from pgconform.kernel.mmu_gather import TaggedTable, tlb_remove_table

    table = pgtable.table
    page = table.page
    mm = tlb.mm
    lock = mm.context["lock"]
    yield Lock(lock)
    yield Atomic(f"atomic_xor_bits({page!r}, 0x11 << {table.slot})", _free_half_rcu,
                 (k, mm, table), touches=(table, page))
    yield Unlock(lock)
    yield from tlb_remove_table(k, tlb, TaggedTable(pgtable, 1 << table.slot))


def __pte_free_tlb(k, tlb, pgtable, address):
    """arch/s390/include/asm/tlb.h: pte_free_tlb() (6.6) (s390 defines it whole; the generic
    freed_tables bookkeeping is the same): page_table_free_rcu(), which keeps the AA/PP bits."""
    yield from k.ops.page_table_free_rcu(k, tlb, pgtable, address)


def _clear_pending_half(m, t, page, half):
    page.bits ^= half << 4
    return page.bits


def __tlb_remove_table(k, tagged):
    """arch/s390/mm/pgalloc.c: __tlb_remove_table() (6.6) for a 2K half (tag 0x01/0x02): clear its
    PP bit; if no AA/PP bit is left, release the page (TestClearPageActive ? call_rcu(pte_free_now)
    : pte_free_now()).  It does not touch the mm (an RCU callback may outlive it).  Tags 0 (crst)
    and 3 (pgste) do not occur in the model."""
    half = tagged.tag & 0x03
    page = tagged.ptr.table.page
    mask = yield Atomic(f"atomic_xor_bits({page!r}, {half:#x} << 4)", _clear_pending_half,
                        (page, half), touches=(page,))
    if mask != 0:
        return
    yield from page_table_release(k, page)


FUNCTIONS.update({"__pte_free_tlb": __pte_free_tlb, "page_table_free_rcu": page_table_free_rcu,
                  "__tlb_remove_table": __tlb_remove_table})
