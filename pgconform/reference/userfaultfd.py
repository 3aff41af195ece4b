"""Reference: mm/userfaultfd.c's users of the page-table protocol.

* mfill_atomic() (Linux 6.6): the head of UFFDIO_COPY, UFFDIO_CONTINUE and UFFDIO_POISON, which
  allocates the destination's PTE table and must re-read the PMD after doing so;
* move_pages_ptes() (Linux 7.0; move_pages_pte() before 6.18), the part of UFFDIO_MOVE
  (adcd4ad8a8da "userfaultfd: UFFDIO_MOVE uABI", 6.8) that maps both page tables locklessly; its
  pmd_same() recheck of the destination (dd95d2782a25) is what PT reclaim needs.

The rest (mfill_atomic_pte(), move_pages(), move_present_ptes()) is the environment
(pgconform/kernel/userfaultfd.py), which calls these through the implementation table.
"""

from __future__ import annotations

from pgconform.kernel.filemap import folio_get, folio_put
from pgconform.kernel.memory import anon_vma_prepare
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import pmd_none, pmd_trans_huge, pte_none, pte_present
from pgconform.kernel.pgalloc import __pte_alloc
from pgconform.kernel.userfaultfd import (
    EAGAIN,
    EBUSY,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOENT,
    MFILL_ATOMIC_CONTINUE,
    UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
    mfill_atomic_pte,
    move_present_ptes,
    page_anon_exclusive,
    userfaultfd_registered,
)
from pgconform.sim.effects import DownRead, Load, Lock, Trylock, Unlock, UpRead


def mfill_atomic(k, mm, addr, mode, value=None):
    """mm/userfaultfd.c: mfill_atomic() (6.6 with Jann Horn's 71c186efc1b2 "userfaultfd: fix checks
    for huge PMDs" and 4828d207dc51 "userfaultfd: don't BUG_ON() if khugepaged yanks our page
    table", 6.11 and 6.6.y) for one page at ``addr``, ``mode`` being the ioctl
    (MFILL_ATOMIC_COPY with the page's ``value``, _CONTINUE, _POISON); one call, which userspace
    repeats on -EAGAIN.

    Under mmap_lock for read: find_dst_vma() (a VMA registered with userfaultfd, any mode; none:
    -ENOENT); UFFDIO_CONTINUE needs shmem (-EINVAL); anon_vma_prepare() for a private VMA.  Then
    the destination PMD: read it (pmdp_get_lockless()), __pte_alloc() a table if it is none, and
    read it *again*: the value that counts is the one after the allocation, which may be a huge
    PMD a collapse installed meanwhile, or none again (-EEXIST for both: the PMD is not the
    caller's to change; before 71c186efc1b2 the test was a racy pmd_trans_huge(*dst_pmd), and
    before 4828d207dc51 a none PMD there was a BUG_ON(), which retract_page_tables() without
    mmap_lock can reach).  Then mfill_atomic_pte() with the PMD pointer, and mmap_read_unlock().
    (The ioctls' mmget_not_zero() always succeeds in the model: they run as tasks of the
    process, which exit waits for, and scenario.start_op() answers -ESRCH for a process that has
    exited.)"""
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None or not userfaultfd_registered(vma):
        yield UpRead(mm.mmap_lock)
        return ENOENT
    if mode == MFILL_ATOMIC_CONTINUE and vma.file is None:  # !vma_is_shmem()
        yield UpRead(mm.mmap_lock)
        return EINVAL
    if not vma.shared:
        yield from anon_vma_prepare(k, vma)
    pmdp = mm.pmd_offset(addr, k.geo)  # mm_alloc_pmd(): the model's one PMD table
    if pmd_none((yield from k.ops.pmdp_get_lockless(k, pmdp))):
        yield from __pte_alloc(k, mm, pmdp)
    dst_pmdval = yield from k.ops.pmdp_get_lockless(k, pmdp)  # re-read after __pte_alloc()
    if pmd_none(dst_pmdval) or pmd_trans_huge(dst_pmdval):
        yield UpRead(mm.mmap_lock)
        return EEXIST
    ret = yield from mfill_atomic_pte(k, vma, pmdp, addr, mode, value)
    yield UpRead(mm.mmap_lock)
    return ret


