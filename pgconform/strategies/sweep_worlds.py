"""The exhaustive sweep's worlds: small hand-written worlds, one per scenario shape and a few
more, where the sweep (:mod:`pgconform.harness.sweep`) pairs every operation that frees page
tables with every operation kind.  Their operations meet in the PMD range [4, 8) of mm0 (the
addresses of the kinds' ``sweep_addrs``, :mod:`pgconform.harness.operations`).

A sweep replay string names its world: a world's name and contents are fixed once recorded.
"""

from __future__ import annotations

from pgconform.harness.scenario import VmaSpec, WorldSpec

#: small worlds, one per scenario shape: the PMD range [4, 8) of mm0 is where operations meet
WORLDS: dict[str, WorldSpec] = {
    # a shared mapping of the file, page 4 read in: khugepaged can collapse and retract
    "shared": WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),), prefault=((0, 4, False),)),
    # private and registered with userfaultfd (missing): COW, UFFDIO_COPY, anon_vma appear
    "private": WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False, uffd_missing=True),),
                         prefault=((0, 4, False),)),
    # file pages 0-3 are one PMD-sized folio mapped by PTEs (the table existed before the
    # read): collapse_pte_mapped_thp() is the path
    "pte-mapped-thp": WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False, uffd_missing=True),),
                                thps=(0,), tables=((0, 4),), prefault=((0, 4, False),)),
    # two mms sharing the file (the retract walks both), one with a table for PMD 2 as well
    "mixed": WorldSpec(vmas=(VmaSpec(0, 0, 12, 0), VmaSpec(1, 4, 8, 0)),
                       prefault=((0, 4, False), (1, 5, False), (0, 8, False))),
    # 7.0 only (WORLD_NEEDS): an anonymous private VMA over PMDs 1 and 2, registered with
    # userfaultfd (missing) after pages 5 and 9 were written: UFFDIO_MOVE between the two tables
    # and within one, against MADV_DONTNEED's PT reclaim of PMD 1
    "anon": WorldSpec(vmas=(VmaSpec(0, 4, 8, 4, shared=False, uffd_missing=True, anon=True),),
                      prefault=((0, 5, True), (0, 9, True))),
    # a shared mapping registered with userfaultfd (missing), page 4 read in: UFFDIO_POISON and
    # UFFDIO_COPY into the tables khugepaged retracts (the other uffd worlds are private, where
    # the collapse leaves the tables alone); here the versions' declared poison findings show
    "shared-uffd": WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, uffd_missing=True),),
                             prefault=((0, 4, False),)),
}
#: worlds only some kernel versions are swept in: world -> the KernelVersion flag (the anon world
#: is there for UFFDIO_MOVE; added after the 6.6 worlds, which stay as they were)
WORLD_NEEDS = {"anon": "uffd_move"}


def worlds_for(version, worlds=tuple(WORLDS)) -> tuple[str, ...]:
    """The worlds of ``worlds`` a kernel version is swept in."""
    return tuple(w for w in worlds if w not in WORLD_NEEDS or getattr(version, WORLD_NEEDS[w]))
