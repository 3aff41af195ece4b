"""A8: retract_page_tables() without the userfaultfd_wp() recheck under ptl (v1 of patch 09).

mm/khugepaged.c retract_page_tables(), patch 09 (1d65b771bc08, 6.6) v1, fixed in v2
<54cb04f-3762-987f-8294-91dafd8ebfb0@google.com>: the lockless look at userfaultfd_wp(vma) is
all there is (the anon_vma
recheck stays).  Between that look and the PMD clear, UFFDIO_REGISTER(MODE_WP) sets VM_UFFD_WP
(mmap_lock for write, which retract does not take) and UFFDIO_WRITEPROTECT installs
PTE_MARKER_UFFD_WP in the none entries of the table under its ptl alone, no folio lock; the table
goes to pte_free_defer() with the markers in it, and later writes there reach the page without a
uffd-wp fault: the monitor (CRIU, a live snapshot) silently misses them."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import retract_page_tables_as


def _anon_vma_only(vma) -> bool:
    return vma.anon_vma is not None


def retract_page_tables(k, mapping, pgoff):
    """The mutation: under ptl only ``vma->anon_vma`` is rechecked, not userfaultfd_wp()."""
    yield from retract_page_tables_as(k, mapping, pgoff, recheck=_anon_vma_only)


MUTANT = Implementation(
    name="zoo.retract_no_uffd_wp_recheck",
    overrides={"retract_page_tables": retract_page_tables},
    description="retract_page_tables() does not recheck userfaultfd_wp() under ptl (patch 09 v1)",
    source="mm/khugepaged.c retract_page_tables(); v2 changelog of patch 09 (1d65b771bc08): "
           "repeat checks under ptl because UFFD",
    expected=("pt.free-nonempty", "data.uffd-marker-lost", "data.uffd-wp-write-unnotified"),
    arches=("x86_64",),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
