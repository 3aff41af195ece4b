"""A10: x86-32 PAE without the writer-side IPI after clearing a PMD (pmdp_get_lockless_sync() a
no-op, as in v1 of patches 02, 09 and 10).

mm/pgtable-generic.c __pte_offset_map() with pmdp_get_lockless() (include/linux/pgtable.h,
CONFIG_GUP_GET_PXX_LOW_HIGH, 6.6) reads the PMD's low half, then its high half, then
the low half again, with IRQs off.  Without tlb_remove_table_sync_one() after the clear, a reader
on a CPU outside mm_cpumask (an rmap walker, khugepaged) can read the low half of the old table,
the high half after the clear, and the same low half again once a new table with equal low bits
is linked: a torn value names a random frame, which it then uses as a page table."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS


def pmdp_get_lockless_sync(k):
    """The mutation: no IPI after the PMD clear."""
    return
    yield


MUTANT = Implementation(
    name="zoo.pae_no_pmdp_get_lockless_sync",
    overrides={"pmdp_get_lockless_sync": pmdp_get_lockless_sync},
    description="no pmdp_get_lockless_sync() (tlb_remove_table_sync_one IPI) after clearing a PMD "
                "on x86-32 PAE",
    source="v1 of patches 02/09/10, fixed in v2 (146b42e07494 pmdp_get_lockless_sync(), 6.6) 'to "
           "issue missing interrupt if PAE' (v2 cover letter "
           "<54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>)",
    expected=("pt.torn-pmd",),
    arches=("x86_pae",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
