"""B1: collapse_pte_mapped_thp() versus uffd, before a98460494b16 (6.6-rc).

mm/khugepaged.c collapse_pte_mapped_thp() (reported by Jann Horn in
<CAG48ez0FxiRC4d3VTu_a9h=rg5FW-kYD5Rg5xo_RDBM0LTTqZQ@mail.gmail.com>, fixed by Hugh Dickins in
a98460494b16, Fixes: 1043173eb5eb): as first merged, step 2
ran under pte_offset_map_lock() and dropped ptl before step 4 took pml and the old ptl again.  In a
uffd-armed private VMA, UFFDIO_COPY installs an anonymous PTE in that window (the huge folio's lock
does not keep it out), and step 4 retracts the table with it: a lost PTE and a leaked anon page."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import collapse_pte_mapped_thp_as


def collapse_pte_mapped_thp(k, mm, addr, install_pmd):
    """The mutation: no pml from step 2 to step 4 in uffd-armed private VMAs."""
    return (yield from collapse_pte_mapped_thp_as(k, mm, addr, install_pmd, uffd_pml=False))


MUTANT = Implementation(
    name="zoo.collapse_pte_mapped_thp_uffd_window",
    overrides={"collapse_pte_mapped_thp": collapse_pte_mapped_thp},
    description="collapse_pte_mapped_thp() drops ptl between step 2 and step 4 in uffd-armed "
                "private VMAs (1043173eb5eb before a98460494b16)",
    source="mm/khugepaged.c; a98460494b16 mm/khugepaged: fix collapse_pte_mapped_thp() "
           "versus uffd",
    expected=("pt.free-nonempty", "acct.rss", "data.mismatch"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
