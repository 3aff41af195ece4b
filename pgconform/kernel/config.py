"""Geometry and architecture configurations of the modelled kernel.

The geometry is scaled down (a few PTEs per table) so that short schedules reach every interesting
state; HPAGE_PMD_NR equals PTRS_PER_PTE, as in the kernel.  Addresses are virtual page numbers.
"""

from __future__ import annotations

import os

import attrs

#: How the model compiles two plain (not READ_ONCE) C reads of one page-table entry that have no
#: call, barrier or volatile access between them: C lets the compiler merge them into one load
#: ("fused", what GCC 12.2 emits for x86-64 change_pmd_range(), mm/mprotect.o) or emit two
#: ("split", C's abstract semantics, which another compiler, arch or instrumented build may
#: emit).  kernel/mprotect.py change_pmd_range() is where the model has such a pair.
PLAIN_READS_FORMS = ("fused", "split")
#: the environment variable choosing the form (default "fused": kernel/mprotect.py says why)
PLAIN_READS_ENV = "PGCONFORM_PLAIN_READS"


def plain_reads_form(value: str | None = None) -> str:
    """The form of plain page-table reads a run models: ``value``, else ``PGCONFORM_PLAIN_READS``,
    else "fused".  Anything else is a ValueError naming the choices."""
    if value is None:
        value = os.environ.get(PLAIN_READS_ENV) or "fused"
    if value not in PLAIN_READS_FORMS:
        raise ValueError(f"{PLAIN_READS_ENV}={value!r}: the form of plain page-table reads is one "
                         f"of {', '.join(PLAIN_READS_FORMS)}")
    return value


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


#: how PTE tables are packed in pages (6.6: mm/pgtable-generic.c, arch/powerpc/mm/pgtable-frag.c,
#: arch/s390/mm/pgalloc.c, arch/sparc/mm/init_64.c)
PAGE = "page"            # one table per page, pgtable_t is struct page * (generic)
PAGE_PTE_T = "page-pte_t"  # one table per page, pgtable_t is pte_t * (sparc64; s390 since 6.7)
FRAGMENTS = "fragments"  # PTE_FRAG_NR tables carved from a page, never reused (powerpc book3s64)
HALVES = "halves"        # two 2K tables per 4K page, halves reused (s390 up to 6.6)


@attrs.frozen
class ArchConfig:
    """What an architecture configuration decides for this protocol (the split ptlocks of
    include/linux/mm.h and mm/Kconfig, the table layout, the RCU table freeing of mm/mmu_gather.c).

    ``allocator`` names the arch module of :mod:`pgconform.reference.arch` whose pte_alloc_one(),
    pte_free() and pte_free_defer() replace the generic ones, as an arch's own definitions do in the
    kernel."""

    name: str
    #: USE_SPLIT_PTE_PTLOCKS: the ptl lives with the PTE table's page (shared by the tables packed
    #: in it); otherwise ptl == mm->page_table_lock
    split_pte_ptlocks: bool = True
    #: USE_SPLIT_PMD_PTLOCKS: pmd_lock is the PMD table's own ptlock; otherwise mm->page_table_lock
    split_pmd_ptlocks: bool = True
    #: ALLOC_SPLIT_PTLOCKS: the ptlock is a separate allocation, freed by the page-table destructor
    alloc_split_ptlocks: bool = False
    #: CONFIG_GUP_GET_PXX_LOW_HIGH with >2 levels: pmd values read as two halves (x86-32 PAE)
    pmd_low_high: bool = False
    #: CONFIG_MMU_GATHER_RCU_TABLE_FREE: tlb_remove_table_sync_one() is a real IPI
    rcu_table_free: bool = False
    #: flush_tlb_range() interrupts the CPUs of mm_cpumask and waits for them (x86); elsewhere TLB
    #: invalidation is broadcast by hardware (powerpc tlbie, s390 IPTE/IDTE, arm TLBI broadcast)
    tlb_flush_ipi: bool = False
    #: how tables are packed in pages, and what pgtable_t is: PAGE, PAGE_PTE_T, FRAGMENTS, HALVES
    layout: str = PAGE
    #: tables per page (PTE_FRAG_NR on powerpc, 2 on s390 up to 6.6, else 1)
    tables_per_page: int = 1
    #: the reference arch module providing the allocator and pte_free_defer
    allocator: str = "generic"
    #: a VIVT data cache: update_mmu_cache() makes aliases coherent (arm make_coherent)
    vivt_cache: bool = False
    #: powerpc: assert_pte_locked() runs on PTE updates (CONFIG_DEBUG_VM)
    debug_vm: bool = False
    #: CONFIG_TRANSPARENT_HUGEPAGE: khugepaged, MADV_COLLAPSE, PMD-sized page-cache folios
    thp: bool = True
    #: CONFIG_HAVE_FAST_GUP: get_user_pages_fast() walks the page tables locklessly with IRQs
    #: off (only where page tables are freed after an IPI or a grace period; arm only with LPAE)
    fast_gup: bool = True
    #: HAVE_ARCH_USERFAULTFD_WP and HAVE_ARCH_USERFAULTFD_MINOR (6.6: x86-64 only among these; arm64
    #: gets WP in 6.10): UFFDIO_REGISTER_MODE_WP / _MINOR are -EINVAL elsewhere
    uffd_wp: bool = False
    uffd_minor: bool = False
    #: ARCH_SUPPORTS_PT_RECLAIM (6.14+, x86-64 only in 7.0): MADV_DONTNEED frees the PTE tables it
    #: empties (only in a kernel version with PT reclaim, KernelVersion.pt_reclaim)
    pt_reclaim: bool = False
    source: str = ""

    @property
    def pgtable_is_page(self) -> bool:
        """pgtable_t is struct page * (else a virtual address, pte_t * or unsigned long *)."""
        return self.layout == PAGE


