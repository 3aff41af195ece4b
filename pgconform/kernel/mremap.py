"""mremap(): mm/mremap.c (Linux 6.6) for the move of a whole VMA to a free range of the same mm
(MREMAP_MAYMOVE | MREMAP_FIXED, old_len == new_len): mremap_to() -> move_vma() -> copy_vma(),
move_page_tables(), then do_vmi_munmap() of the old VMA, all under mmap_lock for write.

How the page tables move (mm/mremap.c move_page_tables(), move_pgt_entry(), 6.6):

* move_normal_pmd() (a PMD-sized, PMD-aligned extent on an arch with CONFIG_HAVE_MOVE_PMD) moves
  the whole PTE table from the old PMD slot to the new one under both pmd locks, *without* the
  table's ptl.  Since 5.14 (97113eb39fa7) move_page_tables() always takes the rmap locks for it
  (i_mmap_rwsem for write, take_rmap_locks()), whatever need_rmap_locks says: that is what keeps
  retract_page_tables() and the rmap walkers (i_mmap_rwsem readers) away from the table while it
  moves.  The rmap locks are taken "only if need_rmap_locks" for move_ptes(): that holds
  for move_ptes(), not for move_normal_pmd().
* move_ptes() otherwise: the old table under pte_offset_map_lock(), the new one through
  pte_offset_map_nolock() + spin_lock_nested() (the new table is stable: mmap_lock is held for
  write and the new VMA's range was empty); a NULL map is -EAGAIN and move_page_tables() retries
  the pmd.  need_rmap_locks is false for a freshly linked VMA: rmap walkers meet the old VMA
  before the new one in i_mmap (the new one is inserted after it), so they see every PTE in one
  place or the other.

**CVE-2024-50066** (6fa1066fc5d0 "mm/mremap: fix move_normal_pmd/retract_page_tables race",
Jann Horn, 6.12 and stable; Fixes: 1d65b771bc08, patch 09 of the series).  In 6.6.0
move_page_tables() looks at ``*old_pmd`` before move_pgt_entry() takes the rmap locks, and
move_normal_pmd() then moves whatever the slot holds: retract_page_tables() (which needs only
i_mmap_rwsem for read since patch 09) can clear the PMD in that window, and pmd_populate() links
``pmd_pgtable()`` of a none PMD into the new slot.  The fix rechecks, under the pmd lock, that the
entry is still a present non-leaf table.  move_normal_pmd() is in the implementation table (its
reference, with the fix, is pgconform/reference/mremap.py); ``zoo.move_normal_pmd_no_recheck`` is
6.6.0's, caught as "pt.populate-dead" (tests/selftest/test_actors_vm.py).

Model restrictions: whole VMAs only, moved to a free range chosen under the lock (no expand,
shrink, in-place resize, DONTUNMAP, or vma_merge() with a neighbour); the anon_vma lock of
take_rmap_locks() and the per-VMA lock are not modelled; no try_realign_addr() (6.7+); uffd
contexts have no UFFD_FEATURE_EVENT_REMAP, so the new VMA loses its userfaultfd registration
(mremap_userfaultfd_prep()).
"""

from __future__ import annotations

from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.memory import __split_huge_pmd
from pgconform.kernel.mmap import do_vmi_munmap
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.objects import (
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    TablePmd,
    Vma,
    pmd_none,
    pmd_trans_huge,
    pte_none,
    pte_present,
    table_pmd,
)
from pgconform.kernel.pgalloc import pgtable_table, pte_alloc
from pgconform.kernel.pgtable import pte_map_rw_as, set_pmd
from pgconform.kernel.tlbflush import flush_tlb_range
from pgconform.sim.effects import Atomic, DownWrite, Load, Lock, Store, Unlock, UpWrite

EFAULT, EINVAL, ENOMEM, EAGAIN = -14, -22, -12, -11

def have_move_pmd(arch) -> bool:
    """CONFIG_HAVE_MOVE_PMD (6.6): selected by x86 (32- and 64-bit), arm64, riscv and powerpc
    (book3s64, where arch_supports_page_table_move() is radix_enabled(); the model's powerpc64 is
    radix); not by s390, sparc64 or 32-bit arm: the arch record's ``move_pmd``."""
    return arch.move_pmd


# ------------------------------------------------------------------------------------------------
# rmap locks


