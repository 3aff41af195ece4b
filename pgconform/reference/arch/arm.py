"""Reference: 32-bit arm's adjust_pte(), arch/arm/mm/fault-armv.c (Linux 6.6, the
``__LINUX_ARM_ARCH__ < 6`` variant; patch 03 of the series, de2e4626c706 "arm: adjust_pte() use
pte_offset_map_nolock()").  make_coherent() calls it, with the faulting PTE's ptl held, for each
shared alias of the page in the same mm; it walks to the alias's PTE without the mmap_lock-free
guarantees a fault has, so it maps the table locklessly and locks it only where that lock is not
the one the caller holds.  The caller and do_adjust_pte() are the environment
(pgconform/kernel/arm.py), which calls adjust_pte() through the implementation table."""

from __future__ import annotations

from pgconform.kernel.arch.arm import do_adjust_pte
from pgconform.kernel.objects import pmd_none
from pgconform.kernel.pgtable import pte_map_rw_as
from pgconform.sim.effects import Load, Lock, Unlock


def adjust_pte(k, vma, address, pfn):
    """arch/arm/mm/fault-armv.c: adjust_pte() (6.6, de2e4626c706; 7.0): walk to the alias's pmd (a
    none one counts nothing), map its PTE with pte_offset_map_nolock() (NULL counts nothing), take
    the ptl only with split PTE ptlocks (do_pte_lock(); otherwise it is mm->page_table_lock, already
    held by the caller), do_adjust_pte(), unlock and unmap.  No pmd_same() recheck in 6.6: nothing
    can change the pmd while mm->page_table_lock is held here.  From 6.13 (7.0) the map is
    pte_offset_map_rw_nolock(), and with split ptlocks the pmd is rechecked against its snapshot
    under the ptl (pmd_same(), else unlock, unmap and map again).  Returns 1 if the alias PTE was
    present."""
    mm = vma.mm
    pmdp = mm.pmd_offset(address, k.geo)
    split = k.arch.split_pte_ptlocks
    while True:
        if pmd_none((yield Load(pmdp.table, pmdp.idx))):  # pmd_none_or_clear_bad()
            return 0
        pte, pmdval, ptl = yield from pte_map_rw_as(k, mm, pmdp, address)
        if pte is None:
            return 0
        if not split:
            break
        yield Lock(ptl, 1)  # do_pte_lock(): spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
        if pmdval is None or pmdval == (yield from k.ops.pmdp_get_lockless(k, pmdp)):
            break
        yield Unlock(ptl)  # window: adjust_pte's pmd_same recheck fails
        yield from k.ops.pte_unmap(k, pte)
    ret = yield from do_adjust_pte(k, vma, address, pfn, pte)
    if split:
        yield Unlock(ptl)  # do_pte_unlock()
    yield from k.ops.pte_unmap(k, pte)
    return ret
