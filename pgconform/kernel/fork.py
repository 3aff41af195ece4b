"""fork(): kernel/fork.c copy_mm() -> dup_mm() -> dup_mmap() and mm/memory.c copy_page_range()
(Linux 6.6).

dup_mmap() holds the parent's mmap_lock for write.  For each VMA it makes a copy in the new mm,
links a file VMA into i_mmap right after the parent's (under i_mmap_rwsem for write, so
retract_page_tables() and rmap walkers can find the child's VMA from then on), then copies page
tables only where vma_needs_copy(): the source has an anon_vma (or the destination is uffd-wp,
or PFNMAP/MIXEDMAP, which the model has not); everything else the child faults in later.  That
set is disjoint from what retract_page_tables() removes (no anon_vma, no uffd-wp), as a 6.6
comment in copy_pte_range() (mm/memory.c) relies on.

copy_pte_range(): the child's table by pte_alloc_map_lock(), the parent's by
pte_offset_map_nolock() + spin_lock_nested() (no pmd_same(): the parent's mmap_lock and the
anon_vma keep it stable); a NULL source map stops copying (the child faults).  Anonymous pages
become shared COW: both PTEs write-protected, one more map and reference, and the child's copy of
the private content (announced: kernel/hooks.py ``anon_written``) equal to the parent's.

Model restrictions: the child's mmap_lock is not taken (mmap_write_lock_nested()): the child mm
enters ``k.mms`` only when fork returns, so nothing but i_mmap walkers can reach it meanwhile, as
in the kernel; no UFFD_FEATURE_EVENT_FORK (the child's VMAs lose userfaultfd registration,
dup_userfaultfd()); no pinned pages (folio_try_dup_anon_rmap() never fails); huge file PMDs are
not copied (copy_huge_pmd() leaves file THPs to the child's faults).
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.memory import mapped_pte
from pgconform.kernel.mmap import mmput
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import (
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    PteMarker,
    Vma,
    pmd_none,
    pmd_trans_huge,
    pte_none,
    pte_present,
)
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.pgtable import pte_map_rw_as
from pgconform.sim.effects import Atomic, DownWrite, IpiSync, Load, Lock, Store, Unlock, UpWrite

ENOMEM = -12


def vma_needs_copy(dst_vma, src_vma) -> bool:
    """mm/memory.c: vma_needs_copy() (6.6): copy page tables at fork only if the child could not
    fault the same content back: uffd-wp on the child (its markers), PFNMAP/MIXEDMAP (not
    modelled), or an anon_vma on the parent (private COW pages)."""
    if VM_UFFD_WP in dst_vma.flags:
        return True
    return src_vma.anon_vma is not None


def is_cow_mapping(vma) -> bool:
    """include/linux/mm.h: is_cow_mapping() (6.6): private and may be written."""
    return not vma.shared


def copy_pte_marker(ent, dst_vma):
    """mm/memory.c: copy_pte_marker() (6.6): a poison marker is copied; a uffd-wp marker only
    into a uffd-wp VMA."""
    if ent.kind == "UFFD_WP" and VM_UFFD_WP not in dst_vma.flags:
        return None
    return ent


def copy_pte_range(k, dst_vma, src_vma, dst_pmd, src_pmd, addr, end):
    """mm/memory.c: copy_pte_range() (6.6).  Returns 0 or -ENOMEM (the child's table could not be
    mapped)."""
    dst_mm, src_mm = dst_vma.mm, src_vma.mm
    yield from pte_alloc(k, dst_mm, dst_pmd)  # pte_alloc_map_lock()
    dst_pte, dst_ptl = yield from k.ops.pte_offset_map_lock(k, dst_mm, dst_pmd, addr)
    if dst_pte is None:
        return ENOMEM
    # 6.13+: pte_offset_map_rw_nolock(), no recheck: the parent's mmap_lock for write, and
    # retract_page_tables() leaving alone a VMA with an anon_vma (which COW needs) keep it linked
    src_pte, _, src_ptl = yield from pte_map_rw_as(k, src_mm, src_pmd, addr)
    if src_pte is None:
        yield from k.ops.pte_unmap_unlock(k, dst_pte, dst_ptl)
        return 0  # the child faults it in later
    yield Lock(src_ptl, 1)  # spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING)
    for i in range(end - addr):
        sptep, dptep = src_pte + i, dst_pte + i
        ent = yield Load(sptep.table, sptep.idx)
        if pte_none(ent):
            continue
        if not pte_present(ent):  # copy_nonpresent_pte(): markers
            if type(ent) is PteMarker:
                ent = copy_pte_marker(ent, dst_vma)
                if ent is not None:
                    yield Store(dptep.table, dptep.idx, ent)
            continue
        # copy_present_pte()
        folio = ent.folio
        if is_cow_mapping(src_vma) and ent.write:
            # ptep_set_wrprotect(): the parent's mapping becomes read-only too
            ent = attrs.evolve(ent, write=False)
            yield Store(sptep.table, sptep.idx, ent)
            if k.arch.debug_vm:  # pte_update()
                yield from assert_pte_locked(k, src_mm, addr + i)
        child = attrs.evolve(ent, young=False)  # pte_mkold()
        if getattr(child, "uffd_wp", False) and VM_UFFD_WP not in dst_vma.flags:
            child = attrs.evolve(child, uffd_wp=False)  # pte_clear_uffd_wp()
        folio.refcount += 1  # folio_get() + folio_dup_file_rmap / folio_try_dup_anon_rmap
        yield Store(dptep.table, dptep.idx, child)  # set_pte_at()
        mapped_pte(k, dst_mm, addr + i, folio, ent.idx)  # rss[] of the child, mapcount
    yield Unlock(src_ptl)
    yield from k.ops.pte_unmap(k, src_pte)
    yield from k.ops.pte_unmap_unlock(k, dst_pte, dst_ptl)
    return 0


def copy_page_range(k, dst_vma, src_vma):
    """mm/memory.c: copy_page_range() (6.6): nothing unless vma_needs_copy(); for a COW mapping
    inside an MMU_NOTIFY_PROTECTION_PAGE range on the parent (its PTEs get write-protected);
    copy_pmd_range(): a huge file PMD is left to the child's faults (copy_huge_pmd()), a none PMD
    skipped, a table copied by copy_pte_range()."""
    if not vma_needs_copy(dst_vma, src_vma):
        return 0
    geo = k.geo
    src_mm = src_vma.mm
    start, end = src_vma.start, src_vma.end
    cow = is_cow_mapping(src_vma)
    if cow:
        yield from mmu_notifier_invalidate_range_start(k, src_mm, start, end)
    ret = 0
    addr = start
    while addr < end:
        nxt = min(end, geo.haddr(addr) + geo.ptrs_per_pte)
        src_pmd = src_mm.pmd_offset(addr, geo)
        dst_pmd = dst_vma.mm.pmd_offset(addr, geo)
        pmdv = yield Load(src_pmd.table, src_pmd.idx)
        if not pmd_trans_huge(pmdv) and not pmd_none(pmdv):
            ret = yield from copy_pte_range(k, dst_vma, src_vma, dst_pmd, src_pmd, addr, nxt)
            if ret:
                break
        addr = nxt
    if cow:
        yield from mmu_notifier_invalidate_range_end(k, src_mm, start, end)
    return ret


# ------------------------------------------------------------------------------------------------
# dup_mmap


def _mm_alloc(m, t, k, oldmm):
    """mm_alloc() + mm_init(): a new mm (mm_users 1), not yet reachable by anyone."""
    n = getattr(k, "nr_forked", 0) + 1
    k.nr_forked = n
    mm = k.new_mm(f"{oldmm.name}.child{n}")
    k.mms.remove(mm)  # it becomes visible to the model's operations when fork returns
    return mm


def _vm_area_dup(m, t, k, mpnt, mm):
    """vm_area_dup() + anon_vma_fork() + dup_userfaultfd() (no EVENT_FORK): the child's VMA."""
    flags = mpnt.flags - {VM_UFFD_MISSING, VM_UFFD_WP, VM_UFFD_MINOR}
    anon_vma = k.new_anon_vma() if mpnt.anon_vma is not None else None
    return Vma(f"{mm.name}.vma[{mpnt.start}:{mpnt.end}]", mm, mpnt.start, mpnt.end, mpnt.pgoff,
               mpnt.file, flags, anon_vma)


