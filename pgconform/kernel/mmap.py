"""munmap(): mm/mmap.c (Linux 6.6) __vm_munmap() -> do_vmi_munmap() -> do_vmi_align_munmap() ->
unmap_region() -> unmap_vmas() + free_pgtables() -> free_pgd_range() (mm/memory.c).

The VMAs are detached from the mm under mmap_lock for write, which is then downgraded to read for
unmap_region(): faults, madvise, khugepaged and MADV_COLLAPSE (mmap_lock readers) can run alongside
it but no longer find the VMAs.  The page tables are then freed *without* the ptl or pmd_lock and
without an mmu_notifier range around the PMD clear (the free_pgtables() exception to the rule
that an unlinker holds the table's ptl, which pte_offset_map_lock() relies on).
What keeps lockless walkers off those tables is that each VMA is taken out of its
file's i_mmap (unlink_file_vma(), under i_mmap_rwsem for write) before any table below it is freed:
retract_page_tables() and the rmap walkers find VMAs through i_mmap under i_mmap_rwsem for read,
and everything else finds them through the mm under mmap_lock.

exit_mmap() (mmput() -> __mmput(), kernel/fork.c and mm/mmap.c, 6.6) tears a whole mm down the
same way, except that its VMAs are never detached: nobody can reach the mm any more (mm_users is 0,
so mmget_not_zero() fails, and khugepaged checks hpage_collapse_test_exit()), only its file VMAs
must leave i_mmap before their tables go.

VMAs have a lifecycle here: remove_vma() -> vm_area_free() frees the object, after which any read
or write of one of its fields is a "vma.use-after-free" (the object changes class, so a live VMA
costs nothing), and freeing one that a walker can still find is "vma.free-linked".

Model restrictions: munmap takes whole VMAs only (a range that covers part of a VMA returns
EINVAL instead of splitting it); there is one PMD table per mm, which is never freed
(free_pmd_range's PUD-level floor/ceiling test); unlink_anon_vmas() and the per-VMA lock are not
modelled (no walker of the model finds VMAs through an anon_vma); __mmput() takes
khugepaged_exit()'s mmap_write_lock()/unlock() pair unconditionally, before exit_mmap() (the case
where khugepaged is scanning the mm; otherwise the pair is free anyway).
"""

from __future__ import annotations

import weakref

import attrs

from pgconform.kernel.memory import UNMAP_DETAILS, zap_page_range_single
from pgconform.kernel.mmu_gather import pte_free_tlb, tlb_finish_mmu, tlb_gather_mmu
from pgconform.kernel.mmu_notifier import mmu_notifier_release
from pgconform.kernel.objects import TablePmd, Vma
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.kernel.pgtable import pmd_clear
from pgconform.sim.effects import (
    Atomic,
    DowngradeWrite,
    DownRead,
    DownWrite,
    Effect,
    Load,
    Lock,
    Unlock,
    UpRead,
    UpWrite,
)

EINVAL = -22
ESRCH = -3


# ------------------------------------------------------------------------------------------------
# the VMAs


def _detach(m, t, mm, vmas):
    """vma_iter_clear_gfp() of each VMA in the range: find_vma() no longer returns them."""
    for vma in vmas:
        mm.vmas.remove(vma)


def _unlink_file(m, t, vma):
    """__remove_shared_vm_struct(): the VMA leaves its file's i_mmap tree."""
    vma.file.i_mmap.remove(vma)


def unlink_file_vma(k, vma):
    """mm/mmap.c: unlink_file_vma() (6.6): under i_mmap_lock_write(), take the VMA out of i_mmap,
    so rmap walkers and retract_page_tables() (i_mmap_rwsem readers) cannot find it any more; the
    write lock waits for those that found it already.  An anonymous VMA has no file: nothing."""
    f = vma.file
    if f is None:
        return
    yield DownWrite(f.i_mmap_rwsem)
    if k.arch.vivt_cache:  # __remove_shared_vm_struct(): flush_dcache_mmap_lock() on arm
        yield Lock(f.i_pages_lock)
    yield Atomic(f"__remove_shared_vm_struct({vma!r})", _unlink_file, (vma,), touches=(f,))
    if k.arch.vivt_cache:
        yield Unlock(f.i_pages_lock)
    yield UpWrite(f.i_mmap_rwsem)


