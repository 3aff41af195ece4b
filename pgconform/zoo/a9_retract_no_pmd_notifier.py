"""A9: retract_page_tables() without mmu_notifier_invalidate_range_start/end around the PMD clear
(v1 of patch 09; v2 "bring back mmu_notifier calls for PMD").

mm/khugepaged.c retract_page_tables() (1d65b771bc08, 6.6); v2
<54cb04f-3762-987f-8294-91dafd8ebfb0@google.com> (raised by Jann Horn and Jason Gunthorpe): the
PTEs were notified when
they were unmapped, but a secondary MMU (IOMMU SVA with paging-structure caches, a notifier user
tracking page-table pages) may also cache the PMD -> table step.  pmdp_collapse_flush() flushes the
CPU TLBs only; after pte_free_defer()'s grace period the table is freed and reused while the device
still walks through its cached pointer."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import retract_page_tables_as


def retract_page_tables(k, mapping, pgoff):
    """The mutation: no mmu_notifier range around pml/ptl, the PMD clear and the unlock; the rest
    as in 6.6 (the anon_vma and uffd-wp recheck under ptl, pmdp_get_lockless_sync(),
    pte_free_defer())."""
    yield from retract_page_tables_as(k, mapping, pgoff, notify=False)


MUTANT = Implementation(
    name="zoo.retract_no_pmd_notifier",
    overrides={"retract_page_tables": retract_page_tables},
    description="retract_page_tables() clears the PMD without an mmu_notifier invalidate range "
                "(patch 09 v1)",
    source="mm/khugepaged.c retract_page_tables(); v2 changelog of patch 09 (1d65b771bc08): "
           "bring back mmu_notifier calls for PMD",
    expected=("mmu.pmd-clear-unnotified", "mmu.secondary-stale-table"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
