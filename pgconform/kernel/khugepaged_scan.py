"""The environment of the collapse callers in mm/khugepaged.c (Linux 6.6): the scan of a file range
(hpage_collapse_scan_file()) and the VMA check hugepage_vma_revalidate() makes.  The callers
themselves, khugepaged_scan_mm_slot() and madvise_collapse(), are series functions
(pgconform/reference/khugepaged.py)."""

from __future__ import annotations

from pgconform.sim.effects import Atomic

SCAN_PTE_MAPPED_HUGEPAGE = "SCAN_PTE_MAPPED_HUGEPAGE"


def _scan_file(m, t, k, file, start):
    """hpage_collapse_scan_file() (6.6): an xarray walk under RCU, no page-table access."""
    nr = k.geo.hpage_pmd_nr
    for index in range(start, start + nr):
        folio = file.pages.get(index)
        if folio is None:
            return "SCAN_EXCEED_NONE_PTE"
        if folio.nr > 1:
            if folio.nr == nr and folio.index == start:
                return SCAN_PTE_MAPPED_HUGEPAGE
            return "SCAN_PAGE_COMPOUND"
    return "SCAN_SUCCEED"


def hpage_collapse_scan_file(k, mm, addr, file, start, is_khugepaged):
    """mm/khugepaged.c: hpage_collapse_scan_file() (6.6): collapse_file() when the range is all
    small pages; SCAN_PTE_MAPPED_HUGEPAGE when it is already one PMD-sized folio."""
    result = yield Atomic(f"hpage_collapse_scan_file({file!r}, {start})", _scan_file,
                          (k, file, start), touches=(file,))
    if result == "SCAN_SUCCEED":
        result = yield from k.ops.collapse_file(k, mm, addr, file, start, is_khugepaged)
    return result


def hugepage_vma_revalidate(k, mm, haddr):
    """mm/khugepaged.c: hugepage_vma_revalidate() (6.6), after mmap_lock was dropped and taken
    again: the VMA found at ``haddr`` if it still maps a file over the whole PMD range, else None
    (SCAN_VMA_NULL, SCAN_ADDRESS_RANGE, SCAN_VMA_CHECK).  The model collapses file ranges only."""
    vma = mm.find_vma(haddr)
    if vma is None or vma.file is None or haddr < vma.start or \
            haddr + k.geo.hpage_pmd_nr > vma.end:
        return None
    return vma


def _file_range(k, mm, haddr):
    """Under mmap_lock: the file and first index a VMA maps whole at [haddr, haddr + HPAGE_PMD_NR),
    or None: mm/khugepaged.c hugepage_vma_revalidate() (6.6): vma_lookup(), the range check
    transhuge_vma_suitable() and hugepage_vma_check().  An anonymous VMA is None too: the model
    has no anonymous collapse (hpage_collapse_scan_pmd(), collapse_huge_page()), so khugepaged
    and MADV_COLLAPSE leave it alone (SCAN_VMA_CHECK, -EINVAL)."""
    vma = hugepage_vma_revalidate(k, mm, haddr)
    if vma is None:
        return None
    return vma.file, vma.linear_page_index(haddr)
