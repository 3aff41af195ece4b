"""munmap(): mm/mmap.c (Linux 6.6) __vm_munmap() -> do_vmi_munmap() -> do_vmi_align_munmap() ->
unmap_region() -> unmap_vmas() + free_pgtables() -> free_pgd_range() (mm/memory.c).

The VMAs are detached from the mm under mmap_lock for write, which is then downgraded to read for
unmap_region(): faults, madvise, khugepaged and MADV_COLLAPSE (mmap_lock readers) can run alongside
it but no longer find the VMAs.  The page tables are then freed *without* the ptl or pmd_lock and
without an mmu_notifier range around the PMD clear (kernel-series.md §1.5, the free_pgtables
exception).  What keeps lockless walkers off those tables is that each VMA is taken out of its
file's i_mmap (unlink_file_vma(), under i_mmap_rwsem for write) before any table below it is freed:
retract_page_tables() and the rmap walkers find VMAs through i_mmap under i_mmap_rwsem for read,
and everything else finds them through the mm under mmap_lock.

Model restrictions: munmap takes whole VMAs only (a range that covers part of a VMA returns
EINVAL instead of splitting it); there is one PMD table per mm, which is never freed (free_pmd_range's
PUD-level floor/ceiling test); unlink_anon_vmas() and the per-VMA lock are not modelled (no
walker of the model finds VMAs through an anon_vma).
"""

from __future__ import annotations

from pgconform.kernel.memory import zap_page_range_single
from pgconform.kernel.mmu_gather import pte_free_tlb, tlb_finish_mmu, tlb_gather_mmu
from pgconform.kernel.objects import TablePmd
from pgconform.kernel.pgtable import pmd_clear
from pgconform.sim.effects import (
    Atomic,
    DowngradeWrite,
    DownWrite,
    Load,
    Lock,
    Unlock,
    UpRead,
    UpWrite,
)

EINVAL = -22


# ------------------------------------------------------------------------------------------------
# the VMAs


def _detach(m, t, mm, vmas):
    """vma_iter_clear_gfp() of each VMA in the range: find_vma() no longer returns them."""
    for vma in vmas:
        mm.vmas.remove(vma)


def _unlink_file(m, t, vma):
    """__remove_shared_vm_struct(): the VMA leaves its file's i_mmap tree."""
    vma.file.i_mmap.remove(vma)


def unlink_file_vma(k, vma):
    """mm/mmap.c: unlink_file_vma() (6.6): under i_mmap_lock_write(), take the VMA out of i_mmap,
    so rmap walkers and retract_page_tables() (i_mmap_rwsem readers) cannot find it any more; the
    write lock waits for those that found it already."""
    f = vma.file
    yield DownWrite(f.i_mmap_rwsem)
    if k.arch.vivt_cache:  # __remove_shared_vm_struct(): flush_dcache_mmap_lock() on arm
        yield Lock(f.i_pages_lock)
    yield Atomic(f"__remove_shared_vm_struct({vma!r})", _unlink_file, (vma,), touches=(f,))
    if k.arch.vivt_cache:
        yield Unlock(f.i_pages_lock)
    yield UpWrite(f.i_mmap_rwsem)


def _remove_vmas(m, t, k, mm, vmas):
    """remove_vma(): the VMAs are freed.  No address of theirs maps anything any more (zapped):
    the private content of their anonymous pages is gone with them."""
    for vma in vmas:
        for addr in range(vma.start, vma.end):
            k.anon_shadow.pop((mm, addr), None)


# ------------------------------------------------------------------------------------------------
# freeing page tables


def _dec_nr_ptes(m, t, mm):
    mm.nr_ptes -= 1