#: freed VMAs -> (the world's hooks, machine, the task that freed it), for the use-after-free
#: event
_FREED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FreedVma(Vma):
    """A vm_area_struct after vm_area_free() (kernel/fork.c, 6.6): its memory went back to the
    slab, so a walker reading or writing any field of it is a use-after-free.  Only the name (for
    traces) stays readable."""

    __slots__ = ()

    def __getattribute__(self, name):
        if name == "name" or name.startswith("__"):
            return object.__getattribute__(self, name)
        _vma_use_after_free(self, f"read of ->{name}")

    def __setattr__(self, name, value):
        _vma_use_after_free(self, f"write of ->{name}")


def _vma_use_after_free(vma, what):
    hooks, m, freer = _FREED[vma]
    hooks.vma_use_after_free(m, m.current, vma, what, freer)


def vm_area_free(k, m, t, vma) -> None:
    """kernel/fork.c: vm_area_free() (6.6): the VMA object is freed.  A walker must not be able to
    find it any more (announced: vma.free-linked); from now on touching it is a use-after-free."""
    k.hooks.vma_free(m, t, vma)
    _FREED[vma] = (k.hooks, m, t.name)
    vma.__class__ = FreedVma


def _remove_vmas(m, t, k, mm, vmas):
    """remove_vma(): the VMAs are freed.  No address of theirs maps anything any more (zapped):
    the private content of their anonymous pages is gone with them."""
    for vma in vmas:
        for addr in range(vma.start, vma.end):
            k.hooks.anon_dropped(mm, addr)
    for vma in vmas:
        vm_area_free(k, m, t, vma)


# ------------------------------------------------------------------------------------------------
# freeing page tables


def free_pte_range(k, tlb, pmdp, addr):
    """mm/memory.c: free_pte_range() (6.6): token = pmd_pgtable(*pmd); pmd_clear() (no pmd_lock,
    no ptl: the VMA is gone, nothing may walk here); pte_free_tlb(); mm_dec_nr_ptes()."""
    pmdval = yield Load(pmdp.table, pmdp.idx)
    token = k.pmd_pgtable(pmdval)
    yield from pmd_clear(k, pmdp)
    yield from pte_free_tlb(k, tlb, token, addr)
    yield from mm_dec_nr_ptes(k, tlb.mm)


def free_pgd_range(k, tlb, addr, end, floor, ceiling):
    """mm/memory.c: free_pgd_range() (6.6) down to free_pmd_range() for the model's one PMD table.

    ``floor`` is the end of the VMA below (0: none), ``ceiling`` the start of the VMA above (None:
    USER_PGTABLES_CEILING, the top).  A PMD range shared with either is left alone: round ``addr``
    down to a PMD boundary and skip its PMD if it lies below ``floor``; drop the last PMD if the
    PMD-aligned ``ceiling`` lies below ``end``.  Every PMD left pointing at a table has it freed
    (pmd_none_or_clear_bad(): a none entry is skipped)."""
    geo = k.geo
    size = geo.ptrs_per_pte
    mm = tlb.mm
    addr -= addr % size
    if addr < floor:
        addr += size
    if ceiling is not None:
        ceiling -= ceiling % size
        if not ceiling:
            return
        if end - 1 > ceiling - 1:
            end -= size
    if addr > end - 1:
        return
    while addr < end:
        pmdp = mm.pmd_offset(addr, geo)
        pmdval = yield Load(pmdp.table, pmdp.idx)
        # pmd_none_or_clear_bad(): a huge PMD cannot be here (zapped under the same mmap_lock, and
        # nothing can map one without the VMA); the model leaves anything but a table alone
        if type(pmdval) is TablePmd:
            yield from free_pte_range(k, tlb, pmdp, addr)
        addr += size


def free_pgtables(k, tlb, vmas, floor, ceiling):
    """mm/memory.c: free_pgtables() (6.6): for each detached VMA (runs of VMAs less than a PMD
    apart are gathered into one call), unlink_anon_vmas() and unlink_file_vma() *first*, then
    free_pgd_range() between ``floor`` and the next VMA's start (``ceiling`` after the last)."""
    size = k.geo.ptrs_per_pte
    i = 0
    while i < len(vmas):
        vma = vmas[i]
        addr = vma.start
        yield from unlink_file_vma(k, vma)
        while i + 1 < len(vmas) and vmas[i + 1].start <= vma.end + size:
            i += 1
            vma = vmas[i]
            yield from unlink_file_vma(k, vma)
        nxt = vmas[i + 1] if i + 1 < len(vmas) else None
        yield from free_pgd_range(k, tlb, addr, vma.end, floor,
                                  nxt.start if nxt is not None else ceiling)
        i += 1


