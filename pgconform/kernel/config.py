"""Geometry and architecture configurations of the modelled kernel.

The geometry is scaled down (a few PTEs per table) so that short schedules reach every interesting
state; HPAGE_PMD_NR equals PTRS_PER_PTE, as in the kernel.  Addresses are virtual page numbers.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Geometry:
    ptrs_per_pte: int = 4   # PTRS_PER_PTE == HPAGE_PMD_NR
    ptrs_per_pmd: int = 4   # PMD slots per mm (one PMD table per mm)

    @property
    def hpage_pmd_nr(self) -> int:
        return self.ptrs_per_pte

    def pmd_index(self, addr: int) -> int:
        return addr // self.ptrs_per_pte

    def pte_index(self, addr: int) -> int:
        return addr % self.ptrs_per_pte

    def haddr(self, addr: int) -> int:
        """addr & HPAGE_PMD_MASK"""
        return addr - addr % self.ptrs_per_pte

    @property
    def task_size(self) -> int:
        return self.ptrs_per_pte * self.ptrs_per_pmd


@attrs.frozen
class ArchConfig:
    """What an architecture configuration decides for this protocol (kernel-series.md §1.7, §6.4)."""

    name: str
    #: USE_SPLIT_PTE_PTLOCKS: the ptl lives with the PTE table; otherwise ptl == mm->page_table_lock
    split_pte_ptlocks: bool = True
    #: USE_SPLIT_PMD_PTLOCKS: pmd_lock is the PMD table's own ptlock; otherwise mm->page_table_lock
    split_pmd_ptlocks: bool = True
    #: ALLOC_SPLIT_PTLOCKS: the ptlock is a separate allocation, freed by the page-table destructor
    alloc_split_ptlocks: bool = False
    #: CONFIG_GUP_GET_PXX_LOW_HIGH with >2 levels: pmd values read as two halves (x86-32 PAE)
    pmd_low_high: bool = False
    #: CONFIG_MMU_GATHER_RCU_TABLE_FREE
    rcu_table_free: bool = False
    source: str = ""


#: x86-64 as built by distributions in 6.6: split PTE and PMD ptlocks, single-word PMD reads, no
#: MMU_GATHER_RCU_TABLE_FREE without PARAVIRT (arch/x86/Kconfig, include/linux/mm_types_task.h).
X86_64 = ArchConfig(
    name="x86_64",
    split_pte_ptlocks=True,
    split_pmd_ptlocks=True,
    alloc_split_ptlocks=False,
    pmd_low_high=False,
    rcu_table_free=False,
    source="arch/x86 (6.6): ARCH_ENABLE_SPLIT_PMD_PTLOCK, generic pte_free_defer from "
           "mm/pgtable-generic.c",
)

#: The same with ALLOC_SPLIT_PTLOCKS (lockdep or DEBUG_SPINLOCK builds), where the ptlock is a
#: separate kmem_cache object freed by pagetable_pte_dtor(): RCU freeing must cover it too.
X86_64_ALLOC_PTLOCKS = attrs.evolve(X86_64, name="x86_64-alloc-ptlocks", alloc_split_ptlocks=True)

#: A build with split PTE ptlocks off (NR_CPUS < SPLIT_PTLOCK_CPUS): ptl == pml ==
#: mm->page_table_lock, and every path that nests them must take it once only.
X86_64_NO_SPLIT = attrs.evolve(X86_64, name="x86_64-nosplit", split_pte_ptlocks=False,
                               split_pmd_ptlocks=False)

ARCHES: dict[str, ArchConfig] = {a.name: a for a in (X86_64, X86_64_ALLOC_PTLOCKS, X86_64_NO_SPLIT)}