def free_pte_range(k, tlb, pmdp, addr):
    """mm/memory.c: free_pte_range() (6.6): token = pmd_pgtable(*pmd); pmd_clear() (no pmd_lock,
    no ptl: the VMA is gone, nothing may walk here); pte_free_tlb(); mm_dec_nr_ptes()."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    token = k.pmd_pgtable(pmdval)
    yield from pmd_clear(k, pmdp)
    yield from pte_free_tlb(k, tlb, token, addr)
    yield Atomic(f"mm_dec_nr_ptes({tlb.mm!r})", _dec_nr_ptes, (tlb.mm,), touches=(tlb.mm,))


def free_pgd_range(k, tlb, addr, end, floor, ceiling):
    """mm/memory.c: free_pgd_range() (6.6) down to free_pmd_range() for the model's one PMD table.

    ``floor`` is the end of the VMA below (0: none), ``ceiling`` the start of the VMA above (None:
    USER_PGTABLES_CEILING, the top).  A PMD range shared with either is left alone: round ``addr``
    down to a PMD boundary and skip its PMD if it lies below ``floor``; drop the last PMD if the
    PMD-aligned ``ceiling`` lies below ``end``.  Every PMD left pointing at a table has it freed
    (pmd_none_or_clear_bad(): a none entry is skipped)."""
    geo = k.geo
    size = geo.ptrs_per_pte
    mm = tlb.mm
    addr -= addr % size
    if addr < floor:
        addr += size
    if ceiling is not None:
        ceiling -= ceiling % size
        if not ceiling:
            return
        if end - 1 > ceiling - 1:
            end -= size
    if addr > end - 1:
        return
    while addr < end:
        pmdp = mm.pmd_offset(addr, geo)
        pmdval = yield Load(pmdp.table, pmdp.idx)
        # pmd_none_or_clear_bad(): a huge PMD cannot be here (zapped under the same mmap_lock, and
        # nothing can map one without the VMA); the model leaves anything but a table alone
        if type(pmdval) is TablePmd:
            yield from free_pte_range(k, tlb, pmdp, addr)
        addr += size


def free_pgtables(k, tlb, vmas, floor, ceiling):
    """mm/memory.c: free_pgtables() (6.6): for each detached VMA (runs of VMAs less than a PMD
    apart are gathered into one call), unlink_anon_vmas() and unlink_file_vma() *first*, then
    free_pgd_range() between ``floor`` and the next VMA's start (``ceiling`` after the last)."""
    size = k.geo.ptrs_per_pte
    i = 0
    while i < len(vmas):
        vma = vmas[i]
        addr = vma.start
        yield from unlink_file_vma(k, vma)
        while i + 1 < len(vmas) and vmas[i + 1].start <= vma.end + size:
            i += 1
            vma = vmas[i]
            yield from unlink_file_vma(k, vma)
        nxt = vmas[i + 1] if i + 1 < len(vmas) else None
        yield from free_pgd_range(k, tlb, addr, vma.end, floor,
                                  nxt.start if nxt is not None else ceiling)
        i += 1


def unmap_vmas(k, tlb, vmas, start, end):
    """mm/memory.c: unmap_vmas() (6.6): zap every VMA's part of [start, end) inside an mmu_notifier
    invalidate range.  The model reuses zap_page_range_single(), which brackets each VMA with its
    own notifier range and drops the folio references itself rather than through ``tlb``."""
    for vma in vmas:
        yield from zap_page_range_single(k, vma, max(start, vma.start), min(end, vma.end))


def unmap_region(k, mm, vmas, prev, nxt, start, end):
    """mm/mmap.c: unmap_region() (6.6): tlb_gather_mmu(), unmap_vmas(), free_pgtables() between
    the previous VMA's end and the next one's start, tlb_finish_mmu()."""
    tlb = yield from tlb_gather_mmu(k, mm)
    yield from unmap_vmas(k, tlb, vmas, start, end)
    yield from free_pgtables(k, tlb, vmas, prev.end if prev is not None else 0,
                             nxt.start if nxt is not None else None)
    yield from tlb_finish_mmu(k, tlb)


def do_vmi_align_munmap(k, mm, vmas, start, end):
    """mm/mmap.c: do_vmi_align_munmap() (6.6) with unlock: detach the VMAs from the mm (under
    mmap_lock for write), mmap_write_downgrade(), unmap_region(), remove_vma(), and
    mmap_read_unlock().  Returns 0."""
    prev = max((v for v in mm.vmas if v.end <= start), key=lambda v: v.end, default=None)
    nxt = min((v for v in mm.vmas if v.start >= end), key=lambda v: v.start, default=None)
    yield Atomic(f"vma_iter_clear({', '.join(map(repr, vmas))})", _detach, (mm, vmas),
                 touches=(mm,))
    yield DowngradeWrite(mm.mmap_lock)
    yield from unmap_region(k, mm, vmas, prev, nxt, start, end)
    yield Atomic(f"remove_vma({', '.join(map(repr, vmas))})", _remove_vmas, (k, mm, vmas),
                 touches=(mm,))
    yield UpRead(mm.mmap_lock)
    return 0


def vm_munmap(k, mm, start, end):
    """mm/mmap.c: __vm_munmap() (6.6) (unlock = true) -> do_vmi_munmap(): mmap_write_lock, the
    VMAs overlapping [start, end) (none: 0), do_vmi_align_munmap().  The model does not split VMAs:
    a range that covers only part of one is EINVAL here."""
    yield DownWrite(mm.mmap_lock)
    vmas = sorted((v for v in mm.vmas if v.start < end and start < v.end), key=lambda v: v.start)
    if not vmas or any(v.start < start or end < v.end for v in vmas):
        yield UpWrite(mm.mmap_lock)
        return EINVAL if vmas else 0
    return (yield from do_vmi_align_munmap(k, mm, vmas, start, end))
