"""Page-table allocation and installation outside the series: pte_alloc_one()/pte_free() and
__pte_alloc()/pmd_install() (include/asm-generic/pgalloc.h, mm/memory.c, Linux 6.6)."""

from __future__ import annotations

from pgconform.kernel.objects import TablePmd, pmd_none
from pgconform.sim.effects import Atomic, Load, Store, Unlock


def _alloc(m, t, k, mm):
    return k.new_pte_table(mm)


def _free(m, t, k, table):
    k.free_pte_table(m, t, table)


def pte_alloc_one(k, mm):
    """include/asm-generic/pgalloc.h: pte_alloc_one() (6.6): a new page, pagetable_pte_ctor()."""
    return (yield Atomic("pte_alloc_one()", _alloc, (k, mm)))


def pte_free(k, mm, table):
    """include/asm-generic/pgalloc.h: pte_free() (6.6): pagetable_pte_dtor() (frees a separately
    allocated ptlock) and free the page, immediately."""
    yield Atomic(f"pte_free({table!r})", _free, (k, table), touches=(table,))


def pmd_install(k, mm, pmdp, table):
    """mm/memory.c: pmd_install() (6.6): under pmd_lock, link ``table`` if the pmd is still none.
    Returns True if ``table`` was installed (the caller frees it otherwise)."""
    pml = yield from k.impl.pmd_lock(k, mm, pmdp)
    installed = False
    if pmd_none((yield Load(pmdp.table, pmdp.idx))):
        mm.nr_ptes += 1  # mm_inc_nr_ptes()
        yield Store(pmdp.table, pmdp.idx, TablePmd(table.pfn))  # pmd_populate()
        installed = True
    yield Unlock(pml)
    return installed


def __pte_alloc(k, mm, pmdp):
    """mm/memory.c: __pte_alloc() (6.6): allocate, install unless someone else did, free if not."""
    table = yield from pte_alloc_one(k, mm)
    if not (yield from pmd_install(k, mm, pmdp, table)):
        yield from pte_free(k, mm, table)


def pte_alloc(k, mm, pmdp):
    """include/linux/mm.h: pte_alloc() (6.6): __pte_alloc() when the pmd is none."""
    if pmd_none((yield Load(pmdp.table, pmdp.idx))):
        yield from __pte_alloc(k, mm, pmdp)