def _link_file(m, t, tmp, mpnt):
    """vma_interval_tree_insert_after(tmp, mpnt, &mapping->i_mmap)."""
    i_mmap = tmp.file.i_mmap
    i_mmap.insert(i_mmap.index(mpnt) + 1 if mpnt in i_mmap else len(i_mmap), tmp)


def _store_vma(m, t, mm, tmp):
    """vma_iter_bulk_store(): the child's VMA tree."""
    mm.vmas.append(tmp)


def _publish(m, t, k, mm):
    """wake_up_new_task(): the child runs; the model's operations can pick its mm."""
    k.mms.append(mm)


def dup_mmap(k, mm, oldmm):
    """kernel/fork.c: dup_mmap() (6.6): under mmap_write_lock(oldmm), for each VMA: vm_area_dup(),
    anon_vma_fork(), link a file VMA into i_mmap after its parent (i_mmap_lock_write()), store it
    in the child's tree, copy_page_range(); then flush_tlb_mm(oldmm) (the parent's PTEs may have
    been write-protected) and mmap_write_unlock(oldmm).  Returns 0 or -ENOMEM."""
    yield DownWrite(oldmm.mmap_lock)
    retval = 0
    for mpnt in sorted(oldmm.vmas, key=lambda v: v.start):
        tmp = yield Atomic(f"vm_area_dup({mpnt!r}) for {mm!r}", _vm_area_dup, (k, mpnt, mm))
        f = tmp.file
        if f is not None:  # an anonymous VMA is in no i_mmap
            yield DownWrite(f.i_mmap_rwsem)
            yield Atomic(f"vma_interval_tree_insert_after({tmp!r}, {mpnt!r})", _link_file,
                         (tmp, mpnt), touches=(f,))
            yield UpWrite(f.i_mmap_rwsem)
        yield Atomic(f"vma_iter_bulk_store({mm!r}, {tmp!r})", _store_vma, (mm, tmp),
                     touches=(mm,))
        retval = yield from copy_page_range(k, tmp, mpnt)
        if retval:
            break
    if k.arch.tlb_flush_ipi:
        yield IpiSync(oldmm, f"flush_tlb_mm({oldmm!r})  [IPI mm_cpumask, wait]")
    yield UpWrite(oldmm.mmap_lock)
    return retval


def do_fork(k, oldmm):
    """kernel/fork.c: copy_process() -> copy_mm() -> dup_mm() (6.6) for a fork() of a process
    running ``oldmm``: mm_alloc(), dup_mmap(); on failure mmput() the child mm (exit_mmap()).
    Returns the child mm's index in ``k.mms``, or -ENOMEM."""
    mm = yield Atomic(f"dup_mm({oldmm!r}): mm_alloc()", _mm_alloc, (k, oldmm))
    retval = yield from dup_mmap(k, mm, oldmm)
    yield Atomic(f"wake_up_new_task({mm.name})", _publish, (k, mm), touches=(mm,))
    if retval:
        yield from mmput(k, mm)
        return retval
    return k.mms.index(mm)
