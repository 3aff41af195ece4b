"""What every architecture module of :mod:`pgconform.kernel.arch` builds on: the
:class:`ArchConfig` record and the ways PTE tables are packed in pages."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

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
    kernel: the record is where an arch's reference functions are registered (the reference looks
    them up by this name, :func:`pgconform.reference.reference_functions`).

    ``versions`` holds what changed in later kernel versions: kernel version name -> the fields
    that differ there (:meth:`in_version`).  A record made by ``attrs.evolve`` of another inherits
    them; give ``versions={}`` where the evolved configuration did not change."""

    name: str
    #: the kernel's arch/ directory the configuration belongs to (ARCH=): x86, powerpc, s390, ...
    family: str = ""
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
    #: CONFIG_HAVE_MOVE_PMD: mremap() moves a whole PTE table (move_normal_pmd()); selected by
    #: x86 and powerpc book3s64 (radix), not by s390, sparc64 or 32-bit arm
    move_pmd: bool = False
    source: str = ""
    #: kernel version name -> the fields that differ from 6.6 in that version
    versions: Mapping[str, Mapping[str, object]] = attrs.field(factory=dict, eq=False, repr=False)

    def in_version(self, version: str) -> ArchConfig:
        """This configuration as it is in kernel ``version`` (itself if nothing changed)."""
        changes = self.versions.get(version)
        return attrs.evolve(self, **changes) if changes else self

    @property
    def pgtable_is_page(self) -> bool:
        """pgtable_t is struct page * (else a virtual address, pte_t * or unsigned long *)."""
        return self.layout == PAGE