def unmap_vmas(k, tlb, vmas, start, end):
    """mm/memory.c: unmap_vmas() (6.6): zap every VMA's part of [start, end) inside an mmu_notifier
    invalidate range, with ZAP_FLAG_DROP_MARKER and even_cows (uffd-wp and poison markers go
    too).  The model reuses zap_page_range_single(), which brackets each VMA with its own notifier
    range and drops the folio references itself rather than through ``tlb``."""
    for vma in vmas:
        yield from zap_page_range_single(k, vma, max(start, vma.start), min(end, vma.end),
                                         UNMAP_DETAILS)


def unmap_region(k, mm, vmas, prev, nxt, start, end):
    """mm/mmap.c: unmap_region() (6.6): tlb_gather_mmu(), unmap_vmas(), free_pgtables() between
    the previous VMA's end and the next one's start, tlb_finish_mmu()."""
    tlb = yield from tlb_gather_mmu(k, mm)
    yield from unmap_vmas(k, tlb, vmas, start, end)
    yield from free_pgtables(k, tlb, vmas, prev.end if prev is not None else 0,
                             nxt.start if nxt is not None else None)
    yield from tlb_finish_mmu(k, tlb)


def do_vmi_align_munmap(k, mm, vmas, start, end, unlock=True):
    """mm/mmap.c: do_vmi_align_munmap() (6.6): detach the VMAs from the mm (under mmap_lock for
    write), with ``unlock`` mmap_write_downgrade(), unmap_region(), remove_vma(), and with
    ``unlock`` mmap_read_unlock() (without it, as move_vma() calls it, mmap_lock stays held for
    write throughout and on return).  Returns 0."""
    prev = max((v for v in mm.vmas if v.end <= start), key=lambda v: v.end, default=None)
    nxt = min((v for v in mm.vmas if v.start >= end), key=lambda v: v.start, default=None)
    yield Atomic(f"vma_iter_clear({', '.join(map(repr, vmas))})", _detach, (mm, vmas),
                 touches=(mm,))
    if unlock:
        yield DowngradeWrite(mm.mmap_lock)
    yield from unmap_region(k, mm, vmas, prev, nxt, start, end)
    yield Atomic(f"remove_vma({', '.join(map(repr, vmas))})", _remove_vmas, (k, mm, vmas),
                 touches=(mm,))
    if unlock:
        yield UpRead(mm.mmap_lock)
    return 0


def vm_munmap(k, mm, start, end):
    """mm/mmap.c: __vm_munmap() (6.6) (unlock = true) -> do_vmi_munmap(): mmap_write_lock, the
    VMAs overlapping [start, end) (none: 0), do_vmi_align_munmap().  The model does not split VMAs:
    a range that covers only part of one is EINVAL here."""
    yield DownWrite(mm.mmap_lock)
    vmas = sorted((v for v in mm.vmas if v.start < end and start < v.end), key=lambda v: v.start)
    if not vmas or any(v.start < start or end < v.end for v in vmas):
        yield UpWrite(mm.mmap_lock)
        return EINVAL if vmas else 0
    return (yield from do_vmi_align_munmap(k, mm, vmas, start, end))


def do_vmi_munmap(k, mm, start, end, unlock):
    """mm/mmap.c: do_vmi_munmap() (6.6) under mmap_lock for write: the VMAs overlapping
    [start, end) (none: 0), then do_vmi_align_munmap().  Whole VMAs only (EINVAL otherwise, the
    model does not split); with ``unlock`` false mmap_lock stays held for write."""
    vmas = sorted((v for v in mm.vmas if v.start < end and start < v.end), key=lambda v: v.start)
    if not vmas or any(v.start < start or end < v.end for v in vmas):
        return EINVAL if vmas else 0
    return (yield from do_vmi_align_munmap(k, mm, vmas, start, end, unlock=unlock))


# ------------------------------------------------------------------------------------------------
# exit


def _drop_users(m, t, mm):
    if mm.users <= 0:
        return -1  # the process exited already (a second exit of it in the model): no reference
    mm.users -= 1
    return mm.users


def _destroy(m, t, k, mm):
    """exit_mmap()'s last loop: remove_vma() of every VMA (still in the VMA tree: nobody can walk
    it), then __mt_destroy() empties the tree."""
    vmas = sorted(mm.vmas, key=lambda v: v.start)
    for vma in vmas:
        for addr in range(vma.start, vma.end):
            k.hooks.anon_dropped(mm, addr)
    for vma in vmas:
        vm_area_free(k, m, t, vma)
    mm.vmas.clear()


