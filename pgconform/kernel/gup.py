"""get_user_pages: the lockless fast path and the slow path (mm/gup.c, Linux 6.6).

GUP-fast walks the page tables of ``current->mm`` with interrupts disabled and no lock: it reads
the PMD once into a stack copy (pmdp_get_lockless()), maps the PTE table of that copy
(pte_offset_map(&pmd)), reads each PTE (ptep_get_lockless()), takes a reference that fails on a
frozen or freed folio (collapse_file()'s folio_ref_freeze()), and then rechecks that ``*pmdp`` and
``*ptep`` still hold what it used, or drops the reference and stops.  What it did not get is left to
the slow path: mmap_lock for read, follow_page_pte() under pte_offset_map_lock(), faultin_page()
(handle_mm_fault()) when there is nothing to follow, and retry.

The model takes FOLL_GET references (get_user_pages_fast(), get_user_pages(): +1 on the folio's
refcount; not FOLL_PIN's GUP_PIN_COUNTING_BIAS) for reading, and the caller drops them with
put_page() after using the pages.  A pinned page makes collapse_file()'s folio_ref_freeze() fail
(SCAN_PAGE_COUNT).
"""

from __future__ import annotations

import attrs

from pgconform.kernel.filemap import folio_put
from pgconform.kernel.memory import VM_FAULT_ERROR, __handle_mm_fault
from pgconform.kernel.objects import (
    PmdPtr,
    PmdTable,
    TornPmd,
    pmd_none,
    pmd_trans_huge,
    pte_present,
)
from pgconform.kernel.pgtable import pae_split
from pgconform.sim.effects import Atomic, DownRead, IrqDisable, IrqEnable, Load, Unlock, UpRead
from pgconform.sim.physmem import Page

EFAULT = -14


@attrs.define(slots=True, eq=False, repr=False)
class StackPmd(PmdTable):
    """``pmd_t pmd`` on GUP-fast's stack: the copy pte_offset_map(&pmd, addr) maps from; nobody
    writes it, so every read of it (both halves on x86 PAE) gives the value copied."""

    def __repr__(self) -> str:
        return "pmd(stack copy)"


def stack_pmd(k, pmd):
    """A pmd_t * to a stack copy of the value ``pmd``."""
    copy = StackPmd(-1, 0, "stack", [pmd])
    if k.arch.pmd_low_high:
        lo, hi = (pmd.lo, pmd.hi) if type(pmd) is TornPmd else pae_split(pmd)
        copy.halves = Page(-1, 0, "stack-halves", [lo, hi])
    return PmdPtr(copy, 0)


# ------------------------------------------------------------------------------------------------
# references


def _try_grab_folio(m, t, folio, refs):
    """folio_ref_try_add_rcu(): fails (NULL) on a folio whose refcount is frozen or zero."""
    if folio.frozen is not None or folio.freed or folio.refcount <= 0:
        return None
    folio.refcount += refs
    return folio


def try_grab_folio(k, folio, refs=1):
    """mm/gup.c: try_grab_folio() (6.6.0; try_grab_folio_fast() since f442fa614137 "mm: gup: stop
    abusing try_grab_folio", 6.10 and 6.6.y) with FOLL_GET: try_get_folio(), NULL on failure."""
    return (yield Atomic(f"try_grab_folio({folio!r}, {refs})", _try_grab_folio, (folio, refs),
                         touches=(folio,)))


def gup_put_folio(k, folio, refs=1):
    """mm/gup.c: gup_put_folio() (6.6) with FOLL_GET: folio_put_refs()."""
    yield Atomic(f"gup_put_folio({folio!r}, {refs})", _put, (k, folio, refs), touches=(folio,))


def _put(m, t, k, folio, refs):
    folio_put(k, folio, refs)


# ------------------------------------------------------------------------------------------------
# GUP-fast


class GupPages(list):
    """``struct page **pages`` of a GUP-fast walk: the (addr, folio, subpage) got, and which of
    them gup_pte_unchanged() confirmed (``confirmed``: their indexes)."""

    __slots__ = ("confirmed",)

    def __init__(self, *args):
        super().__init__(*args)
        self.confirmed: set[int] = set()


def _pte_recheck(m, t, k, mm, addr, ptep, pte, folio, pmd_confirmed, pages):
    """``pte_val(pte) != pte_val(ptep_get(ptep))``; when unchanged the pin is confirmed (oracle),
    as of the PMD recheck just before (trace position ``pmd_confirmed``) if the table was
    unlinked since."""
    table = ptep.table
    if table.freed:
        m.use_after_free(t, table, f"read of entry {ptep.idx}")
    if table.entries[ptep.idx] != pte:
        return False
    k.hooks.gup_confirm(k, t, mm, addr, table, folio, pte.idx, pmd_confirmed)
    if isinstance(pages, GupPages):
        pages.confirmed.add(len(pages))  # the index the caller appends the page at next
    return True


