"""Page-table walks of another process's mm: mm/pagewalk.c walk_page_range() driving
fs/proc/task_mmu.c smaps_pte_range() (Linux 6.6), as when a monitor reads /proc/PID/smaps.

The walker holds the target's mmap_lock for read only, which does not exclude
retract_page_tables(), and it runs on a CPU outside the target's mm_cpumask, so no TLB-flush IPI
waits for it: on x86 PAE only pmdp_get_lockless_sync() keeps its two-half PMD reads whole.
"""

from __future__ import annotations

from pgconform.kernel.mmap import mmget_not_zero, mmput
from pgconform.kernel.objects import pmd_none, pmd_trans_huge, pte_present
from pgconform.sim.effects import DownRead, Load, Unlock, UpRead


def smaps_pte_range(k, vma, pmdp, addr, end):
    """fs/proc/task_mmu.c: smaps_pte_range() (6.6): a huge PMD under pmd_trans_huge_lock(), else
    pte_offset_map_lock() and a read of every entry; a NULL map asks the walk to come back to this
    PMD (ACTION_AGAIN).  Returns (again, pages seen present)."""
    mm = vma.mm
    if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):  # pmd_trans_huge_lock()
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):
            yield Unlock(pml)
            return False, end - addr
        yield Unlock(pml)
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return True, 0
    present = 0
    for a in range(addr, end):
        ptep = pte + (k.geo.pte_index(a) - pte.idx)
        if pte_present((yield Load(ptep.table, ptep.idx))):  # smaps_pte_entry()
            present += 1
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return False, present


def show_smaps(k, mm, start, end):
    """fs/proc/task_mmu.c: show_smap() (6.6) for the VMAs of [start, end): mmap_read_lock of the
    target mm, walk_page_vma() -> walk_pmd_range(): skip none PMDs, call smaps_pte_range() for the
    others, and retry a PMD while it answers ACTION_AGAIN.  Returns the present pages seen.
    m_start() takes an mm_users reference first (mmget_not_zero(): nothing once the process has
    exited) and m_stop() drops it (mmput())."""
    if not (yield from mmget_not_zero(k, mm)):
        return 0
    seen = yield from _show_smaps(k, mm, start, end)
    yield from mmput(k, mm)
    return seen


def _show_smaps(k, mm, start, end):
    geo = k.geo
    yield DownRead(mm.mmap_lock)
    seen = 0
    for vma in list(mm.vmas):
        lo, hi = max(start, vma.start), min(end, vma.end)
        addr = lo
        while addr < hi:
            nxt = min(hi, geo.haddr(addr) + geo.ptrs_per_pte)
            pmdp = mm.pmd_offset(addr, geo)
            while not pmd_none((yield Load(pmdp.table, pmdp.idx))):
                again, present = yield from smaps_pte_range(k, vma, pmdp, addr, nxt)
                if not again:
                    seen += present
                    break
            addr = nxt
    yield UpRead(mm.mmap_lock)
    return seen