def move_pages_pte(k, mm, dst_pmdp, src_pmdp, dst_vma, src_vma, dst_addr, src_addr, mode):
    """mm/userfaultfd.c: move_pages_ptes() (7.0; move_pages_pte() before 6.18) for one page,
    under mmap_lock for read, inside an mmu_notifier range over the source page.

    Map the destination table with pte_offset_map_rw_nolock(), keeping its PMD snapshot (it is
    rechecked under the ptls: dd95d2782a25), and the source table the same way (its snapshot
    unused: the pte_same() of a present source entry is its recheck); NULL is -EAGAIN.  Read the
    destination entry under its ptl (not none: -EEXIST) and the source entry under its ptl (none:
    -ENOENT, or moved with UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES).  For a present source page: under
    the source ptl check the entry again, take a reference on the folio (not an exclusive
    anonymous page: -EBUSY) and folio_trylock() it; if that fails, unmap both tables, sleep in
    folio_lock() and start over (the entry must then be the one the lock was taken for, else
    -EAGAIN).  Then move_present_ptes().  (7.0 takes no anon_vma lock here any more: anon rmap
    walkers hold the folio lock.  The model has no swap, migration or zero-page entries: a
    marker in the source is -EFAULT, as a non-swap entry that is not a migration entry.)
    Returns 1 (pages moved) or the error; -EAGAIN makes move_pages() call again."""
    return (yield from move_pages_pte_as(k, mm, dst_pmdp, src_pmdp, dst_vma, src_vma, dst_addr,
                                         src_addr, mode))


def move_pages_pte_as(k, mm, dst_pmdp, src_pmdp, dst_vma, src_vma, dst_addr, src_addr, mode,
                      dst_recheck=True):
    """move_pages_pte() with the destination's pmd_same() recheck under the ptls as a parameter
    (``dst_recheck`` False: 6.13 before dd95d2782a25, which PT reclaim (6.14) broke)."""
    yield from mmu_notifier_invalidate_range_start(k, mm, src_addr, src_addr + 1)
    src_folio = None
    src_folio_pte = None
    while True:  # retry:
        dst_pte, dst_pmdval, dst_ptl = yield from k.ops.pte_offset_map_rw_nolock(
            k, mm, dst_pmdp, dst_addr)
        src_pte = None
        if dst_pte is None:
            ret = EAGAIN  # a huge PMD materialized (or the table went)
            break
        src_pte, _, src_ptl = yield from k.ops.pte_offset_map_rw_nolock(
            k, mm, src_pmdp, src_addr)
        if src_pte is None:
            ret = EAGAIN
            break
        # the sanity checks before the operation: both PMDs still name tables
        dst_now = yield Load(dst_pmdp.table, dst_pmdp.idx)
        src_now = yield Load(src_pmdp.table, src_pmdp.idx)
        if pmd_none(dst_now) or pmd_none(src_now) or pmd_trans_huge(dst_now) or \
                pmd_trans_huge(src_now):
            ret = EINVAL
            break
        yield Lock(dst_ptl)
        orig_dst_pte = yield Load(dst_pte.table, dst_pte.idx)  # ptep_get()
        yield Unlock(dst_ptl)
        if not pte_none(orig_dst_pte):
            ret = EEXIST
            break
        yield Lock(src_ptl)
        orig_src_pte = yield Load(src_pte.table, src_pte.idx)
        yield Unlock(src_ptl)
        if pte_none(orig_src_pte):
            ret = 1 if mode & UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES else ENOENT
            break
        if src_folio is not None and src_folio_pte != orig_src_pte:
            ret = EAGAIN  # the entry changed while we slept for the folio lock
            break
        if not pte_present(orig_src_pte):
            ret = EFAULT  # a PTE marker: neither swap nor migration entry
            break
        if src_folio is None:
            yield Lock(src_ptl)
            if (yield Load(src_pte.table, src_pte.idx)) != orig_src_pte:
                yield Unlock(src_ptl)
                ret = EAGAIN
                break
            folio = orig_src_pte.folio  # vm_normal_folio()
            if not page_anon_exclusive(folio):
                yield Unlock(src_ptl)
                ret = EBUSY
                break
            locked = yield Trylock(folio.lock)
            folio_get(folio)
            src_folio, src_folio_pte = folio, orig_src_pte
            yield Unlock(src_ptl)
            if not locked:
                yield from k.ops.pte_unmap(k, src_pte)
                yield from k.ops.pte_unmap(k, dst_pte)
                yield Lock(src_folio.lock)  # now we can block and wait
                continue
        ret = yield from move_present_ptes(k, mm, dst_vma, src_vma, dst_addr, src_addr,
                                           dst_pte, src_pte, orig_dst_pte, orig_src_pte,
                                           dst_pmdp, dst_pmdval, dst_ptl, src_ptl, src_folio,
                                           dst_recheck)
        if ret == 1:
            yield Unlock(src_folio.lock)  # its reference went to the move
            src_folio = None
        break
    # out:
    if src_folio is not None:
        yield Unlock(src_folio.lock)
        folio_put(k, src_folio)
    if src_pte is not None:
        yield from k.ops.pte_unmap(k, src_pte)
    if dst_pte is not None:
        yield from k.ops.pte_unmap(k, dst_pte)
    yield from mmu_notifier_invalidate_range_end(k, mm, src_addr, src_addr + 1)
    return ret
