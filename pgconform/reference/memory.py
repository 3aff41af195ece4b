"""Reference: the reclaim of an empty PTE table by zap_pte_range(), mm/memory.c (Linux 7.0:
zap_empty_pte_table() and zap_pte_table_if_empty(); 6.14 had them in mm/pt_reclaim.c as
try_get_and_clear_pmd() and try_to_free_pte()), from Qi Zheng's "synchronously scan and reclaim
empty user PTE pages" (6375e95f381e, 6.14).  MADV_DONTNEED's zap_pte_range(), which calls them,
pte_table_reclaim_possible() and free_pte() are the environment (pgconform/kernel/memory.py).

Both clear a PMD that lockless walkers (pte_offset_map*(), GUP-fast) may be reading, so the
table goes through the mmu_gather after a grace period; both must know the table is empty at the
instant they clear it: the fast path because it never dropped the ptl the zap emptied it under,
the slow path by looking at every entry again under pml and ptl.
"""

from __future__ import annotations

from pgconform.kernel.objects import pte_none
from pgconform.kernel.pgtable import pmd_clear
from pgconform.sim.effects import Load, Lock, Trylock, Unlock


def zap_empty_pte_table(k, mm, pmdp, ptl):
    """mm/memory.c: zap_empty_pte_table() (7.0; 6.14: try_get_and_clear_pmd() in mm/pt_reclaim.c):
    the fast path, called with the table's ptl still held since the zap that emptied it: take pml
    too, by trylock (pml is the outer lock: spinning on it under ptl could deadlock), unless it is
    the ptl itself; snapshot the PMD and clear it.  No entry is looked at again: nobody can have
    filled one while ptl was held.  Returns the old PMD value, or None if pml was busy (the caller
    goes the slow way).  (6.14 trylocked pml even when it is the ptl already held, so without
    split ptlocks the fast path always failed; 7.0 skips the trylock then.)"""
    pml = yield from k.ops.pmd_lockptr(k, mm, pmdp)
    if pml is not ptl and not (yield Trylock(pml)):
        return None  # window: zap_empty_pte_table finds pml busy
    pmdval = yield Load(pmdp.table, pmdp.idx)  # pmdp_get()
    yield from pmd_clear(k, pmdp)
    if pml is not ptl:
        yield Unlock(pml)
    return pmdval


def zap_pte_table_if_empty(k, mm, pmdp, addr):
    """mm/memory.c: zap_pte_table_if_empty() (7.0; 6.14: try_to_free_pte() in mm/pt_reclaim.c): the
    slow path, after the ptl was dropped: pmd_lock(), pte_offset_map_rw_nolock() (its snapshot is
    the live value: every changer of a table PMD holds pml, so no pmd_same() is needed),
    spin_lock_nested() the ptl if distinct, check that every entry is still none (a fault may have
    refilled the table meanwhile), pte_unmap() and pmd_clear().  Returns the old PMD value, or
    None if the PMD no longer names a table or the table is not empty."""
    pml = yield from k.ops.pmd_lock(k, mm, pmdp)
    start_pte, pmdval, ptl = yield from k.ops.pte_offset_map_rw_nolock(k, mm, pmdp, addr)
    if start_pte is None:
        yield Unlock(pml)  # window: zap_pte_table_if_empty finds no table
        return None
    if ptl is not pml:
        yield Lock(ptl, 1)  # spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
    table = start_pte.table
    for i in range(k.geo.ptrs_per_pte):
        if not pte_none((yield Load(table, i))):  # ptep_get()
            # window: zap_pte_table_if_empty finds the table refilled
            yield from k.ops.pte_unmap_unlock(k, start_pte, ptl)
            if ptl is not pml:
                yield Unlock(pml)
            return None
    yield from k.ops.pte_unmap(k, start_pte)
    yield from pmd_clear(k, pmdp)
    if ptl is not pml:
        yield Unlock(ptl)
    yield Unlock(pml)
    return pmdval
