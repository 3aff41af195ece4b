"""s390: two 2K PTE tables per 4K page up to 6.6 (``s390``), one table per page from 6.7
(``s390-6.7``).  Their reference functions are :mod:`pgconform.reference.arch.s390` and
:mod:`pgconform.reference.arch.s390_full_page`; s390 has no environment code of its own in the
model (mm->context.lock and pgtable_list are set up by :meth:`pgconform.kernel.world.Kernel.new_mm`
for the HALVES layout)."""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.base import HALVES, PAGE_PTE_T, ArchConfig

#: s390 in 7.0: one PTE table per 4K page since 6.7 (d08d4e7cd6bf), as the ``s390-6.7`` arch.
_S390_7_0 = {"layout": PAGE_PTE_T, "tables_per_page": 1, "allocator": "s390_full_page",
             "source": "arch/s390/mm/pgalloc.c (6.7+, d08d4e7cd6bf): one table per page; "
                       "pte_free_defer call_rcu(&ptdesc->pt_rcu_head)"}

#: s390 up to 6.6: two 2K PTE tables per 4K page, AA/PP bits in the page refcount's top byte, the
#: per-mm pgtable_list under mm->context.lock (arch/s390/mm/pgalloc.c, 6.6).
S390 = ArchConfig(
    name="s390", family="s390", rcu_table_free=True, layout=HALVES, tables_per_page=2,
    allocator="s390",
    source="arch/s390/mm/pgalloc.c (6.6): page_table_alloc, page_table_free, "
           "page_table_free_rcu, __tlb_remove_table, pte_free_defer (8211dad62798)",
    versions={"7.0": _S390_7_0},
)

#: s390 from 6.7 (d08d4e7cd6bf): one PTE table per 4K page, pte_free_defer a plain call_rcu on the
#: ptdesc; pgtable_t stays unsigned long *.
S390_FULL_PAGE = attrs.evolve(
    S390, name="s390-6.7", layout=PAGE_PTE_T, tables_per_page=1, allocator="s390_full_page",
    versions={},  # its 7.0 configuration is its 6.7 one
    source="arch/s390/mm/pgalloc.c (6.7, d08d4e7cd6bf): one table per page; pte_free_defer "
           "call_rcu(&ptdesc->pt_rcu_head)",
)

#: this module's configurations, in the order of the version matrix's columns
CONFIGS = (S390, S390_FULL_PAGE)