def gup_pte_unchanged(k, mm, addr, ptep, pte, folio, pmd_confirmed=None, pages=None):
    """The PTE recheck of mm/gup.c gup_pte_range() (6.6), ``pte_val(pte) ==
    pte_val(ptep_get(ptep))``, in one step: whether ``*ptep`` still holds ``pte``, from which
    ``folio`` was grabbed.  This is where GUP-fast confirms a pin: the page is judged
    (gup.stale-page) in that step, as of the PMD recheck (trace position ``pmd_confirmed``) if
    the table was unlinked since; the page the caller appends next to ``pages`` counts as
    confirmed.  A page gup_pte_range() returns without it is judged when gup_pte_range()
    returns (gup_pmd_range())."""
    return (yield Atomic(f"recheck pte {ptep!r} == {pte!r}", _pte_recheck,
                         (k, mm, addr, ptep, pte, folio, pmd_confirmed, pages),
                         touches=(ptep.table,)))


def _judge_unconfirmed(m, t, k, mm, pages, first):
    """The pages gup_pte_range() appended from index ``first`` without confirming them with
    gup_pte_unchanged(): judged now, as the page the address maps when the walk returns them."""
    for i in range(first, len(pages)):
        if i not in pages.confirmed:
            addr, folio, idx = pages[i]
            k.hooks.gup_confirm(k, t, mm, addr, None, folio, idx, None)


def _huge_recheck(m, t, k, mm, addr, end, pmdp, orig, folio):
    if pmdp.table.entries[pmdp.idx] != orig:  # pmd_val(orig) != pmd_val(*pmdp)
        return False
    for a in range(addr, end):
        k.hooks.gup_confirm(k, t, mm, a, None, folio, a - k.geo.haddr(a), None)
    return True


def gup_huge_pmd(k, mm, orig, pmdp, addr, end, pages):
    """mm/gup.c: gup_huge_pmd() (6.6): grab the PMD-mapped folio for every page of [addr, end),
    then recheck the PMD; drop on change."""
    refs = end - addr
    folio = yield from try_grab_folio(k, orig.folio, refs)
    if folio is None:
        return 0
    if not (yield Atomic(f"recheck pmd {pmdp!r} == {orig!r}", _huge_recheck,
                         (k, mm, addr, end, pmdp, orig, folio), touches=(pmdp.table,))):
        yield from gup_put_folio(k, folio, refs)
        return 0
    for a in range(addr, end):
        pages.append((a, folio, a - k.geo.haddr(a)))
    return 1


def gup_pmd_range(k, mm, addr, end, pages):
    """mm/gup.c: gup_pmd_range() (6.6) (the pgd/p4d/pud levels are folded): per PMD,
    pmdp_get_lockless() into a stack copy; not present: stop; huge: gup_huge_pmd(); otherwise
    gup_pte_range() on the copy."""
    geo = k.geo
    while addr < end:
        nxt = min(end, geo.haddr(addr) + geo.ptrs_per_pte)
        pmdp = mm.pmd_offset(addr, geo)
        pmd = yield from k.ops.pmdp_get_lockless(k, pmdp)
        if pmd_none(pmd):
            return 0
        if pmd_trans_huge(pmd):
            if not (yield from gup_huge_pmd(k, mm, pmd, pmdp, addr, nxt, pages)):
                return 0
        else:
            first = len(pages)
            got = yield from k.ops.gup_pte_range(k, mm, pmd, pmdp, addr, nxt, pages)
            if len(pages) > first and not pages.confirmed.issuperset(range(first, len(pages))):
                yield Atomic("gup_pte_range() returns unconfirmed pages", _judge_unconfirmed,
                             (k, mm, pages, first))
            if not got:
                return 0
        addr = nxt
    return 1


def lockless_pages_from_mm(k, mm, start, end, pages):
    """mm/gup.c: lockless_pages_from_mm() (6.6): local_irq_save(), gup_pgd_range(),
    local_irq_restore().  Interrupts off make it an RCU reader and hold off TLB-flush IPIs.
    Without CONFIG_HAVE_FAST_GUP (arm without LPAE) gup_pgd_range() is empty: nothing is got
    locklessly and get_user_pages_fast() takes the slow path."""
    if not k.arch.fast_gup:
        return 0
    yield IrqDisable()
    yield from gup_pmd_range(k, mm, start, end, pages)
    yield IrqEnable()
    return len(pages)


def get_user_pages_fast(k, mm, start, nr_pages):
    """mm/gup.c: get_user_pages_fast() -> internal_get_user_pages_fast() (6.6): the lockless walk,
    then the slow path (__gup_longterm_locked() -> __get_user_pages_locked()) for the rest.
    Returns the list of (addr, folio, subpage) got, each holding a reference."""
    pages = GupPages()
    end = start + nr_pages
    nr_pinned = yield from lockless_pages_from_mm(k, mm, start, end, pages)
    if nr_pinned == nr_pages:
        return pages
    yield from get_user_pages(k, mm, start + nr_pinned, nr_pages - nr_pinned, pages)
    return pages


# ------------------------------------------------------------------------------------------------
# slow GUP


