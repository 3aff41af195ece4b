"""32-bit arm with a VIVT data cache: arch/arm/mm/fault-armv.c (Linux 6.6, the
``__LINUX_ARM_ARCH__ < 6`` variant; patch 03 of the series, de2e4626c706, made adjust_pte() use
pte_offset_map_nolock()).

After the fault path installs or changes a PTE it calls update_mmu_cache_range() with that PTE's
ptl held.  With a VIVT cache two virtual mappings of one page in the same mm see different cache
lines, so make_coherent() looks for other shared mappings of the same file page in the faulting mm
and, when one is present, switches every such PTE (the aliases' and the faulting one) to the
uncached memory type.  The aliases are reached by a page-table walk of their own: the walk that
patch 03 converted: adjust_pte(), a function of the implementation table (its reference is
pgconform/reference/arch/arm.py).  These configurations have no split PTE ptlocks
(SPLIT_PTLOCK_CPUS is 999999 for ARM without CPU_CACHE_VIPT), so every ptl is
mm->page_table_lock, which the caller holds.

The configuration is :data:`ARM`; arm uses the generic page-table allocator.
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.base import ArchConfig
from pgconform.kernel.objects import pte_present
from pgconform.sim.effects import Atomic, Load, Lock, Store, Unlock

#: 32-bit arm with a VIVT cache (ARMv4/v5, the only CPUs where fault-armv.c's make_coherent()
#: runs): update_mmu_cache() calls make_coherent() -> adjust_pte() on shared aliases
#: (arch/arm/mm/fault-armv.c, 6.6, de2e4626c706).  SPLIT_PTLOCK_CPUS is 999999 for ARM without
#: CPU_CACHE_VIPT (mm/Kconfig), so ptl == pml == mm->page_table_lock; two-level tables fold the
#: PMD; THP needs ARM_LPAE (ARMv7), so there is no khugepaged here: the arm run judges the map API
#: and adjust_pte() against faults, zaps, rmap walks and userfaultfd.
ARM = ArchConfig(
    name="arm", family="arm", split_pte_ptlocks=False, split_pmd_ptlocks=False, vivt_cache=True,
    thp=False,
    fast_gup=False,  # arch/arm/Kconfig: HAVE_FAST_GUP if ARM_LPAE (ARMv7)
    source="arch/arm/mm/fault-armv.c (6.6): adjust_pte() with pte_offset_map_nolock()",
)

#: this module's configurations, in the order of the version matrix's columns
CONFIGS = (ARM,)


def _noop(m, t):
    return None


def update_mmu_cache_range(k, vma, addr, ptep):
    """arch/arm/mm/fault-armv.c: update_mmu_cache_range() (6.6), nr = 1, caller holding the ptl of
    ``ptep``: read the entry back for its page; the dcache flush of a page not yet clean is not
    modelled (it touches no page table); a page with a flush mapping (page-cache pages; anonymous
    ones have none) goes to make_coherent() on a VIVT cache."""
    entry = yield Load(ptep.table, ptep.idx)
    if not pte_present(entry):  # !pfn_valid(): nothing the model maps
        return
    folio = entry.folio
    mapping = None if folio.anon else folio.mapping  # folio_flush_mapping()
    if mapping is not None and k.arch.vivt_cache:
        yield from make_coherent(k, mapping, vma, addr, ptep, (folio, entry.idx))


def make_coherent(k, mapping, vma, addr, ptep, pfn):
    """arch/arm/mm/fault-armv.c: make_coherent() (6.6): under flush_dcache_mmap_lock() (the
    mapping's i_pages lock on arm), visit every VMA of ``mapping`` covering this file page that
    belongs to the same mm, is not ``vma`` and may be shared, and adjust_pte() it; if any of them
    mapped the page, the faulting PTE is made uncached too."""
    mm = vma.mm
    pgoff = vma.pgoff + (addr - vma.start)
    lock = mapping.i_pages_lock
    yield Lock(lock)
    aliases = 0
    for mpnt in list(mapping.i_mmap):  # vma_interval_tree_foreach(pgoff, pgoff)
        if not (mpnt.pgoff <= pgoff < mpnt.pgoff + (mpnt.end - mpnt.start)):
            continue
        if mpnt.mm is not mm or mpnt is vma or not mpnt.shared:  # VM_MAYSHARE
            continue
        aliases += yield from k.ops.adjust_pte(k, mpnt, mpnt.start + (pgoff - mpnt.pgoff), pfn)
    yield Unlock(lock)
    if aliases:
        yield from do_adjust_pte(k, vma, addr, pfn, ptep)


def do_adjust_pte(k, vma, address, pfn, ptep):
    """arch/arm/mm/fault-armv.c: do_adjust_pte() (6.6): a present entry whose memory type is not
    yet the shared (uncached) one gets its cache line flushed, its type rewritten and its TLB entry
    flushed.  The page it maps is not compared with ``pfn``.  Returns whether it was present."""
    entry = yield Load(ptep.table, ptep.idx)
    if not pte_present(entry):
        return 0
    if not entry.uncached:
        yield Atomic(f"flush_cache_page({vma!r}, {address}) + outer_flush_range()", _noop)
        yield Store(ptep.table, ptep.idx, attrs.evolve(entry, uncached=True))  # set_pte_at()
        yield Atomic(f"flush_tlb_page({vma!r}, {address})", _noop)
    return 1
