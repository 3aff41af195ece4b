"""A1: powerpc v1 pte_free_defer(): every deferral queues the fragment's page rcu_head.

arch/powerpc/mm/pgtable-frag.c, patch 05 v1 <35e983f5-7ed3-b310-d949-9ae8b130cdab@google.com>
(raised by Matthew Wilcox; merged as 32cc0b7c9d50 in 6.6): the rcu_head belongs to the
page, which PTE_FRAG_NR fragments share.  Two fragments of one page deferred within one grace
period (two retracts in the same mm) queue the same rcu_head twice: the RCU callback list is
corrupted, one callback lost or run twice.  The callback does the fragment's pte_fragment_free();
the allocator is the 6.5 one v1 was written against (no PageActive)."""

from pgconform.alt.powerpc_v2 import pte_fragment_free
from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.sim.effects import CallRcu


def pte_free_now(k, pgtable):
    """The v1 callback: pte_fragment_free() of the deferred fragment (the model passes the
    fragment as the callback's argument; the kernel recovered it from the page)."""
    yield from k.ops.pte_fragment_free(k, pgtable, 0)


def pte_free_defer(k, mm, pgtable):
    """The mutation: call_rcu() on the fragment's page rcu_head at every deferral."""
    page = pgtable.table.page  # virt_to_page()
    yield CallRcu(page.rcu_head, pte_free_now, (k, pgtable))


MUTANT = Implementation(
    name="zoo.powerpc_v1_rcu_per_fragment",
    overrides={"pte_free_defer": pte_free_defer, "pte_fragment_free": pte_fragment_free},
    arches=("powerpc64",),
    description="powerpc v1: each deferred fragment call_rcu()s its page's one rcu_head, so two "
                "fragments of a page deferred in one grace period queue it twice",
    source="arch/powerpc/mm/pgtable-frag.c pte_free_defer(); patch 05 v1 (2023-05-28, series "
           "<35e983f5-7ed3-b310-d949-9ae8b130cdab@google.com>), Matthew Wilcox's review",
    expected=("rcu.double-call_rcu",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