def exit_mmap(k, mm):
    """mm/mmap.c: exit_mmap() (6.6).  mm_users is already 0.  Under mmap_read_lock: unmap_vmas()
    of every VMA (a full-mm gather); then, under mmap_write_lock, free_pgtables() between
    FIRST_USER_ADDRESS and USER_PGTABLES_CEILING (each file VMA leaves i_mmap first, under
    i_mmap_rwsem for write), tlb_finish_mmu(), remove_vma() of each VMA, __mt_destroy().
    First of all mmu_notifier_release(): secondary MMUs drop everything they map of the mm."""
    yield from mmu_notifier_release(k, mm)
    yield DownRead(mm.mmap_lock)
    vmas = sorted(mm.vmas, key=lambda v: v.start)
    if not vmas:
        yield UpRead(mm.mmap_lock)
        yield DownWrite(mm.mmap_lock)
        yield UpWrite(mm.mmap_lock)
        return 0
    tlb = yield from tlb_gather_mmu(k, mm)  # tlb_gather_mmu_fullmm()
    yield from unmap_vmas(k, tlb, vmas, 0, k.geo.task_size)
    yield UpRead(mm.mmap_lock)
    yield DownWrite(mm.mmap_lock)
    yield from free_pgtables(k, tlb, vmas, 0, None)
    yield from tlb_finish_mmu(k, tlb)
    yield Atomic(f"remove_vma() x{len(vmas)} + __mt_destroy({mm!r})", _destroy, (k, mm),
                 touches=(mm,))
    yield UpWrite(mm.mmap_lock)
    return 0


def khugepaged_exit(k, mm):
    """mm/khugepaged.c: __khugepaged_exit() (6.6), the case where khugepaged is working on this
    mm: mmap_write_lock() and unlock, to wait until it has left the mmap_lock read section in which
    it checked hpage_collapse_test_exit() (after this, exit_mmap() frees the page tables)."""
    yield DownWrite(mm.mmap_lock)
    yield UpWrite(mm.mmap_lock)


def _get_not_zero(m, t, mm):
    if mm.users <= 0:
        return False
    mm.users += 1
    return True


def mmget_not_zero(k, mm):
    """include/linux/sched/mm.h: mmget_not_zero() (6.6): take an mm_users reference unless the
    mm's last user is gone (exit_mmap() may be tearing it down).  What a walker of another
    process's mm (a device driver, /proc) does first; it ends with mmput()."""
    return (yield Atomic(f"mmget_not_zero({mm!r})", _get_not_zero, (mm,), touches=(mm,)))


def mmput(k, mm):
    """kernel/fork.c: mmput() (6.6): drop mm_users; the last user runs __mmput()."""
    users = yield Atomic(f"atomic_dec_and_test(&{mm!r}->mm_users)", _drop_users, (mm,),
                         touches=(mm,))
    if users < 0:
        return ESRCH
    if users:
        return 0
    return (yield from __mmput(k, mm))


def __mmput(k, mm):
    """kernel/fork.c: __mmput() (6.6): khugepaged_exit(), then exit_mmap()."""
    yield from khugepaged_exit(k, mm)
    return (yield from exit_mmap(k, mm))


@attrs.frozen(slots=True)
class ExitMm(Effect):
    """exit_mm() -> mmput()'s atomic_dec_and_test(&mm->mm_users) by the last thread: mm_users
    counts the threads of the process, so it reaches 0 only after every other thread has left
    its system call.  The effect waits until no other task runs in ``mm`` (Task.mm), other exits
    of it aside, and drops mm_users in the same step (so no new operation of the process can
    start in between).  Returns what _drop_users() returns."""

    mm: object
    preempt_point = True
    shows_result = True

    def blocked(self, m, t):
        others = tuple(o for o in m.tasks if o is not t and not o.done and o.mm is self.mm
                       and type(o.pending) is not ExitMm)
        return others or None

    def execute(self, m, t):
        mm = self.mm
        if mm.exited:
            return -1  # a second exit of the process in the model: it has no reference left
        mm.exited = True
        return _drop_users(m, t, mm)

    def objects(self):
        return (self.mm,)

    def __str__(self):
        return f"exit_mm({self.mm!r}): mmput() of the last thread"


def do_exit(k, mm):
    """kernel/exit.c: do_exit() -> exit_mm() -> mmput() (6.6) of the last thread of the process
    running ``mm``, once the other threads are gone.  Returns 0, or -ESRCH if the process had
    already exited."""
    users = yield ExitMm(mm)
    if users < 0:
        return ESRCH
    if users:
        return 0
    return (yield from __mmput(k, mm))
