"""Page-table installation outside the series: __pte_alloc()/pmd_install() (mm/memory.c, Linux
6.6).  The allocator itself (pte_alloc_one()/pte_free()) is the architecture's: it is called
through ``k.ops`` (pgconform.reference.arch)."""

from __future__ import annotations

from pgconform.kernel.objects import pmd_none, table_pmd
from pgconform.kernel.pgtable import set_pmd
from pgconform.sim.effects import Atomic, Load, Unlock


def pgtable_table(k, pgtable):
    """The table a pgtable_t names (a struct page, or the table's address)."""
    return pgtable if k.arch.pgtable_is_page else pgtable.table


def _dec_nr_ptes(m, t, mm):
    mm.nr_ptes -= 1


def mm_dec_nr_ptes(k, mm):
    """include/linux/mm.h: mm_dec_nr_ptes() (6.6): one PTE table fewer in the mm's count (every
    path that unlinks and frees a table: retract, collapse, free_pgtables(), PT reclaim)."""
    yield Atomic(f"mm_dec_nr_ptes({mm!r})", _dec_nr_ptes, (mm,), touches=(mm,))


def pmd_install(k, mm, pmdp, pgtable):
    """mm/memory.c: pmd_install() (6.6): under pmd_lock, link the table if the pmd is still none
    (mm_inc_nr_ptes + pmd_populate).  Returns True if it was installed (else the caller frees
    it)."""
    pml = yield from k.ops.pmd_lock(k, mm, pmdp)
    installed = False
    if pmd_none((yield Load(pmdp.table, pmdp.idx))):
        mm.nr_ptes += 1  # mm_inc_nr_ptes()
        yield from set_pmd(k, pmdp, table_pmd(pgtable_table(k, pgtable)))  # pmd_populate()
        installed = True
    yield Unlock(pml)
    return installed


def __pte_alloc(k, mm, pmdp):
    """mm/memory.c: __pte_alloc() (6.6): allocate, install unless someone else did, free if not."""
    pgtable = yield from k.ops.pte_alloc_one(k, mm)
    if not (yield from pmd_install(k, mm, pmdp, pgtable)):
        yield from k.ops.pte_free(k, mm, pgtable)


def pte_alloc(k, mm, pmdp):
    """include/linux/mm.h: pte_alloc() (6.6, 7.0): __pte_alloc() when the pmd is none.  The test
    is a plain read of ``*pmd``.  Returns the value it read (None: it called __pte_alloc()), for a
    caller whose next plain read of the entry the compiler may merge with this one
    (kernel/mprotect.py change_pmd_range())."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    if pmd_none(pmdval):
        yield from __pte_alloc(k, mm, pmdp)
    return pmdval
