"""A3: s390 v1 pte_free_defer(): call_rcu() on the page while it may be on pgtable_list.

arch/s390/mm/pgalloc.c, patch 07 v1 <35e983f5-7ed3-b310-d949-9ae8b130cdab@google.com>
(raised by Gerald Schaefer and Matthew Wilcox; merged as 8211dad62798 in 6.6): v1 encodes
``mm | half`` in page->pt_mm, mmgrab()s the mm and queues the page's rcu_head, whose callback frees
the half with page_table_free() and mmdrop_async()s the mm.  The rcu_head overlays pt_list, which
links the page on mm->context.pgtable_list whenever its other half is free (or is freed meanwhile),
and both halves of a page deferred within one grace period queue the one rcu_head twice.  The
allocator is the 6.5 one v1 was written against (the reference with PageActive never set)."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.sim.effects import Atomic, CallRcu


def _grab(m, t, mm, pgtable):
    """page->pt_mm = mm | half; mmgrab(mm): pins the struct (mm_count), which the model never
    frees, so there is nothing to update."""


def pte_free_half_v1(k, mm, pgtable):
    """The v1 callback: page_table_free() of the half (mm and half decoded from page->pt_mm),
    then mmdrop_async(mm)."""
    yield from k.ops.page_table_free(k, mm, pgtable)


def pte_free_defer(k, mm, pgtable):
    """The mutation: call_rcu() on the parent page's rcu_head without taking it off the list."""
    page = pgtable.table.page  # virt_to_page()
    yield Atomic(f"{page!r}->pt_mm = {mm!r} | half; mmgrab({mm!r})", _grab, (mm, pgtable),
                 touches=(page,))
    yield CallRcu(page.rcu_head, pte_free_half_v1, (k, mm, pgtable))


MUTANT = Implementation(
    name="zoo.s390_v1_rcu_head_on_list",
    overrides={"pte_free_defer": pte_free_defer},
    arches=("s390",),
    description="s390 v1: pte_free_defer() call_rcu()s the parent page while it may still be "
                "linked on pgtable_list through the same storage (and twice for two halves)",
    source="arch/s390/mm/pgalloc.c pte_free_defer(); patch 07 v1 (2023-05-28), Gerald Schaefer's "
           "and Matthew "
           "Wilcox's reviews",
    expected=("rcu.head-storage-in-use", "rcu.double-call_rcu"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
