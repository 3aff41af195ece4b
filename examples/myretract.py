"""A worked example of judging your own implementation: a port of retract_page_tables()
(mm/khugepaged.c, 6.6) written against pgconform's model, with one mistake.

``IMPL`` frees the retracted table at once with ``pte_free()``, as 6.5 could under mmap_lock
for write, although 6.6 retracts under i_mmap_rwsem for read only: a fault that read the PMD
locklessly still holds a pointer to the table.  ``FIXED`` defers the free with
``pte_free_defer()``, as the series does, and declares the finding 6.6 has in that function.
Judge either with

    pytest tests/conformance --impl examples.myretract:IMPL
"""

from pgconform.implementation import Implementation
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.khugepaged import (
    SCAN_SUCCEED,
    i_mmap_lock_read,
    i_mmap_unlock_read,
    userfaultfd_wp,
)
from pgconform.sim.effects import Atomic, Load, Lock, Unlock


def _dec_nr_ptes(m, t, mm):
    mm.nr_ptes -= 1


def retract(k, mapping, pgoff, free):
    """retract_page_tables() of 6.6 (mm/khugepaged.c), freeing the table with ``free``."""
    nr = k.geo.hpage_pmd_nr
    yield from i_mmap_lock_read(mapping)
    for vma in list(mapping.i_mmap):
        addr = vma.start + (pgoff - vma.pgoff)
        if vma.anon_vma is not None or addr % nr or addr < vma.start or vma.end < addr + nr:
            continue
        mm = vma.mm
        result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, addr)
        if result != SCAN_SUCCEED or userfaultfd_wp(vma):
            continue
        if (yield from k.ops.hpage_collapse_test_exit(k, mm)):
            continue
        yield from mmu_notifier_invalidate_range_start(k, mm, addr, addr + nr)
        pml = yield from k.ops.pmd_lock(k, mm, pmdp)
        ptl = yield from k.ops.pte_lockptr(k, mm, (yield Load(pmdp.table, pmdp.idx)))
        if ptl is not pml:
            yield Lock(ptl, 1)  # spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
        skip = vma.anon_vma is not None or userfaultfd_wp(vma)  # the recheck under ptl
        if not skip:
            pmd = yield from k.ops.pmdp_collapse_flush(k, vma, addr, pmdp)
            yield from k.ops.pmdp_get_lockless_sync(k)
        if ptl is not pml:
            yield Unlock(ptl)
        yield Unlock(pml)
        yield from mmu_notifier_invalidate_range_end(k, mm, addr, addr + nr)
        if not skip:
            yield Atomic(f"mm_dec_nr_ptes({mm!r})", _dec_nr_ptes, (mm,), touches=(mm,))
            yield from free(k, mm, k.pmd_pgtable(pmd))
    yield from i_mmap_unlock_read(mapping)


def retract_page_tables(k, mapping, pgoff):
    """The mistake: pte_free() at once, no grace period."""
    yield from retract(k, mapping, pgoff, k.ops.pte_free)


def retract_page_tables_fixed(k, mapping, pgoff):
    """As the series does: pte_free_defer()."""
    yield from retract(k, mapping, pgoff, k.ops.pte_free_defer)


IMPL = {"retract_page_tables": retract_page_tables}
#: The fix, as an Implementation: a faithful port of 6.6 also has 6.6's own finding there (a poison
#: marker that UFFDIO_POISON put in the table is freed with it: the checks under the ptl do not
#: look for one), which it declares as the reference does, so that a verdict is about the free.
FIXED = Implementation(
    name="examples.myretract:FIXED",
    overrides={"retract_page_tables": retract_page_tables_fixed},
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
