"""sparc64: whole-page PTE tables whose pgtable_t is pte_t *.  Its reference functions are
:mod:`pgconform.reference.arch.sparc64`; sparc64 has no environment code of its own in the model."""

from __future__ import annotations

from pgconform.kernel.arch.base import PAGE_PTE_T, ArchConfig

#: sparc64: whole-page PTE tables but pgtable_t is pte_t *; pte_free_defer converts it to its page
#: (arch/sparc/mm/init_64.c, 6.6, ad1ac8d94cde).  No split PMD ptlocks.
SPARC64 = ArchConfig(
    name="sparc64", family="sparc", split_pmd_ptlocks=False, rcu_table_free=True, layout=PAGE_PTE_T,
    allocator="sparc64",
    source="arch/sparc/mm/init_64.c (6.6): pte_alloc_one, pte_free, pte_free_defer (ad1ac8d94cde)",
)

#: this module's configurations, in the order of the version matrix's columns
CONFIGS = (SPARC64,)
