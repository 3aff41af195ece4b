"""Strategies for worlds (who maps what) and for the operations CPUs perform in them.

Worlds are small on purpose (geometry of 4 PTEs per table, a file of 8 pages, one or two mms) so
that short schedules reach every state; they are shaped so that collapse and retraction are
possible: VMAs are mostly PMD-aligned and cover whole PMD ranges."""

from __future__ import annotations

from hypothesis import strategies as st

from pgconform.harness.scenario import FILE_PAGES, VmaSpec, WorldSpec
from pgconform.kernel.config import Geometry

GEO = Geometry()


#: world shapes, one per conformance scenario: which mappings the race happens in
SHAPES = {
    # every mapping shared: retraction against faults, zaps, rmap walks, in one or two mms
    "shared": dict(shared=True, aliases=False),
    # private mappings (COW, userfaultfd-registered): anon pages and UFFDIO_COPY against retract
    "private": dict(shared=False, aliases=False),
    # anything, including a second mapping of the same file pages in the same mm (aliases)
    "mixed": dict(shared=None, aliases=True),
}


@st.composite
def vma_specs(draw, mm: int, shared=None):
    nr = GEO.hpage_pmd_nr
    start = draw(st.sampled_from([nr, 0, 2 * nr, 1]), label="vma start")
    npages = draw(st.sampled_from([2 * nr, nr]), label="vma pages")
    pgoff = draw(st.sampled_from([0, nr]), label="vma pgoff")
    if shared is None:
        shared = draw(st.booleans().map(lambda b: not b), label="shared")
    uffd = draw(st.booleans(), label="uffd missing registered")
    # also registered in write-protect (2) or minor (3) mode, now and then
    more = draw(st.integers(0, 3), label="uffd wp/minor registered")
    return VmaSpec(mm, start, npages, pgoff, shared, uffd, uffd_wp=more == 2,
                   uffd_minor=more == 3)


@st.composite
def worlds(draw, shape: str = "mixed"):
    """A world of the given shape (:data:`SHAPES`)."""
    shared, aliases = SHAPES[shape]["shared"], SHAPES[shape]["aliases"]
    nmms = draw(st.integers(1, 2), label="mms")
    vmas = tuple(draw(vma_specs(mm, shared)) for mm in range(nmms))
    if aliases and draw(st.booleans(), label="alias mapping"):
        # a second VMA of mm0 over file pages the first one maps too (build_world skips overlaps)
        vmas += (draw(vma_specs(0, shared)),)
    cached = ()
    for _ in range(FILE_PAGES // GEO.hpage_pmd_nr):
        # a range is usually complete (collapsible); otherwise a bitmask says which pages are
        sparse = draw(st.integers(0, 3), label="range with holes") == 3
        holes = draw(st.integers(0, 2 ** GEO.hpage_pmd_nr - 1), label="holes") if sparse else 0
        cached += tuple(not holes >> i & 1 for i in range(GEO.hpage_pmd_nr))
    # PMD-sized folios already in the page cache: the precondition of collapse_pte_mapped_thp()
    thps = tuple(r * GEO.hpage_pmd_nr for r in range(FILE_PAGES // GEO.hpage_pmd_nr)
                 if draw(st.integers(0, 2), label="THP in page cache") == 2)
    mapped = [(v.mm, v.start + i) for v in vmas for i in range(v.npages)
              if v.start + i < GEO.task_size]
    prefault = tuple(draw(st.lists(
        st.tuples(st.sampled_from(mapped), st.booleans()).map(lambda p: (*p[0], p[1])),
        max_size=4), label="prefault"))
    # empty PTE tables (as MADV_DONTNEED leaves them): a THP faulted there is PTE-mapped
    aligned = sorted({(v.mm, v.start + i) for v in vmas for i in range(v.npages)
                      if (v.start + i) % GEO.hpage_pmd_nr == 0 and v.start + i < GEO.task_size})
    mask = draw(st.integers(0, 2 ** len(aligned) - 1), label="empty PTE tables") if aligned else 0
    tables = tuple(place for i, place in enumerate(aligned) if mask >> i & 1)
    # a device sharing each mm's address space (mmu_notifier subscriber): device operations and
    # the invalidations it must receive; off in most worlds, since every notifier call costs more
    secondary = draw(st.integers(0, 2), label="secondary MMU") == 2
    # uffd-wp VMAs: often write-protected in part or whole before the race (markers in place)
    wp = tuple((v.mm, v.start, draw(st.integers(1, v.npages), label="write-protected pages"))
               for v in vmas if v.uffd_wp and draw(st.booleans(), label="write-protect"))
    return WorldSpec(vmas, cached, thps, prefault, tables, secondary_mmu=secondary,
                     writeprotect=wp)


def hot_places(world: WorldSpec) -> list[tuple[int, int]]:
    """(mm, PMD range) pairs where operations can meet: ranges that a VMA covers whole and aligned
    (collapsible) first, then ranges a VMA covers in part."""
    nr = GEO.hpage_pmd_nr
    full, part = [], []
    for v in world.vmas:
        for i in range(v.npages):
            addr = v.start + i
            if addr >= GEO.task_size:
                break
            place = (v.mm, GEO.haddr(addr))
            whole = addr % nr == 0 and i + nr <= v.npages and addr + nr <= GEO.task_size
            if whole and place not in full:
                full.append(place)
            elif place not in part:
                part.append(place)
    return full + [p for p in part if p not in full] or [(0, 0)]
