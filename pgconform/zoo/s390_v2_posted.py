"""s390 v2 as posted: pte_free_half() tests the other half's H bit on the unshifted refcount.

v2 07/12 <a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com> (arch/s390/mm/pgalloc.c): the callback
xors its H bit off and tests ``mask & 0x0C`` on atomic_xor_bits()'s 32-bit result, whose bits 2-3
belong to the page's ordinary reference count, not to the H bits (bits 26-27).  The other half's
callback is never chained: when both halves of a page are deferred within one grace period, the
second keeps its H and P bits for ever, its table is never given back and the page never freed.
Everything else is the design of :mod:`pgconform.alt.s390_v2`."""

from pgconform.alt import s390_v2
from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.sim.effects import Atomic, CallRcu

#: the low 24 bits of the page's _refcount: the one reference a page-table page holds (the model
#: has no speculative get_page_unless_zero() references)
PAGE_REFCOUNT = 1


def _clear_h_unshifted(m, t, page, bit):
    page.bits ^= 0x04 << bit
    return (page.bits << 24) | PAGE_REFCOUNT


def pte_free_half(k, head, bit):
    """pte_free_half() as posted in v2 07/12 (<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>):
    the mutation is the missing ``>> 24`` before testing the other half's H bit."""
    page = head.owner
    mask = yield Atomic(f"atomic_xor_bits({page!r}, 0x04 << {bit})  [no >> 24]",
                        _clear_h_unshifted, (page, bit), touches=(page,))
    yield from k.ops.__tlb_remove_table(k, s390_v2.tagged_half(page, bit))
    if mask & 0x0C:
        yield CallRcu(page.rcu_head, pte_free_now0 if bit else pte_free_now1, (k, page.rcu_head))


def pte_free_now0(k, head):
    """pte_free_now0() of v2 07/12 as posted: the lower half's RCU callback."""
    yield from pte_free_half(k, head, 0)


def pte_free_now1(k, head):
    """pte_free_now1() of v2 07/12 as posted: the upper half's RCU callback."""
    yield from pte_free_half(k, head, 1)


def pte_free_defer(k, mm, pgtable):
    """pte_free_defer() of v2 07/12 (<a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>), queueing
    the posted callbacks."""
    yield from s390_v2.defer_half(k, mm, pgtable, pte_free_now0, pte_free_now1)


MUTANT = Implementation(
    name="zoo.s390_v2_as_posted",
    overrides={**s390_v2.IMPLEMENTATION.overrides, "pte_free_defer": pte_free_defer},
    arches=("s390",),
    description="s390 v2 07/12 as posted: pte_free_half() misses the >> 24, so the second of two "
                "halves deferred in one grace period is never freed",
    source="v2 07/12 <a722dbec-bd9e-1213-1edd-53cd547aa4f@google.com>: arch/s390/mm/pgalloc.c "
           "pte_free_half() as posted",
    expected=("pt.leak",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
