"""Alternative: the v2 s390 pte_free_defer() of "mm: free retracted page table by RCU" (patch
07/12 v2, "complete rewrite", <a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>, 2023-06-20),
with the one defect of the posted code corrected (see below).  Replaced in v3 by the PageActive
scheme of the reference (:mod:`pgconform.reference.arch.s390`).

State: the top byte of the page's _refcount (``PtPage.bits``, already shifted down by 24) holds,
per 2K half, A (allocated: 0x01 lower, 0x02 upper), H (pending free through the page's rcu_head:
0x04, 0x08) and P (pending free by any method: 0x10, 0x20).  A and P of one half exclude each
other; H implies P.

The rules of the design:

* a page is on its mm's ``pgtable_list`` exactly when one half is allocated and the other is free
  (neither A nor P): never while a half is pending, so pt_list (and the rcu_head overlaying it)
  belongs to the pending halves;
* one global spinlock, ``mm_pgtable_list_lock`` (taken with spin_lock_bh), guards every
  pgtable_list operation, because the RCU-time relink in __tlb_remove_table() may run after the
  mm is gone and cannot take mm->context.lock;
* pte_free_defer() clears A and sets H and P of its half (taking the page off the list if it was
  listed), and queues the rcu_head unless the other half already holds it (both H set);
* the callback pte_free_half() clears its H, lets __tlb_remove_table() clear its P (relinking the
  page if the other half is allocated, freeing it if nothing is left), then, if the other half's H
  was set, queues the rcu_head for the other half: one rcu_head, shared serially.

The posted pte_free_half() tests ``mask & 0x0C`` on atomic_xor_bits()'s unshifted 32-bit result
(v2 07/12 <a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>): the H bits of the other half are
never seen, and when both halves are
deferred within one grace period the second is never freed.  This module models the design with
the test made on ``mask >> 24``; :mod:`pgconform.zoo.s390_v2_posted` is the code as posted.

Not modelled: the pgste (KVM, 4K table) branches (``mm_alloc_pgste`` is never true in the model,
there are no KVM guests), the crst tag of __tlb_remove_table() (upper-level tables are not freed
in the model) and the WARN_ON_ONCE()s (no clause; what they check is covered by the list and
storage oracles).  page_table_free_rcu() and __tlb_remove_table() are reached from munmap's
free_pgtables() through the mmu_gather (:mod:`pgconform.kernel.mmu_gather`) and, for
__tlb_remove_table(), from pte_free_half().

The global lock is a per-:class:`Kernel` object (created on first use and stored on ``k``), so runs
stay independent and deterministic.  Each release of a half is reported with
:meth:`Kernel.release_table` where the design clears the half's last bit (A in page_table_free(),
P in __tlb_remove_table()), and the page is freed through :meth:`Kernel.free_pt_page` when the
byte reaches 0, so the oracles judge every reuse and free.
"""

from __future__ import annotations

from pgconform.implementation import Implementation
from pgconform.kernel.list import list_add, list_del_init
from pgconform.kernel.objects import PtePtr
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.arch.generic import table_address
from pgconform.sim.effects import Atomic, CallRcu, Lock, Unlock
from pgconform.sim.sync import Spinlock

SOURCE = "<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>"


def mm_pgtable_list_lock(k) -> Spinlock:
    """static DEFINE_SPINLOCK(mm_pgtable_list_lock) of v2 07/12: one per modelled kernel."""
    lock = k.__dict__.get("_s390_v2_list_lock")
    if lock is None:
        lock = k.__dict__["_s390_v2_list_lock"] = Spinlock("mm_pgtable_list_lock",
                                                           cls="s390_pgtable_list_lock")
    return lock


def _free_page(m, t, k, page):
    k.free_pt_page(m, t, page)


def _free_page_now(k, page):
    """The common tail: pgtable_pte_page_dtor() + __free_page() (page_table_release_check() is a
    debug dump only)."""
    yield Atomic(f"pgtable_pte_page_dtor() + __free_page({page!r})", _free_page, (k, page),
                 touches=(page,))


# ------------------------------------------------------------------------------------------------
# page_table_alloc()


def _take_listed(m, t, k, mm):
    """Under the list lock: the first listed page's free half becomes allocated; the page, now
    full, leaves the list."""
    lst = mm.context["pgtable_list"]
    if not lst:
        return None
    page = lst[0]
    mask = page.bits  # atomic_read(&page->_refcount) >> 24
    bit = mask & 0x01  # lower allocated -> the upper half; else the lower one
    page.bits ^= 0x01 << bit
    list_del_init(m, t, page)
    return k.hand_out(m, t, page, bit)


def _new_page(m, t, k, mm):
    page = k.new_pt_page(mm)  # also page->pt_mm = mm (new in v2)
    page.bits ^= 0x01
    return k.hand_out(m, t, page, 0)


def _list_add_head(m, t, mm, page):
    list_add(m, t, page, mm.context["pgtable_list"], tail=False)


