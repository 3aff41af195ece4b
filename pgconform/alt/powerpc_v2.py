"""Alternative: the v2 powerpc pte_free_defer() of "mm: free retracted page table by RCU"
(patch 05/12 v2, <5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com>, 2023-06-20; the same code was
first posted in the v1 thread as <4df4909f-f5dd-6f94-9792-8f2949f542b3@google.com>).  Replaced in
v3 by the PageActive scheme of the reference (:mod:`pgconform.reference.arch.powerpc`).

The design, on top of the 6.4/6.5 fragment allocator (pte_fragment_free() unchanged by it):

* a deferral turns its fragment's count of 1 in ``pt_frag_refcount`` into PTE_FREE_DEFERRED (D,
  0x10000, larger than any PTE_FRAG_NR); only a deferral that finds no other D in the count
  queues the page's rcu_head;
* the callback turns its D back into 1.  If no deferral arrived during the grace period it frees
  that fragment with pte_fragment_free() (the page goes with the last fragment).  Otherwise it
  drops every extra deferral but one (bias and count), drops its own fragment's count and queues
  the rcu_head again, carrying the one remaining D into a new grace period.

So a D in the count means "the rcu_head is queued or its callback is running", and the page cannot
reach a zero count (be freed) while any D is present.

Modelling notes.  ``PtPage.frag_refcount`` is pt_frag_refcount, bias included.  The kernel does not
know which deferred fragments a D stands for, only how many; the model keeps, per page, the list of
fragments whose count is held by a D (model bookkeeping on ``k``, not kernel state), so that each
count the design drops releases one table (:meth:`Kernel.release_table`) and the oracles can judge
every fragment when the page is freed (readers still inside a grace period, tables in use).  The
callback hands pte_fragment_free() the address of the fragment whose count it holds where the
kernel passes page_address(page): pte_fragment_free() only takes virt_to_page() of it.
"""

from __future__ import annotations

from pgconform.implementation import Implementation
from pgconform.kernel.objects import PtePtr
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.arch.powerpc import _dec_and_test, _free_page
from pgconform.sim.effects import Atomic, CallRcu

#: PTE_FREE_DEFERRED: "beyond any PTE_FRAG_NR"
PTE_FREE_DEFERRED = 0x10000
D = PTE_FREE_DEFERRED


def _deferred(k, page) -> list:
    """Model bookkeeping: the fragments of ``page`` whose count a D (or a callback) still holds,
    oldest first.  Lives on the kernel context, so every run starts empty."""
    return k.__dict__.setdefault("_powerpc_v2_deferred", {}).setdefault(page, [])


# ------------------------------------------------------------------------------------------------
# the baseline pte_fragment_free() (6.4/6.5: no PageActive), which v2 leaves unchanged; the
# count drop itself is the reference's


def pte_fragment_free(k, table, kernel):
    """arch/powerpc/mm/pgtable-frag.c: pte_fragment_free() as of 6.4/6.5, unchanged by v2 05/12
    (<5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com>): BUG if the count is already 0; drop the
    fragment's count, and whoever takes it to 0 runs the destructor (user tables) and frees the
    page at once."""
    table = table.table  # virt_to_page(): the model also keeps which fragment it was
    page = table.page
    last = yield Atomic(f"atomic_dec_and_test({page!r}->pt_frag_refcount)", _dec_and_test,
                        (k, table), touches=(table, page))
    if last:
        yield Atomic(f"pgtable_pte_page_dtor() + __free_page({page!r})", _free_page, (k, page),
                     touches=(page,))


# ------------------------------------------------------------------------------------------------
# v2 05/12


def _add_bias(m, t, k, table):
    """atomic_add_return(PTE_FREE_DEFERRED - 1): the fragment's 1 becomes a D."""
    page = table.page
    page.frag_refcount += D - 1
    _deferred(k, page).append(table)
    return page.frag_refcount


def pte_free_defer(k, mm, pgtable):
    """pte_free_defer() of v2 05/12 (<5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com>): no lock,
    ``mm`` unused.  Add D-1 to the page's count (this fragment's 1 becomes a D); if the result
    shows no other D, nobody is using the rcu_head: queue it for pte_free_now().  Otherwise the
    pending callback will see the extra D and queue the head again."""
    table = pgtable.table
    page = table.page  # virt_to_page()
    new = yield Atomic(f"atomic_add_return(PTE_FREE_DEFERRED - 1, {page!r}->pt_frag_refcount)",
                       _add_bias, (k, table), touches=(table, page))
    if new < 2 * D:
        yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))


def _remove_bias(m, t, k, page):
    """atomic_sub_return(PTE_FREE_DEFERRED - 1): our D goes back to a plain 1; which fragment's
    count that is (model bookkeeping: the oldest deferred one)."""
    page.frag_refcount -= D - 1
    pending = _deferred(k, page)
    ours = pending.pop(0) if pending else None
    return page.frag_refcount, ours


def _drop_extra(m, t, k, page):
    """atomic_sub_return(PTE_FREE_DEFERRED): one more deferral's bias and its fragment's count."""
    table = _deferred(k, page).pop()
    k.release_table(m, t, table, "pte_free_now (extra deferral)")
    page.frag_refcount -= D
    return page.frag_refcount


def _drop_ours(m, t, k, page, ours):
    """atomic_dec(): the count of the fragment this callback was queued for (a D remains, so it
    cannot reach 0)."""
    if ours is not None:
        k.release_table(m, t, ours, "pte_free_now (requeue)")
    page.frag_refcount -= 1


def pte_free_now(k, head):
    """pte_free_now() of v2 05/12 (<5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com>), the RCU
    callback: subtract D-1.  Below D: no deferral came during the grace period, so free our
    fragment with pte_fragment_free().  Else: while two or more Ds remain, subtract a whole D
    (another deferral's bias and count); then drop our fragment's 1 and queue the rcu_head again,
    so the deferrals seen get a grace period that starts now."""
    page = head.owner  # container_of()
    label = f"{page!r}->pt_frag_refcount"
    new, ours = yield Atomic(f"atomic_sub_return(PTE_FREE_DEFERRED - 1, {label})", _remove_bias,
                             (k, page), touches=(page,))
    if new < D:
        # page_address(page) in the kernel: only its page matters to pte_fragment_free()
        yield from k.ops.pte_fragment_free(k, PtePtr(ours, 0) if ours is not None
                                            else PtePtr(page.slots[0], 0), 0)
        return
    while new >= 2 * D:
        new = yield Atomic(f"atomic_sub_return(PTE_FREE_DEFERRED, {label})", _drop_extra,
                           (k, page), touches=(page,))
    yield Atomic(f"atomic_dec({label})", _drop_ours, (k, page, ours), touches=(page,))
    yield CallRcu(page.rcu_head, k.ops.pte_free_now, (k, page.rcu_head))


IMPLEMENTATION = Implementation(
    name="alt.powerpc-v2",
    overrides={"pte_free_defer": pte_free_defer, "pte_free_now": pte_free_now,
               "pte_fragment_free": pte_fragment_free},
    arches=("powerpc64",),
    description="powerpc pte_free_defer() as posted in v2 05/12: a PTE_FREE_DEFERRED bias in "
                "pt_frag_refcount, the first deferral queues the page's rcu_head, the callback "
                "frees what was deferred and requeues if more deferrals arrived",
    source="v2 05/12 <5cd9f442-61da-4c3d-eca-b7f44d22aa5f@google.com> (2023-06-20), first posted "
           "as <4df4909f-f5dd-6f94-9792-8f2949f542b3@google.com>: arch/powerpc/mm/pgtable-frag.c",
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
