"""Oracles for the users of page tables outside the CPU's own accesses: secondary MMUs (an
mmu_notifier subscriber with cached translations and cached page-table pointers) and GUP.

They run inside the step of the access they judge and compare it with the live CPU page tables:
what the device or GUP uses must be what the CPU page tables map at that instant (the
invalidations and rechecks of the protocol are what make that true)."""

from __future__ import annotations

from pgconform.kernel.objects import HugePmd, TablePmd, pte_present
from pgconform.oracle.data import check_mapping_data
from pgconform.oracle.pagetable import LINKED, life


def cpu_translation(k, mm, addr):
    """What the CPU page tables of ``mm`` map at ``addr`` now: (folio, subpage) or None."""
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    if type(pmdv) is HugePmd:
        return pmdv.folio, addr - geo.haddr(addr)
    if type(pmdv) is TablePmd:
        ent = k.pmd_table(pmdv).entries[geo.pte_index(addr)]
        if pte_present(ent):
            return ent.folio, ent.idx
    return None


def _name(tr) -> str:
    return "nothing" if tr is None else f"{tr[0]!r}+{tr[1]}"


def check_device_table(k, t, smmu, pmd_idx, table) -> None:
    """A secondary MMU is about to walk ``table`` through its cached paging-structure entry for
    PMD ``pmd_idx``: the table must still be the one linked there (the mmu_notifier range that
    v2 of 1d65b771bc08 brought back around the PMD clear; zoo mutant A9)."""
    mm = smmu.mm
    lf = life(table)
    if table.freed or table.released or lf.state != LINKED or \
            lf.linked_at != (mm.pmd_table, pmd_idx):
        state = ("freed and reused" if table.freed and k.mem.frames[table.pfn] is not table
                 else "freed" if table.freed or table.released else lf.state)
        k.m.violation("mmu.secondary-stale-table",
                      f"{smmu!r} walks {table!r} through the page-table pointer it cached for "
                      f"{mm!r} PMD {pmd_idx}, but that table is {state} (no longer linked there): "
                      "no mmu_notifier invalidation dropped the cached pointer before the PMD was "
                      "cleared, so the device reads a freed or foreign page table", t, table)


def check_device_translation(k, t, smmu, addr, folio, idx) -> None:
    """A secondary MMU uses its cached translation ``addr -> folio+idx``: the CPU page tables must
    still map that page there (every change is inside an invalidation that dropped the entry), and
    the page must hold what was last written at the address."""
    mm = smmu.mm
    live = cpu_translation(k, mm, addr)
    if folio.freed or live is None or live[0] is not folio or live[1] != idx:
        why = "which was freed" if folio.freed else f"but {mm!r} now maps {_name(live)} there"
        k.m.violation("mmu.secondary-stale-translation",
                      f"{smmu!r} uses its cached translation {mm!r}@{addr} -> {folio!r}+{idx}, "
                      f"{why}: the invalidation that should have dropped it did not", t, folio)
    vma = mm.find_vma(addr)
    if vma is not None:
        check_mapping_data(k, t, mm, vma, addr, folio, idx)


def check_gup_page(k, t, mm, addr, table, folio, idx, pmd_confirmed: int | None = None) -> None:
    """GUP confirms a page for ``addr`` (GUP-fast after its PMD and PTE rechecks, slow GUP under
    the ptl): it came from a page table still linked (``table``, None for a huge PMD), the page is
    live, and while a VMA still covers the address the CPU page tables map that very page there,
    holding what was last written.

    GUP-fast (mm/gup.c gup_pte_range(), 6.6) rechecks the PMD, then the PTE: a table unlinked
    between the two (mremap's move_normal_pmd(), a retract; trace position after
    ``pmd_confirmed``) was linked at the PMD recheck with the entry the PTE recheck finds, so the
    pin is what the address mapped at that instant, its linearization point, and the table's
    state and the translation are judged as of then (they held)."""
    why = None
    linked_at_pmd_recheck = (pmd_confirmed is not None and table is not None and
                             not table.freed and life(table).unlinked_step >= pmd_confirmed)
    if folio.freed:
        why = "a freed page"
    elif table is not None and (table.freed or life(table).state != LINKED) and \
            not linked_at_pmd_recheck:
        why = (f"a page read from {table!r}, which is "
               f"{'freed' if table.freed else life(table).state}")
    elif not folio.anon and (folio.mapping is None or
                             folio.mapping.pages.get(folio.index + idx) is not folio):
        why = "a page that is no longer in the page cache"
    vma = mm.find_vma(addr)
    live = (cpu_translation(k, mm, addr) if why is None and vma is not None and
            not linked_at_pmd_recheck else (folio, idx))
    if why is None and (live is None or live[0] is not folio or live[1] != idx):
        why = f"a page the address no longer maps ({mm!r} maps {_name(live)} there)"
    if why is not None:
        k.m.violation("gup.stale-page",
                      f"{t.name} pins {folio!r}+{idx} for {mm!r}@{addr}: {why}; GUP must return "
                      "the page the address maps at the instant it confirms the pin", t, folio)
    k.oracles.guard.check_access(k, t, mm, vma, addr, "GUP")
    if vma is not None:
        check_mapping_data(k, t, mm, vma, addr, folio, idx)
