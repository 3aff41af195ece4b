"""The callers of the series in mm/khugepaged.c (Linux 6.6): khugepaged's scan of a file VMA and
MADV_COLLAPSE.  They reach collapse_file(), retract_page_tables() and collapse_pte_mapped_thp()
through the implementation table."""

from __future__ import annotations

from pgconform.sim.effects import Atomic, DownRead, DownReadTrylock, DownWrite, UpRead, UpWrite

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


def _file_range(k, mm, haddr):
    """Under mmap_lock: the file and first index a VMA maps whole at [haddr, haddr + HPAGE_PMD_NR),
    or None (hugepage_vma_revalidate()'s range check).  An anonymous VMA is None too: the model
    has no anonymous collapse (hpage_collapse_scan_pmd(), collapse_huge_page()), so khugepaged
    and MADV_COLLAPSE leave it alone (SCAN_VMA_CHECK, -EINVAL)."""
    vma = mm.find_vma(haddr)
    if vma is None or vma.file is None or haddr < vma.start or \
            haddr + k.geo.hpage_pmd_nr > vma.end:
        return None
    return vma.file, vma.linear_page_index(haddr)


def khugepaged_scan_mm_slot(k, mm, haddr):
    """mm/khugepaged.c: khugepaged_scan_mm_slot() (6.6, after patch 11) for one PMD range of a file
    VMA: mmap_read_trylock, drop it around the file scan and collapse_file(); on
    SCAN_PTE_MAPPED_HUGEPAGE retake it and collapse_pte_mapped_thp(install_pmd=false) directly."""
    if not (yield DownReadTrylock(mm.mmap_lock)):
        return "mmap_lock busy"
    found = _file_range(k, mm, haddr)
    yield UpRead(mm.mmap_lock)
    if found is None:
        return "SCAN_VMA_CHECK"
    file, start = found
    result = yield from hpage_collapse_scan_file(k, mm, haddr, file, start, True)
    if result == SCAN_PTE_MAPPED_HUGEPAGE:
        yield DownRead(mm.mmap_lock)
        if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
            yield UpRead(mm.mmap_lock)
            return "exiting"
        result = yield from k.ops.collapse_pte_mapped_thp(k, mm, haddr, False)
        yield UpRead(mm.mmap_lock)
    return result


def madvise_collapse(k, mm, haddr):
    """mm/khugepaged.c: madvise_collapse() (6.6) for one PMD range: mmap_lock is dropped around
    hpage_collapse_scan_file(); SCAN_PTE_MAPPED_HUGEPAGE leads to mmap_read_lock() and
    collapse_pte_mapped_thp(install_pmd=true)."""
    return (yield from madvise_collapse_as(k, mm, haddr))


def madvise_collapse_as(k, mm, haddr, write_locked=False):
    """madvise_collapse() with the mmap_lock mode around collapse_pte_mapped_thp() as a
    parameter (6.5 takes it for write)."""
    yield DownRead(mm.mmap_lock)
    found = _file_range(k, mm, haddr)
    yield UpRead(mm.mmap_lock)
    if found is None:
        return "EINVAL"
    file, start = found
    result = yield from hpage_collapse_scan_file(k, mm, haddr, file, start, False)
    if result == SCAN_PTE_MAPPED_HUGEPAGE:
        yield (DownWrite if write_locked else DownRead)(mm.mmap_lock)
        result = yield from k.ops.collapse_pte_mapped_thp(k, mm, haddr, True)
        yield (UpWrite if write_locked else UpRead)(mm.mmap_lock)
    return result
