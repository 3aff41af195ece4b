"""Reverse-map walks of file folios: page_vma_mapped_walk() (mm/page_vma_mapped.c) and its users
try_to_unmap() and folio_referenced() (mm/rmap.c), Linux 6.6.

These walkers run under i_mmap_rwsem for read only: they can meet retract_page_tables() on the same
range, and reach PTE tables through pte_offset_map_nolock(), taking the ptl computed from the same
snapshot and writing only after checking that a non-none entry still maps the folio (a detached
table is empty, so that check proves the table is still linked).
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.filemap import PageCacheGet, folio_put, mm_counter
from pgconform.kernel.memory import pte_install_uffd_wp_if_needed
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import pmd_none, pmd_trans_huge, pte_present
from pgconform.kernel.pgtable import pte_map_rw_as
from pgconform.sim.effects import Atomic, DownRead, Load, Lock, Store, Trylock, Unlock, UpRead


def vma_addresses(k, vma, folio):
    """The addresses at which ``vma`` maps pages of ``folio`` (vma_address() for each page)."""
    out = []
    for i in range(folio.nr):
        addr = vma.start + (folio.index + i - vma.pgoff)
        if vma.start <= addr < vma.end:
            out.append((addr, i))
    return out


def page_vma_mapped_walk(k, vma, folio, visit_pte, visit_pmd=None):
    """mm/page_vma_mapped.c: page_vma_mapped_walk() (6.6), non-PVMW_SYNC: for each place ``vma``
    maps ``folio``, call ``visit_pte(k, vma, ptep, addr, pte)`` with the ptl held (or
    ``visit_pmd(k, vma, pmdp, pmdval)`` under pmd_lock for a PMD mapping)."""
    mm = vma.mm
    geo = k.geo
    by_pmd: dict[int, list] = {}
    for addr, i in vma_addresses(k, vma, folio):
        by_pmd.setdefault(geo.pmd_index(addr), []).append((addr, i))
    for places in by_pmd.values():
        pmdp = mm.pmd_offset(places[0][0], geo)
        while True:  # "restart": re-examine this pmd after a NULL map
            pmde = yield from k.ops.pmdp_get_lockless(k, pmdp)
            if pmd_trans_huge(pmde):
                pml = yield from k.ops.pmd_lock(k, mm, pmdp)
                pmde = yield Load(pmdp.table, pmdp.idx)
                if pmd_trans_huge(pmde):
                    if pmde.folio is folio and visit_pmd is not None:
                        yield from visit_pmd(k, vma, pmdp, pmde)
                    yield Unlock(pml)
                    break
                yield Unlock(pml)
                continue
            if pmd_none(pmde):
                break
            # map_pte(): 6.13+ pte_offset_map_rw_nolock(), and pmd_same() once locked
            pte, pmdval, ptl = yield from pte_map_rw_as(k, mm, pmdp, places[0][0])
            if pte is None:
                continue
            locked = False
            stale = False
            for addr, i in places:
                ptep = pte + (geo.pte_index(addr) - pte.idx)
                ent = yield Load(ptep.table, ptep.idx)
                if not locked:
                    # map_pte(): look before locking; nothing of ours here, no need to lock
                    if not (pte_present(ent) and ent.folio is folio and ent.idx == i):
                        continue
                    yield Lock(ptl)
                    locked = True
                    if pmdval is not None and pmdval != (
                            yield from k.ops.pmdp_get_lockless(k, pmdp)):
                        stale = True  # window: map_pte's pmd_same recheck fails
                        break
                    ent = yield Load(ptep.table, ptep.idx)
                # check_pte(): under ptl, the entry still maps this page of the folio
                if pte_present(ent) and ent.folio is folio and ent.idx == i:
                    yield from visit_pte(k, vma, ptep, addr, ent)
            if locked:
                yield Unlock(ptl)
            yield from k.ops.pte_unmap(k, pte)
            if not stale:
                break


def _unmap_one(k, vma, ptep, addr, ent):
    """try_to_unmap_one() (6.6) for a PTE-mapped file page: ptep_clear_flush(), rss, rmap, ref."""
    yield Store(ptep.table, ptep.idx, None)
    mm = vma.mm
    if k.arch.debug_vm:  # pte_update()
        yield from assert_pte_locked(k, mm, addr)
    folio = ent.folio
    mm.rss[mm_counter(folio)] -= 1
    folio.mapcount -= 1  # page_remove_rmap()
    folio_put(k, folio)
    if ent.uffd_wp:  # a uffd-wp file PTE leaves a marker (pte_install_uffd_wp_if_needed())
        yield from pte_install_uffd_wp_if_needed(k, vma, ptep, addr, ent)
    yield Atomic(f"flush_tlb_page({vma!r}, {addr})", _noop)


def _noop(m, t):
    return None


def try_to_unmap(k, folio):
    """mm/rmap.c: try_to_unmap() (6.6) of a locked file folio: rmap_walk_file() under i_mmap_rwsem
    read, try_to_unmap_one() for every mapping."""
    f = folio.mapping
    yield DownRead(f.i_mmap_rwsem)
    for vma in list(f.i_mmap):
        places = vma_addresses(k, vma, folio)
        if not places:
            continue
        # try_to_unmap_one(): an mmu_notifier range over the folio's pages in this VMA
        start, end = places[0][0], places[-1][0] + 1
        yield from mmu_notifier_invalidate_range_start(k, vma.mm, start, end)
        yield from page_vma_mapped_walk(k, vma, folio, _unmap_one)
        yield from mmu_notifier_invalidate_range_end(k, vma.mm, start, end)
    yield UpRead(f.i_mmap_rwsem)


def _referenced_one(k, vma, ptep, addr, ent):
    """folio_referenced_one() (6.6): ptep_clear_young_notify() of a young entry."""
    if ent.young:
        yield Store(ptep.table, ptep.idx, attrs.evolve(ent, young=False))
        if k.arch.debug_vm:  # ptep_test_and_clear_young() -> pte_update()
            yield from assert_pte_locked(k, vma.mm, addr)


def _referenced_pmd(k, vma, pmdp, pmdval):
    yield Load(pmdp.table, pmdp.idx)  # pmdp_clear_young_notify(): no young bit modelled on PMDs


def folio_referenced(k, file, index):
    """mm/rmap.c: folio_referenced() (6.6) as reclaim calls it on a page-cache folio: trylock the
    folio, rmap_walk_file() under i_mmap_rwsem read, clear the young bits of its mappings."""
    folio = yield PageCacheGet(file, index)
    if folio is None:
        return "no folio"
    if not (yield Trylock(folio.lock)):
        folio_put(k, folio)
        return "folio locked"
    yield DownRead(file.i_mmap_rwsem)
    for vma in list(file.i_mmap):
        yield from page_vma_mapped_walk(k, vma, folio, _referenced_one, _referenced_pmd)
    yield UpRead(file.i_mmap_rwsem)
    yield Unlock(folio.lock)
    folio_put(k, folio)
    return "ok"


def _find_pmd(m, t, k, mm, addr):
    k.hooks.mm_find_pmd(m, t, k, mm, addr)
    return mm.pmd_offset(addr, k.geo)


def mm_find_pmd(k, mm, addr):
    """mm/rmap.c: mm_find_pmd() (6.6): the walk pgd -> p4d -> pud down to the pmd entry for
    ``addr``.  The upper-level tables it reads are freed by free_pgtables() (munmap, exit) once no
    VMA covers them, so the walker must hold what keeps such a VMA in place."""
    return (yield Atomic(f"mm_find_pmd({mm!r}, {addr})", _find_pmd, (k, mm, addr), touches=(mm,)))
