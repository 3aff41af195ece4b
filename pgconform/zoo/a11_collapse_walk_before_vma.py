"""A11: collapse_pte_mapped_thp() walks the page tables before checking the VMA (v1 of patch 10).

mm/khugepaged.c collapse_pte_mapped_thp(), patch 10 (1043173eb5eb, 6.6) v1; Jann Horn's review,
v2 <54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>:
"first check VMA, in case page tables torn down".  The
6.5 order, find_pmd_or_thp_or_none() first, is safe only under mmap_lock for write.  Under the read
lock of 6.6, munmap() can have detached the VMA and be freeing the tables below it (it downgrades
to the read lock for free_pgtables()) while collapse walks into them."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import collapse_pte_mapped_thp_as


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """The mutation: the page-table walk comes before vma_lookup() and the range check."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, vma_first=False))


MUTANT = Implementation(
    name="zoo.collapse_walk_before_vma_check",
    overrides={"collapse_pte_mapped_thp": collapse_pte_mapped_thp},
    description="collapse_pte_mapped_thp() walks page tables before validating the VMA "
                "(patch 10 v1)",
    source="mm/khugepaged.c collapse_pte_mapped_thp(); v2 changelog of patch 10 (1043173eb5eb): "
           "first check VMA",
    expected=("pt.walk-without-vma",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
