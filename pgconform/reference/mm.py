"""Reference: the lock helpers of include/linux/mm.h (Linux 6.6)."""

from __future__ import annotations

from pgconform.sim.effects import Lock


def pmd_lockptr(k, mm, pmdp):
    """include/linux/mm.h: pmd_lockptr() (6.6): the PMD table's own ptlock with split PMD ptlocks
    (USE_SPLIT_PMD_PTLOCKS), else mm->page_table_lock.  Pure address computation: no effect."""
    return pmdp.table.ptl if k.arch.split_pmd_ptlocks else mm.page_table_lock
    yield  # a generator, like every series function


def pmd_lock(k, mm, pmdp):
    """include/linux/mm.h: pmd_lock() (6.6): spin_lock(pmd_lockptr()) and return it."""
    ptl = yield from k.ops.pmd_lockptr(k, mm, pmdp)
    yield Lock(ptl)
    return ptl


def pte_lockptr(k, mm, pmdval):
    """include/linux/mm.h: pte_lockptr(mm, pmd) (6.6): the ptlock of the PTE table that the pmd
    *value* names (ptlock_ptr(page_ptdesc(pmd_page(pmd)))) with split PTE ptlocks, else
    mm->page_table_lock.  Callers pass a snapshot; computing it from a fresh read of ``*pmd`` is
    the pre-6.5 idiom that locks the wrong table (replaced in arm's adjust_pte() by de2e4626c706 and
    in powerpc's assert_pte_locked() by 3d140215a6ae; zoo mutant A14).  The argument and the
    result are judged around every call, overridden or not (pt.lock-mismatch,
    :func:`pgconform.oracle.pagetable.judge_pte_lockptr`), so this body is only the computation."""
    if not k.arch.split_pte_ptlocks:
        return mm.page_table_lock
    return k.pmd_table(pmdval).ptl
    yield