def take_rmap_locks(k, vma):
    """mm/mremap.c: take_rmap_locks() (6.6): i_mmap_lock_write() of the file, if any (and the
    anon_vma's lock, not modelled)."""
    if vma.file is not None:
        yield DownWrite(vma.file.i_mmap_rwsem)


def drop_rmap_locks(k, vma):
    """mm/mremap.c: drop_rmap_locks() (6.6)."""
    if vma.file is not None:
        yield UpWrite(vma.file.i_mmap_rwsem)


# ------------------------------------------------------------------------------------------------
# moving PTEs


def _move_anon_shadow(k, mm, old_addr, new_addr, ent):
    """The private content of an anonymous page follows its PTE to the new address."""
    if pte_present(ent) and ent.folio.anon:
        k.hooks.anon_moved(mm, old_addr, mm, new_addr)


def move_ptes(k, vma, old_pmd, old_addr, old_end, new_vma, new_pmd, new_addr, need_rmap_locks):
    """mm/mremap.c: move_ptes() (6.6): the old table by pte_offset_map_lock(), the new one by
    pte_offset_map_nolock() and spin_lock_nested() if its ptl differs; each entry is cleared in
    the old table and set in the new one; a TLB flush of the old range if a present entry moved,
    before the locks are dropped.  Returns 0, or -EAGAIN if either table could not be mapped."""
    mm = vma.mm
    err = 0
    if need_rmap_locks:
        yield from take_rmap_locks(k, vma)
    old_pte, old_ptl = yield from k.ops.pte_offset_map_lock(k, mm, old_pmd, old_addr)
    if old_pte is None:
        err = EAGAIN
    else:
        # 6.13+: pte_offset_map_rw_nolock(), no recheck (mmap_lock for write; the new table
        # has no entries for retract_page_tables() to find)
        new_pte, _, new_ptl = yield from pte_map_rw_as(k, mm, new_pmd, new_addr)
        if new_pte is None:
            yield from k.ops.pte_unmap_unlock(k, old_pte, old_ptl)
            err = EAGAIN
        else:
            if new_ptl is not old_ptl:
                yield Lock(new_ptl, 1)  # spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING)
            force_flush = False
            for i in range(old_end - old_addr):
                optep, nptep = old_pte + i, new_pte + i
                ent = yield Load(optep.table, optep.idx)
                if pte_none(ent):
                    continue
                yield Store(optep.table, optep.idx, None)  # ptep_get_and_clear()
                if k.arch.debug_vm:  # pte_update()
                    yield from assert_pte_locked(k, mm, old_addr + i)
                if pte_present(ent):
                    force_flush = True
                yield Store(nptep.table, nptep.idx, ent)  # set_pte_at()
                _move_anon_shadow(k, mm, old_addr + i, new_addr + i, ent)
            if force_flush:
                yield from flush_tlb_range(k, vma, old_addr, old_end)
            if new_ptl is not old_ptl:
                yield Unlock(new_ptl)
            yield from k.ops.pte_unmap(k, new_pte)
            yield from k.ops.pte_unmap_unlock(k, old_pte, old_ptl)
    if need_rmap_locks:
        yield from drop_rmap_locks(k, vma)
    return err


# ------------------------------------------------------------------------------------------------
# moving whole entries


def _pmd_populate_moved(m, t, k, new_pmd, pmdval):
    """pmd_populate(mm, new_pmd, pmd_pgtable(pmd)) with the value read from the old slot: anything
    but a table (a none PMD retract_page_tables() left) makes pmd_pgtable() garbage (frame 0)."""
    if type(pmdval) is not TablePmd:
        k.hooks.pmd_moved_not_table(m, t, new_pmd, pmdval)
    return table_pmd(pgtable_table(k, k.pmd_pgtable(pmdval)))


def move_huge_pmd(k, vma, old_addr, new_addr, old_pmd, new_pmd):
    """mm/huge_memory.c: move_huge_pmd() (6.6) for a file THP: if the new slot is none, under
    __pmd_trans_huge_lock() of the old pmd (and the new pmd lock nested), move the huge entry and
    flush the old range.  Returns whether it moved."""
    mm = vma.mm
    if not pmd_none((yield Load(new_pmd.table, new_pmd.idx))):
        return False
    old_ptl = yield from k.ops.pmd_lock(k, mm, old_pmd)
    pmd = yield Load(old_pmd.table, old_pmd.idx)
    if not pmd_trans_huge(pmd):
        yield Unlock(old_ptl)
        return False
    new_ptl = yield from k.ops.pmd_lockptr(k, mm, new_pmd)
    if new_ptl is not old_ptl:
        yield Lock(new_ptl, 1)
    yield from set_pmd(k, old_pmd, None)  # pmdp_huge_get_and_clear()
    yield from set_pmd(k, new_pmd, pmd)  # set_pmd_at()
    yield from flush_tlb_range(k, vma, old_addr, old_addr + k.geo.hpage_pmd_nr)
    if new_ptl is not old_ptl:
        yield Unlock(new_ptl)
    yield Unlock(old_ptl)
    return True


