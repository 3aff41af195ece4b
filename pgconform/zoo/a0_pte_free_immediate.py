"""A0: retract_page_tables()/collapse_pte_mapped_thp() free the retracted table at once.

mm/khugepaged.c: 6.5's collapse_and_free_pmd() free (pte_free()) combined with 6.6's
reduced locking: a pte_offset_map*() user that snapshotted the PMD before the clear still walks
the table after it is freed and reused."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS


def pte_free_defer(k, mm, pgtable):
    """The mutation: pte_free() instead of deferring it past an RCU grace period."""
    yield from k.ops.pte_free(k, mm, pgtable)


MUTANT = Implementation(
    name="zoo.retract_pte_free_immediate",
    overrides={"pte_free_defer": pte_free_defer},
    description="retracted page table freed immediately (pte_free instead of pte_free_defer)",
    source="mm/khugepaged.c: the 6.5 free of collapse_and_free_pmd() under the 6.6 locking of "
           "1d65b771bc08 and 1043173eb5eb (patches 09, 10)",
    expected=("pt.use-after-free", "pt.ptlock-use-after-free", "pt.reuse-before-gp"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
