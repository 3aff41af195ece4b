"""Reference: mm/gup.c's gup_pte_range() (Linux 6.6), GUP-fast's walk of one PTE table.

GUP-fast walks with interrupts disabled and no lock.  Since 70cbc3cc78a9 ("mm: gup: fix the fast
GUP race against THP collapse", Yang Shi, 6.1 and stable) it rechecks the PMD after taking each
page's reference, and (since 2667f50e8b81 "mm: introduce a general RCU get_user_pages_fast()",
3.19) the PTE: a page whose table was unlinked (collapse, retract, PT reclaim) or whose entry
changed in between is dropped again.  The rest of
GUP (gup_pmd_range(), the slow path, the reference helpers) is the environment
(pgconform/kernel/gup.py), which calls gup_pte_range() through the implementation table.
"""

from __future__ import annotations

from pgconform.kernel.gup import gup_pte_unchanged, gup_put_folio, stack_pmd, try_grab_folio
from pgconform.kernel.objects import pte_present
from pgconform.sim.effects import Load


def gup_pte_range(k, mm, pmd, pmdp, addr, end, pages):
    """mm/gup.c: gup_pte_range() (6.6): pte_offset_map() on the *stack copy* ``pmd``; for each PTE
    ptep_get_lockless(), bail on a non-present one, try_grab_folio(), then recheck the PMD
    (``pmd_val(pmd) != pmd_val(*pmdp)``, 70cbc3cc78a9) and the PTE (gup_pte_unchanged()),
    dropping the reference if either changed.  Returns 1 if the whole range was got, else 0
    (what was got stays in ``pages``)."""
    ptem = ptep = yield from k.ops.pte_offset_map(k, stack_pmd(k, pmd), addr)
    if ptep is None:
        return 0
    ret = 0
    while True:
        pte = yield Load(ptep.table, ptep.idx)  # ptep_get_lockless()
        if not pte_present(pte):  # !pte_access_permitted(): fall back
            break
        folio = yield from try_grab_folio(k, pte.folio)
        if folio is None:
            break
        if pmd != (yield Load(pmdp.table, pmdp.idx)):  # pmd_val(pmd) != pmd_val(*pmdp)
            yield from gup_put_folio(k, folio)
            break
        pmd_confirmed = len(k.m.trace)  # the table was linked at pmdp until this point
        if not (yield from gup_pte_unchanged(k, mm, addr, ptep, pte, folio, pmd_confirmed,
                                             pages)):
            yield from gup_put_folio(k, folio)
            break
        pages.append((addr, folio, pte.idx))
        addr += 1
        if addr == end:
            ret = 1
            break
        ptep += 1
    yield from k.ops.pte_unmap(k, ptem)
    return ret
