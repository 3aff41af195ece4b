"""Kernel versions as environments: what the kernel around the series does in each version.

An implementation is the series' own functions (``pgconform.implementation``); the kernel it runs in
is everything else: the callers, the other actors, the architecture configurations.  Those changed
after 6.6 too, and an implementation written for 7.0 must be judged in a 7.0 kernel, so each
:class:`~pgconform.implementation.Implementation` names its version (``Implementation.kernel``) and
:data:`VERSIONS` says what that version's environment is.

Sources: the v6.6 and v7.0 trees; the changes in between are named by commit where they are
modelled (6.13 pte_offset_map_{ro,rw}_nolock(), 6.14 6375e95f381e PT reclaim and 6c18ec9af86c,
later file_backed_vma_is_retractable() in mm/khugepaged.c).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pgconform.kernel.config import ARCHES, PAGE_PTE_T, ArchConfig


@attrs.frozen
class KernelVersion:
    """The environment of one kernel version.  Every flag defaults to 6.6."""

    name: str
    #: 6.13 (Qi Zheng, "introduce pte_offset_map_{ro|rw}_nolock()"): pte_offset_map_nolock() is
    #: gone; readers call pte_offset_map_ro_nolock(), writers pte_offset_map_rw_nolock() and
    #: recheck pmd_same() (or pte_same() on a non-none entry) under the ptl before writing
    rw_nolock: bool = False
    #: 6.14 (6375e95f381e): MADV_DONTNEED reclaims PTE tables it leaves empty, on the arches that
    #: select ARCH_SUPPORTS_PT_RECLAIM (ArchConfig.pt_reclaim)
    pt_reclaim: bool = False
    #: 6.15-7.0: MADV_GUARD_INSTALL on file-backed VMAs, under the mmap read lock after setting
    #: VMA_MAYBE_GUARD_BIT atomically (the flag retract_page_tables() checks)
    guard_regions: bool = False
    #: 6.8 (adaa6d41db4f, "userfaultfd: UFFDIO_MOVE uABI"): UFFDIO_MOVE moves anonymous pages
    #: between anonymous private VMAs (kernel/userfaultfd.py move_pages())
    uffd_move: bool = False
    #: arch name -> the ArchConfig fields that differ from 6.6
    arch_changes: Mapping[str, Mapping[str, object]] = attrs.field(factory=dict)
    source: str = ""

    def arch(self, name: str) -> ArchConfig:
        """The configuration of arch ``name`` in this version (KeyError: no such arch)."""
        base = ARCHES[name]
        changes = self.arch_changes.get(name)
        return attrs.evolve(base, **changes) if changes else base


V6_6 = KernelVersion(name="6.6", source="v6.6 and its stable updates (v6.6.0 to 6.6.57)")

#: x86-64 in 7.0: 718b13861d22 (6.14) "x86: mm: free page table pages by RCU instead of semi RCU"
#: selects MMU_GATHER_RCU_TABLE_FREE unconditionally, so tlb_remove_table_sync_one() is a real
#: IPI and freed tables wait for a grace period; 4817f70c25b6 selects ARCH_SUPPORTS_PT_RECLAIM.
_X86_64_7_0 = {"rcu_table_free": True, "pt_reclaim": True}

#: s390 in 7.0: one PTE table per 4K page since 6.7 (d08d4e7cd6bf), as the ``s390-6.7`` arch.
_S390_7_0 = {"layout": PAGE_PTE_T, "tables_per_page": 1, "allocator": "s390_full_page",
             "source": "arch/s390/mm/pgalloc.c (6.7+, d08d4e7cd6bf): one table per page; "
                       "pte_free_defer call_rcu(&ptdesc->pt_rcu_head)"}

V7_0 = KernelVersion(
    name="7.0", rw_nolock=True, pt_reclaim=True, guard_regions=True, uffd_move=True,
    arch_changes={"x86_64": _X86_64_7_0, "x86_64-alloc-ptlocks": _X86_64_7_0,
                  "x86_64-nosplit": _X86_64_7_0, "s390": _S390_7_0},
    source="v7.0 (read in the v7.0.0 tree of github julianw1010/hydra-7.0.0-fork, 826db671768a); "
           "C1 (6.13), C2 (6.14), "
           "718b13861d22, d08d4e7cd6bf",
)

VERSIONS: dict[str, KernelVersion] = {v.name: v for v in (V6_6, V7_0)}