def page_table_alloc(k, mm):
    """arch/s390/mm/pgalloc.c: page_table_alloc() of v2 07/12 (<a722dbec-bd9e-1213-1edd-
    53cd547aa4f@google.com>): under the global mm_pgtable_list_lock, the free half of the first
    listed page (a listed page has no pending bits); else a new page with pt_mm set, its lower
    half allocated, listed for its upper half under the same lock."""
    lock = mm_pgtable_list_lock(k)
    yield Lock(lock)
    table = yield Atomic("pgtable_list: take a free 2K half", _take_listed, (k, mm), touches=(mm,))
    yield Unlock(lock)
    if table is not None:
        return table_address(table)
    table = yield Atomic("alloc_page() + pgtable_pte_page_ctor(), pt_mm = mm, AA=01", _new_page,
                         (k, mm))
    yield Lock(lock)
    yield Atomic(f"list_add({table.page!r}, pgtable_list)", _list_add_head, (mm, table.page),
                 touches=(table.page,))
    yield Unlock(lock)
    return table_address(table)


# ------------------------------------------------------------------------------------------------
# page_table_free()


def _free_half(m, t, k, mm, table):
    """Under the list lock: xor A off; list the page if the other half is allocated (it was full),
    unlist it if the other half is neither allocated nor pending (it was listed)."""
    page = table.page
    k.release_table(m, t, table, "page_table_free")
    page.bits ^= 0x01 << table.slot
    mask = page.bits
    if mask & 0x03:
        list_add(m, t, page, mm.context["pgtable_list"], tail=False)
    elif not mask & 0x30:
        list_del_init(m, t, page)
    return mask


