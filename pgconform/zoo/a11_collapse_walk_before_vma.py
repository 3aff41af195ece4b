"""A11: collapse_pte_mapped_thp() walks the page tables before checking the VMA (v1 of patch 10).

kernel-series.md §3(a) A11 (Jann Horn; v2: "first check VMA, in case page tables torn down"): the
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
    source="kernel-series.md A11; v2 changelog of patch 10: first check VMA",
    expected=("pt.walk-without-vma",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
