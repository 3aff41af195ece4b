"""A7: retract_page_tables() without the anon_vma recheck under ptl (v1 of patch 09).

mm/khugepaged.c retract_page_tables(), patch 09 (1d65b771bc08, 6.6) v1 (raised by Peter Xu and
Jann Horn, fixed in v2 <54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>): the racy lockless look
at ``vma->anon_vma`` is all there is.  UFFDIO_COPY into a private, MISSING-registered shmem VMA
attaches an anon_vma and installs an anonymous PTE in the table between that look and the PMD
clear; the table goes to pte_free_defer() with the anon page still in it (lost PTE, "Bad
rss-counter state")."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import retract_page_tables_as, userfaultfd_wp


def retract_page_tables(k, mapping, pgoff):
    """The mutation: under ptl only userfaultfd_wp() is rechecked, not ``vma->anon_vma``."""
    yield from retract_page_tables_as(k, mapping, pgoff, recheck=userfaultfd_wp)


MUTANT = Implementation(
    name="zoo.retract_no_anon_vma_recheck",
    overrides={"retract_page_tables": retract_page_tables},
    description="retract_page_tables() does not recheck vma->anon_vma under ptl (patch 09 v1)",
    source="mm/khugepaged.c retract_page_tables(); v2 changelog of patch 09 (1d65b771bc08): "
           "repeat checks under ptl because UFFD",
    expected=("pt.free-nonempty", "acct.rss", "data.mismatch"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
