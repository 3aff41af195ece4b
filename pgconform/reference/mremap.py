"""Reference: mm/mremap.c's move_normal_pmd() (Linux 6.6 with 6fa1066fc5d0 "mm/mremap: fix
move_normal_pmd/retract_page_tables race", Jann Horn, 6.12 and stable; Fixes: 1d65b771bc08, patch 09
of the series).  The rest of mremap() is the environment (pgconform/kernel/mremap.py), which calls
it through the implementation table; ``zoo.move_normal_pmd_no_recheck`` is 6.6.0's, without the
recheck (CVE-2024-50066)."""

from __future__ import annotations

from pgconform.kernel.mremap import _pmd_populate_moved, have_move_pmd
from pgconform.kernel.objects import TablePmd, pmd_none
from pgconform.kernel.pgtable import pmd_clear, set_pmd
from pgconform.kernel.tlbflush import flush_tlb_range
from pgconform.sim.effects import Atomic, Load, Lock, Unlock


def move_normal_pmd(k, vma, old_addr, new_addr, old_pmd, new_pmd):
    """mm/mremap.c: move_normal_pmd() (6.6 with 6fa1066fc5d0): if the new slot is none, take the
    old pmd lock and the new one nested if different; recheck that the old entry is still a
    present non-leaf table (the fix); pmd_clear() the old slot, pmd_populate() the new slot with
    the same table, flush the old range.  The table's ptl is not taken.  Returns whether it
    moved."""
    return (yield from move_normal_pmd_as(k, vma, old_addr, new_addr, old_pmd, new_pmd))


def move_normal_pmd_as(k, vma, old_addr, new_addr, old_pmd, new_pmd, recheck=True):
    """move_normal_pmd() with 6fa1066fc5d0's recheck under the pmd lock as a parameter (6.6.0
    lacks it: CVE-2024-50066)."""
    mm = vma.mm
    if not have_move_pmd(k.arch):
        return False
    if not pmd_none((yield Load(new_pmd.table, new_pmd.idx))):
        return False  # WARN_ON_ONCE: free_pgtables() should have released it
    old_ptl = yield from k.ops.pmd_lock(k, mm, old_pmd)
    new_ptl = yield from k.ops.pmd_lockptr(k, mm, new_pmd)
    if new_ptl is not old_ptl:
        yield Lock(new_ptl, 1)
    pmd = yield Load(old_pmd.table, old_pmd.idx)
    moved = False
    if not recheck or type(pmd) is TablePmd:
        yield from pmd_clear(k, old_pmd)
        value = yield Atomic(f"pmd_pgtable({pmd!r})", _pmd_populate_moved, (k, new_pmd, pmd))
        # pmd_populate(); the anonymous pages' content moves with the table (the PMD store hook,
        # oracle.pagetable.move_anon_shadow)
        yield from set_pmd(k, new_pmd, value)
        yield from flush_tlb_range(k, vma, old_addr, old_addr + k.geo.hpage_pmd_nr)
        moved = True
    if new_ptl is not old_ptl:
        yield Unlock(new_ptl)
    yield Unlock(old_ptl)
    return moved