def page_table_free(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: page_table_free() of v2 07/12 (<a722dbec-bd9e-1213-1edd-
    53cd547aa4f@google.com>): one xor clearing the half's A under the global list lock, relisting
    or unlisting the page; if no bit is left, free the page now (a pending other half leaves that
    to __tlb_remove_table())."""
    table = pgtable.table
    page = table.page
    lock = mm_pgtable_list_lock(k)
    yield Lock(lock)
    mask = yield Atomic(f"atomic_xor_bits({page!r}, 0x01 << {table.slot})", _free_half,
                        (k, mm, table), touches=(table, page))
    yield Unlock(lock)
    if mask != 0:
        return
    yield from _free_page_now(k, page)


# ------------------------------------------------------------------------------------------------
# page_table_free_rcu() and __tlb_remove_table(): freeing through the mmu_gather


def _free_half_rcu(m, t, k, mm, table):
    """Under the list lock: xor 0x11 (A off, P on); unlist the page if the other half is neither
    allocated nor pending (it was listed).  No relink here: __tlb_remove_table() relinks."""
    page = table.page
    page.bits ^= 0x11 << table.slot
    mask = page.bits
    if (mask & 0x03) == 0 and (mask & 0x30) != 0x30:
        list_del_init(m, t, page)
    return mask


def page_table_free_rcu(k, tlb, pgtable, vmaddr):
    """arch/s390/mm/pgalloc.c: page_table_free_rcu() of v2 07/12 (<a722dbec-bd9e-1213-1edd-
    53cd547aa4f@google.com>), not for a pgste mm: under the global list lock clear the half's A
    and set its P, taking the page off pgtable_list if it was on it (6.4's list_add_tail when the
    other half is allocated is gone: the page is relinked after the grace period); then
    tlb_remove_table() of the pointer tagged with the half (1 << bit)."""
    from pgconform.kernel.mmu_gather import TaggedTable, tlb_remove_table

    table = pgtable.table
    page = table.page
    mm = tlb.mm
    lock = mm_pgtable_list_lock(k)
    yield Lock(lock)
    yield Atomic(f"atomic_xor_bits({page!r}, 0x11 << {table.slot})", _free_half_rcu,
                 (k, mm, table), touches=(table, page))
    yield Unlock(lock)
    yield from tlb_remove_table(k, tlb, TaggedTable(pgtable, 1 << table.slot))


def _peek(m, t, page):
    return page.bits


def _clear_pending(m, t, k, table, half, relink):
    """xor the half's P off; the half's table is given back now.  Under the lock (``relink``):
    if the other half is allocated, relink the page so the freed half can be reused."""
    page = table.page
    k.release_table(m, t, table, "__tlb_remove_table")
    page.bits ^= half << 4
    mask = page.bits
    if relink and mask & 0x03:
        list_add(m, t, page, page.mm.context["pgtable_list"], tail=False)
    return mask


def __tlb_remove_table(k, tagged):
    """arch/s390/mm/pgalloc.c: __tlb_remove_table() of v2 07/12 (<a722dbec-bd9e-1213-1edd-
    53cd547aa4f@google.com>), for a 2K half (tag 0x01 lower, 0x02 upper; crst and pgste tags do
    not occur in the model).  An unlocked peek: if the other half is allocated (so page->pt_mm is
    valid), clear P under the global list lock and relink the page when the other half is still
    allocated; else clear P unlocked (the other half cannot become allocated while this one is
    pending: the page is not listed).  If the byte is now 0, free the page."""
    half = tagged.tag & 0x03
    table = tagged.ptr.table
    page = table.page
    if (yield Atomic(f"atomic_read({page!r}->_refcount) >> 24", _peek, (page,),
                     touches=(page,))) & 0x03:
        lock = mm_pgtable_list_lock(k)  # page->pt_mm: the model's list lock is not per mm
        yield Lock(lock)
        mask = yield Atomic(f"atomic_xor_bits({page!r}, {half} << 28) + relink", _clear_pending,
                            (k, table, half, True), touches=(table, page))
        yield Unlock(lock)
    else:
        mask = yield Atomic(f"atomic_xor_bits({page!r}, {half} << 28)", _clear_pending,
                            (k, table, half, False), touches=(table, page))
    if mask != 0:
        return
    yield from _free_page_now(k, page)


def tagged_half(page, bit):
    """``page_to_virt(page) + bit * PTRS_PER_PTE | (1 << bit)``: the half's table, tagged, as
    pte_free_half() hands it to __tlb_remove_table()."""
    from pgconform.kernel.mmu_gather import TaggedTable

    return TaggedTable(PtePtr(page.slots[bit], 0), 0x01 << bit)


# ------------------------------------------------------------------------------------------------
# pte_free_defer(), pte_free_half(), pte_free_now0/1


def _defer_half(m, t, k, mm, table):
    """Under the list lock: xor 0x15 << bit (A off, H and P on); unlist the page if the other half
    is neither allocated nor pending (then it was listed)."""
    page = table.page
    page.bits ^= 0x15 << table.slot
    mask = page.bits
    if (mask & 0x03) == 0 and (mask & 0x30) != 0x30:
        list_del_init(m, t, page)
    return mask


def defer_half(k, mm, pgtable, now0, now1):
    """The body of pte_free_defer(), with the callbacks to queue for each half."""
    table = pgtable.table
    page = table.page  # virt_to_page()
    bit = table.slot
    lock = mm_pgtable_list_lock(k)
    yield Lock(lock)
    mask = yield Atomic(f"atomic_xor_bits({page!r}, 0x15 << {bit})", _defer_half,
                        (k, mm, table), touches=(table, page))
    yield Unlock(lock)
    if (mask & 0x0C) != 0x0C:
        yield CallRcu(page.rcu_head, now1 if bit else now0, (k, page.rcu_head))


def pte_free_defer(k, mm, pgtable):
    """arch/s390/mm/pgalloc.c: pte_free_defer() of v2 07/12 (<a722dbec-bd9e-1213-1edd-
    53cd547aa4f@google.com>): under the global list lock clear the half's A and set its H and P,
    taking the page off pgtable_list if it was on it; then queue the page's rcu_head for this half
    unless the other half's callback holds it (both H set), which will chain to this one."""
    yield from defer_half(k, mm, pgtable, pte_free_now0, pte_free_now1)


def _clear_h(m, t, page, bit):
    page.bits ^= 0x04 << bit
    return page.bits


def pte_free_half(k, head, bit):
    """pte_free_half() of v2 07/12 (<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>), with the
    H test made on the shifted value (the posted code omits the ``>> 24``): clear this half's H,
    __tlb_remove_table() the half (clears P, relinks or frees the page), then, if the other half's
    H was set, queue the rcu_head for it."""
    page = head.owner  # container_of()
    mask = yield Atomic(f"atomic_xor_bits({page!r}, 0x04 << {bit}) >> 24", _clear_h, (page, bit),
                        touches=(page,))
    yield from k.ops.__tlb_remove_table(k, tagged_half(page, bit))
    if mask & 0x0C:
        yield CallRcu(page.rcu_head, pte_free_now0 if bit else pte_free_now1, (k, page.rcu_head))


def pte_free_now0(k, head):
    """pte_free_now0() of v2 07/12 (<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>): the RCU
    callback for the lower half."""
    yield from pte_free_half(k, head, 0)


def pte_free_now1(k, head):
    """pte_free_now1() of v2 07/12 (<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>): the RCU
    callback for the upper half."""
    yield from pte_free_half(k, head, 1)


IMPLEMENTATION = Implementation(
    name="alt.s390-v2",
    overrides={"page_table_alloc": page_table_alloc, "page_table_free": page_table_free,
               "page_table_free_rcu": page_table_free_rcu,
               "__tlb_remove_table": __tlb_remove_table, "pte_free_defer": pte_free_defer},
    arches=("s390",),
    description="s390 pte_free_defer() as designed in v2 07/12 (PP HH AA bits, never listed while "
                "a half is pending, one rcu_head shared serially by pte_free_now0/1, relinking in "
                "__tlb_remove_table, a global mm_pgtable_list_lock), with the missing >> 24 of "
                "the posted pte_free_half() restored",
    source="v2 07/12 <a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com> (2023-06-20): "
           "arch/s390/mm/pgalloc.c, arch/s390/include/asm/pgalloc.h",
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