NORMAL_PMD, HPAGE_PMD = "NORMAL_PMD", "HPAGE_PMD"


def move_pgt_entry(k, entry, vma, old_addr, new_addr, old_pmd, new_pmd, need_rmap_locks):
    """mm/mremap.c: move_pgt_entry() (6.6): the rmap locks if asked (move_page_tables() asks
    always for NORMAL_PMD), then move_normal_pmd() or move_huge_pmd()."""
    if need_rmap_locks:
        yield from take_rmap_locks(k, vma)
    if entry == NORMAL_PMD:
        moved = yield from k.ops.move_normal_pmd(k, vma, old_addr, new_addr, old_pmd, new_pmd)
    else:
        moved = yield from move_huge_pmd(k, vma, old_addr, new_addr, old_pmd, new_pmd)
    if need_rmap_locks:
        yield from drop_rmap_locks(k, vma)
    return moved


def get_extent(k, old_addr, old_end, new_addr):
    """mm/mremap.c: get_extent(NORMAL_PMD) (6.6): up to the next PMD boundary of either range."""
    size = k.geo.ptrs_per_pte
    extent = min(k.geo.haddr(old_addr) + size - old_addr, old_end - old_addr)
    return min(extent, k.geo.haddr(new_addr) + size - new_addr)


def move_page_tables(k, vma, old_addr, new_vma, new_addr, length, need_rmap_locks):
    """mm/mremap.c: move_page_tables() (6.6), inside an MMU_NOTIFY_UNMAP range over the old range:
    per PMD extent, skip a none old PMD (get_old_pmd()); a huge one is moved whole (a PMD extent)
    or split; a table is moved whole by move_pgt_entry(NORMAL_PMD) when the extent is a PMD;
    otherwise pte_alloc() the new table and move_ptes(), retrying the pmd on -EAGAIN.  Returns the
    length moved."""
    mm = vma.mm
    geo = k.geo
    old_end = old_addr + length
    start = old_addr
    yield from mmu_notifier_invalidate_range_start(k, mm, start, old_end)
    while old_addr < old_end:
        extent = get_extent(k, old_addr, old_end, new_addr)
        old_pmd = mm.pmd_offset(old_addr, geo)
        new_pmd = new_vma.mm.pmd_offset(new_addr, geo)
        # get_old_pmd(): nothing to move under a none entry
        if not pmd_none((yield Load(old_pmd.table, old_pmd.idx))):
            while True:  # again:
                pmdv = yield Load(old_pmd.table, old_pmd.idx)
                if pmd_trans_huge(pmdv):
                    if extent == geo.hpage_pmd_nr and (yield from move_pgt_entry(
                            k, HPAGE_PMD, vma, old_addr, new_addr, old_pmd, new_pmd,
                            need_rmap_locks)):
                        break
                    yield from __split_huge_pmd(k, vma, old_pmd, old_addr)
                elif extent == geo.ptrs_per_pte and have_move_pmd(k.arch) and (
                        yield from move_pgt_entry(k, NORMAL_PMD, vma, old_addr, new_addr,
                                                  old_pmd, new_pmd, True)):
                    break
                if pmd_none((yield Load(old_pmd.table, old_pmd.idx))):
                    break
                yield from pte_alloc(k, new_vma.mm, new_pmd)
                err = yield from move_ptes(k, vma, old_pmd, old_addr, old_addr + extent, new_vma,
                                           new_pmd, new_addr, need_rmap_locks)
                if err != EAGAIN:
                    break
        old_addr += extent
        new_addr += extent
    yield from mmu_notifier_invalidate_range_end(k, mm, start, old_end)
    return old_end - start


# ------------------------------------------------------------------------------------------------
# the VMAs


