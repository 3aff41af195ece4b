"""powerpc book3s64 with CONFIG_DEBUG_VM: assert_pte_locked(), arch/powerpc/mm/pgtable.c (Linux 6.6;
patch 04 of the series, 3d140215a6ae, plus the mm fixup that kept the pmd_none() early return).

pte_update() (hash and radix, non-huge) and ptep_set_access_flags() call it on every PTE change
but set_ptes(): it walks the live page tables to the entry and BUGs unless the table's ptl is held
by someone.  The model's PTE-update sites call it when ``k.arch.debug_vm``.

The configuration, :data:`POWERPC64`, is book3s64 (radix) with its fragment allocator, whose
reference functions are :mod:`pgconform.reference.arch.powerpc`.
"""

from __future__ import annotations

from pgconform.kernel.arch.base import FRAGMENTS, ArchConfig
from pgconform.kernel.objects import pmd_none
from pgconform.kernel.pgtable import pte_map_ro_as
from pgconform.sim.effects import Load, SpinIsLocked

#: powerpc book3s64: PTE tables are fragments of a page carved in order through the per-mm
#: mm->context.pte_frag, never reused; the split ptlock is the page's, shared by its fragments
#: (arch/powerpc/mm/pgtable-frag.c, 6.6).
POWERPC64 = ArchConfig(
    name="powerpc64", family="powerpc", rcu_table_free=True, layout=FRAGMENTS, tables_per_page=2,
    allocator="powerpc", debug_vm=True, move_pmd=True,
    source="arch/powerpc/mm/pgtable-frag.c, arch/powerpc/mm/pgtable.c (6.6): pte_fragment_alloc, "
           "pte_fragment_free, pte_free_defer (32cc0b7c9d50), assert_pte_locked (3d140215a6ae)",
)

#: this module's configurations, in the order of the version matrix's columns
CONFIGS = (POWERPC64,)


def assert_pte_locked(k, mm, addr):
    """arch/powerpc/mm/pgtable.c: assert_pte_locked() (6.6): the upper levels are folded here (their
    BUG_ON()s cannot fire); a none pmd returns quietly (khugepaged clears the pmd before it clears
    the old PTEs through a copy of it); otherwise map the entry with pte_offset_map_nolock(), BUG
    if that fails, and BUG unless the ptl it names is locked (assert_spin_locked(): by anyone)."""
    pmdp = mm.pmd_offset(addr, k.geo)
    if pmd_none((yield Load(pmdp.table, pmdp.idx))):
        return
    pte, ptl = yield from pte_map_ro_as(k, mm, pmdp, addr)  # 6.13+: _ro_nolock
    t = k.m.current
    k.hooks.assert_pte_locked(k, t, mm, addr, pmdp, pte, ptl, None)  # BUG_ON(!pte)
    locked = yield SpinIsLocked(ptl)
    k.hooks.assert_pte_locked(k, t, mm, addr, pmdp, pte, ptl, locked)  # assert_spin_locked()
    yield from k.ops.pte_unmap(k, pte)
