"""Reference: mm/mprotect.c's change_pmd_range() (Linux 6.6; the same in 7.0), the PMD level of
change_protection(), which mprotect() and userfaultfd write-protection share.

Per PMD it prepares (change_pmd_prepare(): for uffd-wp, pte_alloc() a table under a none PMD so
that markers can be put in it) and then tests ``pmd_none(*pmd)`` to skip an empty range: two
plain reads of ``*pmd`` that the compiler may fuse into one load or emit as two
(kernel/mprotect.py pmd_none_plain_read(); a PMD cleared in between by retract_page_tables() or
7.0's PT reclaim is the difference).  The rest of change_protection() (change_pte_range(),
change_huge_pmd(), the prepare) is the environment (pgconform/kernel/mprotect.py), which calls
change_pmd_range() through the implementation table.
"""

from __future__ import annotations

from pgconform.kernel.memory import __split_huge_pmd
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.mprotect import (
    change_huge_pmd,
    change_pmd_prepare,
    change_pte_range,
    pgtable_split_needed,
    pmd_none_plain_read,
)
from pgconform.kernel.objects import pmd_none, pmd_trans_huge


def change_pmd_range(k, vma, start, end, cp_flags):
    """mm/mprotect.c: change_pmd_range() (6.6; the same in 7.0): per PMD, change_pmd_prepare();
    skip a none PMD; start one mmu_notifier range (MMU_NOTIFY_PROTECTION_VMA) at the first
    populated PMD; split a huge PMD the change does not cover whole or that uffd-wp needs as PTEs
    (then prepare again), else change_huge_pmd(); then change_pte_range(), and on -EAGAIN go
    again.  The two plain reads of ``*pmd`` before the pmd_none() test are one load or two as
    the compiler chooses: pmd_none_plain_read()."""
    mm = vma.mm
    geo = k.geo
    pages = 0
    notified = False
    addr = start
    while addr < end:
        nxt = min(end, geo.haddr(addr) + geo.ptrs_per_pte)
        pmdp = mm.pmd_offset(addr, geo)
        while True:  # again:
            prepared = yield from change_pmd_prepare(k, vma, pmdp, cp_flags)
            if pmd_none((yield from pmd_none_plain_read(k, pmdp, prepared))):
                break
            if not notified:
                yield from mmu_notifier_invalidate_range_start(k, mm, start, end)
                notified = True
            pmdv = yield from k.ops.pmdp_get_lockless(k, pmdp)
            if pmd_trans_huge(pmdv):
                if nxt - addr != geo.hpage_pmd_nr or pgtable_split_needed(vma, cp_flags):
                    yield from __split_huge_pmd(k, vma, pmdp, addr)
                    # a file PMD is just cleared: populate it again if markers are needed
                    yield from change_pmd_prepare(k, vma, pmdp, cp_flags)
                else:
                    ret = yield from change_huge_pmd(k, vma, pmdp, addr, cp_flags)
                    if ret:
                        pages += ret
                        break
            ret = yield from change_pte_range(k, vma, pmdp, addr, nxt, cp_flags)
            if ret < 0:
                continue
            pages += ret
            break
        addr = nxt
    if notified:
        yield from mmu_notifier_invalidate_range_end(k, mm, start, end)
    return pages