def _vma_link(m, t, mm, vma, after):
    """vma_link() (6.6): the new VMA enters the mm's tree and its file's i_mmap
    (__vma_link_file(); the interval tree puts it after ``after``, which maps the same pgoff)."""
    mm.vmas.append(vma)
    if vma.file is None:
        return  # anonymous: in no i_mmap
    i_mmap = vma.file.i_mmap
    i_mmap.insert(i_mmap.index(after) + 1 if after in i_mmap else len(i_mmap), vma)


def copy_vma(k, vma, new_addr, length, pgoff):
    """mm/mmap.c: copy_vma() (6.6) when nothing merges: vm_area_dup() at the new address
    (anon_vma_clone() shares the anon_vma), vma_link() under i_mmap_lock_write(); need_rmap_locks
    is then false.  Returns ``(new_vma, need_rmap_locks)``."""
    mm = vma.mm
    new_vma = Vma(f"{mm.name}.vma[{new_addr}:{new_addr + length}]", mm, new_addr,
                  new_addr + length, pgoff, vma.file, vma.flags, vma.anon_vma)
    if vma.file is None:  # an anonymous VMA: vma_link() without i_mmap_lock_write()
        yield Atomic(f"vma_link({new_vma!r})", _vma_link, (mm, new_vma, vma), touches=(mm,))
        return new_vma, False
    yield DownWrite(vma.file.i_mmap_rwsem)
    yield Atomic(f"vma_link({new_vma!r})", _vma_link, (mm, new_vma, vma), touches=(mm, vma.file))
    yield UpWrite(vma.file.i_mmap_rwsem)
    return new_vma, False


def _drop_uffd(m, t, vma):
    vma.flags = vma.flags - {VM_UFFD_MISSING, VM_UFFD_WP, VM_UFFD_MINOR}


def mremap_userfaultfd_prep(k, vma):
    """fs/userfaultfd.c: mremap_userfaultfd_prep() (6.6) without UFFD_FEATURE_EVENT_REMAP: the
    moved VMA loses its userfaultfd context and VM_UFFD_* flags."""
    if vma.flags & {VM_UFFD_MISSING, VM_UFFD_WP, VM_UFFD_MINOR}:
        yield Atomic(f"{vma!r}->vm_flags &= ~__VM_UFFD_FLAGS", _drop_uffd, (vma,), touches=(vma,))


def move_vma(k, vma, old_addr, length, new_addr):
    """mm/mremap.c: move_vma() (6.6): copy_vma(), move_page_tables(), mremap_userfaultfd_prep()
    on the new VMA, then do_vmi_munmap() of the old range with mmap_lock kept for write (unlock =
    false).  Returns the new address."""
    new_pgoff = vma.pgoff + (old_addr - vma.start)
    new_vma, need_rmap_locks = yield from copy_vma(k, vma, new_addr, length, new_pgoff)
    moved = yield from move_page_tables(k, vma, old_addr, new_vma, new_addr, length,
                                        need_rmap_locks)
    assert moved == length  # no allocation failure in the model
    yield from mremap_userfaultfd_prep(k, new_vma)
    yield from do_vmi_munmap(k, vma.mm, old_addr, old_addr + length, unlock=False)
    return new_addr


def _free_ranges(k, mm, length):
    """The starts of the free ranges of ``length`` pages in ``mm`` (what get_unmapped_area() could
    return; MREMAP_FIXED at one of them needs no do_munmap() of the target)."""
    return [s for s in range(k.geo.task_size - length + 1)
            if not any(v.start < s + length and s < v.end for v in mm.vmas)]


def sys_mremap(k, mm, addr, choice):
    """mm/mremap.c: SYSCALL_DEFINE5(mremap) (6.6) with MREMAP_MAYMOVE | MREMAP_FIXED, moving the
    whole VMA at ``addr`` to the ``choice``-th free range of its size (chosen under mmap_lock):
    mmap_write_lock, mremap_to() -> move_vma(), mmap_write_unlock.  Returns the new address, or
    -EFAULT (no VMA) or -ENOMEM (no room)."""
    yield DownWrite(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None:
        yield UpWrite(mm.mmap_lock)
        return EFAULT
    length = vma.end - vma.start
    free = _free_ranges(k, mm, length)
    if not free:
        yield UpWrite(mm.mmap_lock)
        return ENOMEM
    # prefer the ranges with the old one's PMD alignment: those move whole tables
    free.sort(key=lambda s: (s % k.geo.ptrs_per_pte != vma.start % k.geo.ptrs_per_pte, s))
    ret = yield from move_vma(k, vma, vma.start, length, free[choice % len(free)])
    yield UpWrite(mm.mmap_lock)
    return ret
