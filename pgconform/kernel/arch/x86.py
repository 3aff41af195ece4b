"""x86: the x86-64 configurations (split ptlocks or not, ALLOC_SPLIT_PTLOCKS) and x86-32 with PAE.

x86 uses the generic page-table allocator (:mod:`pgconform.reference.arch.generic`) and the generic
pte_free_defer() of mm/pgtable-generic.c; it has no environment code of its own in the model.
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.base import ArchConfig

#: x86-64 in 7.0: 718b13861d22 (6.14) "x86: mm: free page table pages by RCU instead of semi RCU"
#: selects MMU_GATHER_RCU_TABLE_FREE unconditionally, so tlb_remove_table_sync_one() is a real
#: IPI and freed tables wait for a grace period; 4817f70c25b6 selects ARCH_SUPPORTS_PT_RECLAIM.
_X86_64_7_0 = {"rcu_table_free": True, "pt_reclaim": True}

#: x86-64 as built by distributions in 6.6: split PTE and PMD ptlocks, single-word PMD reads, no
#: MMU_GATHER_RCU_TABLE_FREE without PARAVIRT (arch/x86/Kconfig, include/linux/mm_types_task.h).
X86_64 = ArchConfig(
    name="x86_64",
    family="x86",
    split_pte_ptlocks=True,
    split_pmd_ptlocks=True,
    alloc_split_ptlocks=False,
    pmd_low_high=False,
    rcu_table_free=False,
    tlb_flush_ipi=True,
    uffd_wp=True,
    uffd_minor=True,
    move_pmd=True,
    source="arch/x86 (6.6): ARCH_ENABLE_SPLIT_PMD_PTLOCK, generic pte_free_defer from "
           "mm/pgtable-generic.c",
    versions={"7.0": _X86_64_7_0},
)

#: The same with ALLOC_SPLIT_PTLOCKS (lockdep or DEBUG_SPINLOCK builds), where the ptlock is a
#: separate kmem_cache object freed by pagetable_pte_dtor(): RCU freeing must cover it too.
X86_64_ALLOC_PTLOCKS = attrs.evolve(X86_64, name="x86_64-alloc-ptlocks", alloc_split_ptlocks=True)

#: A build with split PTE ptlocks off (NR_CPUS < SPLIT_PTLOCK_CPUS): ptl == pml ==
#: mm->page_table_lock, and every path that nests them must take it once only.
X86_64_NO_SPLIT = attrs.evolve(X86_64, name="x86_64-nosplit", split_pte_ptlocks=False,
                               split_pmd_ptlocks=False)

#: x86-32 with PAE (a PARAVIRT build, so MMU_GATHER_RCU_TABLE_FREE and a real
#: tlb_remove_table_sync_one()): 64-bit PMDs written and read as two 32-bit halves
#: (arch/x86/include/asm/pgtable-3level.h, include/linux/pgtable.h pmdp_get_lockless(), 6.6).
X86_PAE = attrs.evolve(
    X86_64, name="x86_pae", pmd_low_high=True, rcu_table_free=True, uffd_wp=False,
    uffd_minor=False, versions={},  # PT reclaim and the RCU change of 7.0 are x86-64's
    source="arch/x86/include/asm/pgtable-3level.h (6.6): split 64-bit PMD entries, "
           "CONFIG_GUP_GET_PXX_LOW_HIGH; X86_PAE enables ARCH_ENABLE_SPLIT_PMD_PTLOCK",
)

#: this module's configurations, in the order of the version matrix's columns
CONFIGS = (X86_64, X86_64_ALLOC_PTLOCKS, X86_64_NO_SPLIT, X86_PAE)
