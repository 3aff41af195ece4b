"""A0': __pte_offset_map() without rcu_read_lock() (patch 01 missing).

mm/pgtable-generic.c: 6.5's __pte_offset_map() together with pte_free_defer(): the grace
period does not wait for a reader that is not in a read-side section, so the table is freed under
it."""

from pgconform.implementation import Implementation
from pgconform.kernel.objects import PtePtr, pmd_none, pmd_trans_huge
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS


def __pte_offset_map(k, pmdp, addr):
    """The mutation: the 6.5 body, no RCU read-side section."""
    irqflags = yield from k.ops.pmdp_get_lockless_start(k)
    pmdval = yield from k.ops.pmdp_get_lockless(k, pmdp)
    yield from k.ops.pmdp_get_lockless_end(k, irqflags)
    if pmd_none(pmdval) or pmd_trans_huge(pmdval):
        return None, pmdval
    return PtePtr(k.pmd_table(pmdval), k.geo.pte_index(addr)), pmdval


def pte_unmap(k, pte):
    """6.5's pte_unmap() without HIGHPTE: nothing to undo."""
    return
    yield


MUTANT = Implementation(
    name="zoo.pte_offset_map_no_rcu",
    overrides={"__pte_offset_map": __pte_offset_map, "pte_unmap": pte_unmap},
    description="__pte_offset_map() without rcu_read_lock() (and pte_unmap() without the unlock)",
    source="mm/pgtable-generic.c __pte_offset_map(), pte_unmap(): patch 01 (a349d72fd9ef, 6.6) "
           "reverted",
    expected=("pt.use-after-free", "pt.ptlock-use-after-free"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