#: x86-64 as built by distributions in 6.6: split PTE and PMD ptlocks, single-word PMD reads, no
#: MMU_GATHER_RCU_TABLE_FREE without PARAVIRT (arch/x86/Kconfig, include/linux/mm_types_task.h).
X86_64 = ArchConfig(
    name="x86_64",
    split_pte_ptlocks=True,
    split_pmd_ptlocks=True,
    alloc_split_ptlocks=False,
    pmd_low_high=False,
    rcu_table_free=False,
    tlb_flush_ipi=True,
    uffd_wp=True,
    uffd_minor=True,
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

#: x86-32 with PAE (a PARAVIRT build, so MMU_GATHER_RCU_TABLE_FREE and a real
#: tlb_remove_table_sync_one()): 64-bit PMDs written and read as two 32-bit halves
#: (arch/x86/include/asm/pgtable-3level.h, include/linux/pgtable.h pmdp_get_lockless(), 6.6).
X86_PAE = attrs.evolve(
    X86_64, name="x86_pae", pmd_low_high=True, rcu_table_free=True, uffd_wp=False,
    uffd_minor=False,
    source="arch/x86/include/asm/pgtable-3level.h (6.6): split 64-bit PMD entries, "
           "CONFIG_GUP_GET_PXX_LOW_HIGH; X86_PAE enables ARCH_ENABLE_SPLIT_PMD_PTLOCK",
)

#: powerpc book3s64: PTE tables are fragments of a page carved in order through the per-mm
#: mm->context.pte_frag, never reused; the split ptlock is the page's, shared by its fragments
#: (arch/powerpc/mm/pgtable-frag.c, 6.6).
POWERPC64 = ArchConfig(
    name="powerpc64", rcu_table_free=True, layout=FRAGMENTS, tables_per_page=2,
    allocator="powerpc", debug_vm=True,
    source="arch/powerpc/mm/pgtable-frag.c, arch/powerpc/mm/pgtable.c (6.6): pte_fragment_alloc, "
           "pte_fragment_free, pte_free_defer (32cc0b7c9d50), assert_pte_locked (3d140215a6ae)",
)

#: s390 up to 6.6: two 2K PTE tables per 4K page, AA/PP bits in the page refcount's top byte, the
#: per-mm pgtable_list under mm->context.lock (arch/s390/mm/pgalloc.c, 6.6).
S390 = ArchConfig(
    name="s390", rcu_table_free=True, layout=HALVES, tables_per_page=2, allocator="s390",
    source="arch/s390/mm/pgalloc.c (6.6): page_table_alloc, page_table_free, "
           "page_table_free_rcu, __tlb_remove_table, pte_free_defer (8211dad62798)",
)

#: s390 from 6.7 (d08d4e7cd6bf): one PTE table per 4K page, pte_free_defer a plain call_rcu on the
#: ptdesc; pgtable_t stays unsigned long *.
S390_FULL_PAGE = attrs.evolve(
    S390, name="s390-6.7", layout=PAGE_PTE_T, tables_per_page=1, allocator="s390_full_page",
    source="arch/s390/mm/pgalloc.c (6.7, d08d4e7cd6bf): one table per page; pte_free_defer "
           "call_rcu(&ptdesc->pt_rcu_head)",
)

#: sparc64: whole-page PTE tables but pgtable_t is pte_t *; pte_free_defer converts it to its page
#: (arch/sparc/mm/init_64.c, 6.6, ad1ac8d94cde).  No split PMD ptlocks.
SPARC64 = ArchConfig(
    name="sparc64", split_pmd_ptlocks=False, rcu_table_free=True, layout=PAGE_PTE_T,
    allocator="sparc64",
    source="arch/sparc/mm/init_64.c (6.6): pte_alloc_one, pte_free, pte_free_defer (ad1ac8d94cde)",
)

#: 32-bit arm with a VIVT cache (ARMv4/v5, the only CPUs where fault-armv.c's make_coherent()
#: runs): update_mmu_cache() calls make_coherent() -> adjust_pte() on shared aliases
#: (arch/arm/mm/fault-armv.c, 6.6, de2e4626c706).  SPLIT_PTLOCK_CPUS is 999999 for ARM without
#: CPU_CACHE_VIPT (mm/Kconfig), so ptl == pml == mm->page_table_lock; two-level tables fold the
#: PMD; THP needs ARM_LPAE (ARMv7), so there is no khugepaged here: the arm run judges the map API
#: and adjust_pte() against faults, zaps, rmap walks and userfaultfd.
ARM = ArchConfig(
    name="arm", split_pte_ptlocks=False, split_pmd_ptlocks=False, vivt_cache=True, thp=False,
    fast_gup=False,  # arch/arm/Kconfig: HAVE_FAST_GUP if ARM_LPAE (ARMv7)
    source="arch/arm/mm/fault-armv.c (6.6): adjust_pte() with pte_offset_map_nolock()",
)

ARCHES: dict[str, ArchConfig] = {a.name: a for a in (
    X86_64, X86_64_ALLOC_PTLOCKS, X86_64_NO_SPLIT, X86_PAE, POWERPC64, S390, S390_FULL_PAGE,
    SPARC64, ARM)}