def _grab_locked(m, t, k, mm, addr, table, pte):
    """try_grab_folio() in follow_page_pte(): a present PTE read under its ptl has a stable
    reference (refcount > 0), so this succeeds; the pin is confirmed here (oracle)."""
    folio = pte.folio
    folio.refcount += 1
    k.hooks.gup_confirm(k, t, mm, addr, table, folio, pte.idx, None)
    return folio


def follow_page_pte(k, vma, addr, pmdp):
    """mm/gup.c: follow_page_pte() (6.6): pte_offset_map_lock() (NULL: no_page_table()), the entry
    under ptl; not present: NULL; else try_grab_folio() and pte_unmap_unlock().  Returns
    (folio, idx) or None."""
    mm = vma.mm
    ptep, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if ptep is None:
        return None
    pte = yield Load(ptep.table, ptep.idx)
    page = None
    if pte_present(pte):
        folio = yield Atomic(f"try_grab_folio({pte.folio!r}, 1)", _grab_locked,
                             (k, mm, addr, ptep.table, pte), touches=(pte.folio,))
        page = (folio, pte.idx)
    yield from k.ops.pte_unmap_unlock(k, ptep, ptl)
    return page


def _grab_huge_locked(m, t, k, mm, addr, pmdp):
    pmd = pmdp.table.entries[pmdp.idx]
    folio, idx = pmd.folio, addr - k.geo.haddr(addr)
    folio.refcount += 1
    k.hooks.gup_confirm(k, t, mm, addr, None, folio, idx, None)
    return folio, idx


def follow_pmd_mask(k, vma, addr):
    """mm/gup.c: follow_pmd_mask() (6.6): pmdp_get_lockless(); none: no_page_table(); a table:
    follow_page_pte(); huge: under pmd_lock() recheck it and follow_trans_huge_pmd()."""
    pmdp = vma.mm.pmd_offset(addr, k.geo)
    pmdval = yield from k.ops.pmdp_get_lockless(k, pmdp)
    if pmd_none(pmdval):
        return None
    if not pmd_trans_huge(pmdval):
        return (yield from follow_page_pte(k, vma, addr, pmdp))
    ptl = yield from k.ops.pmd_lock(k, vma.mm, pmdp)
    cur = yield Load(pmdp.table, pmdp.idx)
    if pmd_none(cur):
        yield Unlock(ptl)
        return None
    if not pmd_trans_huge(cur):
        yield Unlock(ptl)
        return (yield from follow_page_pte(k, vma, addr, pmdp))
    page = yield Atomic(f"follow_trans_huge_pmd({pmdp!r})", _grab_huge_locked,
                        (k, vma.mm, addr, pmdp), touches=(cur.folio,))
    yield Unlock(ptl)
    return page


def faultin_page(k, vma, addr):
    """mm/gup.c: faultin_page() (6.6) without FOLL_UNLOCKABLE: handle_mm_fault() with mmap_lock
    still held; VM_FAULT_ERROR (SIGSEGV, SIGBUS: e.g. a userfaultfd-registered hole, which
    handle_userfault() fails without FAULT_FLAG_ALLOW_RETRY) is -EFAULT.  Returns 0 or -EFAULT."""
    ret = yield from __handle_mm_fault(k, vma, addr, False)
    return EFAULT if ret in VM_FAULT_ERROR else 0  # vm_fault_to_errno()


def __get_user_pages(k, mm, start, nr_pages, pages):
    """mm/gup.c: __get_user_pages() (6.6), mmap_lock held: per page, the VMA (none: -EFAULT), then
    follow_page_mask(); nothing to follow: faultin_page() and retry.  Returns pages got or
    -errno."""
    got = 0
    for addr in range(start, start + nr_pages):
        vma = mm.find_vma(addr)
        if vma is None:
            return got or EFAULT
        while True:
            page = yield from follow_pmd_mask(k, vma, addr)
            if page is not None:
                break
            ret = yield from faultin_page(k, vma, addr)
            if ret:
                return got or ret
        pages.append((addr, *page))
        got += 1
    return got


def get_user_pages(k, mm, start, nr_pages, pages=None):
    """mm/gup.c: get_user_pages() -> __get_user_pages_locked() (6.6): mmap_read_lock(),
    __get_user_pages(), mmap_read_unlock().  Returns the list of (addr, folio, subpage) got."""
    pages = [] if pages is None else pages
    yield DownRead(mm.mmap_lock)
    yield from __get_user_pages(k, mm, start, nr_pages, pages)
    yield UpRead(mm.mmap_lock)
    return pages


def gup_and_release(k, mm, start, nr_pages, fast):
    """A caller of GUP (a direct-I/O read, vmsplice): get the pages, use them, put_page() each.
    Returns how many pages it got."""
    if fast:
        pages = yield from get_user_pages_fast(k, mm, start, nr_pages)
    else:
        pages = yield from get_user_pages(k, mm, start, nr_pages)
    for _addr, folio, _idx in pages:
        yield from gup_put_folio(k, folio)
    return len(pages)
