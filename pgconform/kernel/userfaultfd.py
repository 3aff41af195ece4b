"""userfaultfd: registration (fs/userfaultfd.c), the mfill ioctls UFFDIO_COPY, UFFDIO_CONTINUE
and UFFDIO_POISON (mm/userfaultfd.c: mfill_atomic() -> mfill_atomic_pte_*()), and
UFFDIO_WRITEPROTECT (mwriteprotect_range() -> uffd_wp_range() -> change_protection(),
kernel/mprotect.py); Linux 6.6.

UFFDIO_COPY installs PTEs without the lock of any folio already in the page cache: an anonymous
copy in a private VMA (after anon_vma_prepare()), or a new shmem folio in a hole of a shared one.
UFFDIO_POISON and UFFDIO_WRITEPROTECT install PTE markers under the ptl alone; UFFDIO_CONTINUE maps
a page-cache page under its folio lock.  NULL from pte_offset_map_lock() is -EAGAIN, which the
kernel (write-protect) or userspace (mfill) retries.

Model restrictions: UFFDIO_REGISTER and UNREGISTER take the whole VMA at the address (no VMA
split); one userfaultfd context per mm, so "registered" is any VM_UFFD_* flag; the monitor never
resolves a fault (the faulting access ends, see kernel/memory.py user_access()); UFFDIO_COPY and
UFFDIO_CONTINUE have no MODE_WP, UFFDIO_WRITEPROTECT no MODE_DONTWAKE.
"""

from __future__ import annotations

from pgconform.kernel.arch.arm import update_mmu_cache_range
from pgconform.kernel.filemap import folio_put
from pgconform.kernel.memory import anon_vma_prepare, mapped_pte, pte_write_allowed, shmem_get_folio
from pgconform.kernel.mprotect import (
    MM_CP_TRY_CHANGE_WRITABLE,
    MM_CP_UFFD_WP,
    MM_CP_UFFD_WP_RESOLVE,
    change_protection,
    vma_wants_manual_pte_write_upgrade,
)
from pgconform.kernel.objects import (
    PTE_MARKER_GUARD,
    PTE_MARKER_POISONED,
    VM_UFFD_MINOR,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    VM_WRITE,
    Pte,
    PteMarker,
    pmd_none,
    pmd_trans_huge,
    pte_none,
)
from pgconform.kernel.pgalloc import __pte_alloc, pte_alloc
from pgconform.kernel.rmap import mm_find_pmd
from pgconform.kernel.tlbflush import flush_tlb_range
from pgconform.sim.effects import (
    Atomic,
    DownRead,
    DownWrite,
    Load,
    Lock,
    Store,
    Unlock,
    UpRead,
    UpWrite,
)

EAGAIN, EEXIST, ENOENT, EFAULT, EINVAL = "EAGAIN", "EEXIST", "ENOENT", "EFAULT", "EINVAL"

#: __VM_UFFD_FLAGS (include/linux/userfaultfd_k.h, 6.6)
VM_UFFD_FLAGS = frozenset({VM_UFFD_MISSING, VM_UFFD_WP, VM_UFFD_MINOR})
#: UFFDIO_REGISTER modes an op argument picks from (arg % 4)
REGISTER_MODES = (frozenset({VM_UFFD_WP}), frozenset({VM_UFFD_MINOR}),
                  frozenset({VM_UFFD_MISSING, VM_UFFD_WP}), frozenset({VM_UFFD_MISSING}))


def userfaultfd_registered(vma) -> bool:
    """vma->vm_userfaultfd_ctx.ctx != NULL (find_dst_vma()'s check): one context per mm here."""
    return bool(vma.flags & VM_UFFD_FLAGS)


def pte_none_mostly(v) -> bool:
    """include/linux/swapops.h: pte_none_mostly() (6.6): none, or any PTE marker.  7.0 has
    ``pte_none() || is_uffd_pte_marker()`` there instead: a guard marker (the only marker 6.6
    does not have) is not overwritten."""
    return v is None or (type(v) is PteMarker and v != PTE_MARKER_GUARD)


def _shmem_add_new(m, t, k, f, index, value):
    """shmem_mfill_atomic_pte(): a new locked folio added to the page cache, or None (-EEXIST)."""
    if index in f.pages:
        return None
    folio = k.new_folio(f"{f.name}:{index}", 1, index, f, data=[value], locked_by=t)
    folio.refcount = 2
    f.pages[index] = folio
    before, f.content[index] = f.content[index], value
    return folio, before


def _shmem_remove(m, t, k, f, index, folio, before):
    """out_delete_from_cache: filemap_remove_folio() after a failed install."""
    del f.pages[index]
    f.content[index] = before
    folio.mapping = None
    folio_put(k, folio)


def _new_anon(m, t, k, mm, addr, value):
    folio = k.new_folio(f"uffd-anon({mm.name}:{addr})", 1, anon=True, data=[value])
    folio.refcount = 1
    return folio


def mfill_atomic_install_pte(k, vma, pmdp, addr, folio, idx):
    """mm/userfaultfd.c: mfill_atomic_install_pte() (6.6): map ``folio`` at ``addr`` if the entry
    is still none or a marker (pte_none_mostly()), under pte_offset_map_lock(); -EAGAIN if the
    table cannot be mapped.  The PTE is writable if the VMA is and the page is its own (a
    page-cache page in a private VMA is mapped read-only)."""
    mm = vma.mm
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return EAGAIN
    ret = EEXIST
    old = yield Load(pte.table, pte.idx)
    # a marker may be overwritten (MISSING|WP: a none PTE write-protected before it was filled)
    if pte_none_mostly(old):
        yield Store(pte.table, pte.idx, Pte(folio, idx, write=pte_write_allowed(vma, folio)))
        mapped_pte(k, mm, addr, folio, idx)
        if old is not None:
            k.hooks.marker_replaced(mm, addr)  # the monitor resolved the address itself
        if k.arch.vivt_cache:
            yield from update_mmu_cache_range(k, vma, addr, pte)
        ret = 0
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return ret


def mfill_atomic_copy(k, mm, addr, value):
    """mm/userfaultfd.c: mfill_atomic_copy() (6.6) of one page holding ``value`` at ``addr``,
    retried by userspace while it returns -EAGAIN."""
    return (yield from _mfill_retry(k, mm, addr, MFILL_ATOMIC_COPY, value))


def mfill_atomic_pte_copy(k, vma, pmdp, addr, value):
    """mm/userfaultfd.c: mfill_atomic_pte_copy() (6.6; shmem_mfill_atomic_pte() for a shared
    VMA): a new folio holding ``value`` (an anonymous one in a private VMA; a shmem folio added
    to the page cache in a hole of a shared one, -EEXIST if the index is taken), mapped by
    mfill_atomic_install_pte(); undone if that fails."""
    mm = vma.mm
    if vma.shared:
        index = vma.linear_page_index(addr)
        added = yield Atomic(f"shmem_add_to_page_cache({vma.file!r}, {index})", _shmem_add_new,
                             (k, vma.file, index, value), touches=(vma.file,))
        if added is None:
            return EEXIST
        folio, before = added
        ret = yield from mfill_atomic_install_pte(k, vma, pmdp, addr, folio, 0)
        if ret != 0:
            yield Atomic(f"filemap_remove_folio({folio!r})", _shmem_remove,
                         (k, vma.file, index, folio, before), touches=(vma.file,))
            folio_put(k, folio)
        yield Unlock(folio.lock)
        # on success our reference became the mapping's
        return ret
    folio = yield Atomic(f"alloc anon folio for {addr}", _new_anon, (k, mm, addr, value))
    ret = yield from mfill_atomic_install_pte(k, vma, pmdp, addr, folio, 0)
    if ret != 0:
        folio_put(k, folio)
    return ret


#: the mfill modes (uffd_flags_t's mfill_atomic_mode): UFFDIO_COPY, UFFDIO_CONTINUE, UFFDIO_POISON
MFILL_ATOMIC_COPY, MFILL_ATOMIC_CONTINUE, MFILL_ATOMIC_POISON = "copy", "continue", "poison"


def mfill_atomic_pte(k, vma, pmdp, addr, mode, value=None):
    """mm/userfaultfd.c: mfill_atomic_pte() (6.6): the page of one mfill ioctl, by mode, under
    mmap_lock for read with the PTE table of ``pmdp`` allocated."""
    if mode == MFILL_ATOMIC_CONTINUE:
        return (yield from mfill_atomic_pte_continue(k, vma, pmdp, addr))
    if mode == MFILL_ATOMIC_POISON:
        return (yield from mfill_atomic_pte_poison(k, vma, pmdp, addr))
    return (yield from mfill_atomic_pte_copy(k, vma, pmdp, addr, value))


def _mfill_retry(k, mm, addr, mode, value=None):
    """One mfill ioctl of one page: mfill_atomic() through the implementation table, called again
    by userspace while it returns -EAGAIN."""
    while True:
        ret = yield from k.ops.mfill_atomic(k, mm, addr, mode, value)
        if ret != EAGAIN:
            return ret


# ------------------------------------------------------------------------------------------------
# UFFDIO_CONTINUE


def mfill_atomic_pte_continue(k, vma, pmdp, addr):
    """mm/userfaultfd.c: mfill_atomic_pte_continue() (6.6): the page-cache folio at the address
    (shmem_get_folio(SGP_NOALLOC): locked, referenced; none is -EFAULT), mapped by
    mfill_atomic_install_pte() while its lock is held; the reference becomes the mapping's."""
    index = vma.linear_page_index(addr)
    folio = yield from shmem_get_folio(k, vma, index, noalloc=True)
    if folio is None:
        return EFAULT
    ret = yield from mfill_atomic_install_pte(k, vma, pmdp, addr, folio, index - folio.index)
    yield Unlock(folio.lock)
    if ret != 0:
        folio_put(k, folio)
    return ret


def mfill_atomic_continue(k, mm, addr):
    """mm/userfaultfd.c: mfill_atomic_continue() (6.6) of one page at ``addr`` (minor mode: map
    the page cache's page), retried by userspace on -EAGAIN."""
    return (yield from _mfill_retry(k, mm, addr, MFILL_ATOMIC_CONTINUE))


# ------------------------------------------------------------------------------------------------
# UFFDIO_POISON


def mfill_atomic_pte_poison(k, vma, pmdp, addr):
    """mm/userfaultfd.c: mfill_atomic_pte_poison() (6.6): under pte_offset_map_lock() (NULL:
    -EAGAIN), a PTE_MARKER_POISONED in a none entry (any other entry, a marker too, is -EEXIST).
    No folio lock is involved: nothing but the ptl orders it against retract_page_tables()."""
    mm = vma.mm
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return EAGAIN
    ret = EEXIST
    if pte_none((yield Load(pte.table, pte.idx))):
        yield Store(pte.table, pte.idx, PTE_MARKER_POISONED)
        k.hooks.uffd_poison_installed(vma, addr)
        ret = 0
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return ret


def mfill_atomic_poison(k, mm, addr):
    """mm/userfaultfd.c: mfill_atomic_poison() (6.6) of one page at ``addr``, retried by
    userspace on -EAGAIN."""
    return (yield from _mfill_retry(k, mm, addr, MFILL_ATOMIC_POISON))


# ------------------------------------------------------------------------------------------------
# UFFDIO_WRITEPROTECT


def uffd_wp_range(k, vma, start, end, enable_wp):
    """mm/userfaultfd.c: uffd_wp_range() (6.6): change_protection() with MM_CP_UFFD_WP, or
    MM_CP_UFFD_WP_RESOLVE (plus MM_CP_TRY_CHANGE_WRITABLE where the VMA wants it)."""
    if enable_wp:
        cp_flags = MM_CP_UFFD_WP
    else:
        cp_flags = MM_CP_UFFD_WP_RESOLVE
        if vma_wants_manual_pte_write_upgrade(vma):
            cp_flags |= MM_CP_TRY_CHANGE_WRITABLE
    return (yield from change_protection(k, vma, start, end, cp_flags))


class _WpOp:
    """The identity of one UFFDIO_WRITEPROTECT call (for the shadow's race bookkeeping)."""

    __slots__ = ()


def _wp_start(m, t, k, mm, token, start, end, protect):
    k.hooks.uffd_wp_start(mm, token, start, end, protect)


def _wp_end(m, t, k, mm, token, start, end, protect):
    k.hooks.uffd_wp_end(mm, token, start, end, protect)


def mwriteprotect_range(k, mm, start, length, enable_wp):
    """mm/userfaultfd.c: mwriteprotect_range() (6.6) under mmap_lock for read, for the VMA at
    ``start`` (the range is clipped to it): -ENOENT unless it is registered for WP, else
    uffd_wp_range().  Returns 0 or the error."""
    end = start + length
    token = _WpOp()
    yield Atomic(f"ioctl(UFFDIO_WRITEPROTECT, {start}+{length}, "
                 f"{'WP' if enable_wp else 'unprotect'})", _wp_start,
                 (k, mm, token, start, end, enable_wp), touches=(mm,))
    yield DownRead(mm.mmap_lock)
    vma = mm.find_vma(start)
    ret = ENOENT
    if vma is not None and VM_UFFD_WP in vma.flags:
        end = min(end, vma.end)
        k.hooks.uffd_wp_applied(mm, token, vma)  # while mmap_lock keeps the VMA alive
        yield from uffd_wp_range(k, vma, start, end, enable_wp)
        ret = 0
    yield UpRead(mm.mmap_lock)
    yield Atomic("return to userspace", _wp_end, (k, mm, token, start, end, enable_wp),
                 touches=(mm,))
    return ret


# ------------------------------------------------------------------------------------------------
# UFFDIO_REGISTER / UFFDIO_UNREGISTER


def _set_uffd_flags(m, t, k, vma, flags, drop_wp):
    """userfaultfd_set_vm_flags() (vm_flags and vm_page_prot) under mmap_lock for write."""
    vma.flags = flags
    if drop_wp:
        k.hooks.uffd_wp_forget(vma.mm, vma.start, vma.end)


def _forget_wp(m, t, k, vma):
    k.hooks.uffd_wp_forget(vma.mm, vma.start, vma.end)


def userfaultfd_register(k, mm, addr, mode):
    """fs/userfaultfd.c: userfaultfd_register() (6.6) of the VMA at ``addr`` in ``mode`` (a set of
    VM_UFFD_* flags), under mmap_lock for write: -EINVAL for a mode the architecture lacks
    (HAVE_ARCH_USERFAULTFD_WP/_MINOR); the VMA's uffd flags become ``mode``."""
    if (VM_UFFD_WP in mode and not k.arch.uffd_wp) or \
            (VM_UFFD_MINOR in mode and not k.arch.uffd_minor):
        return EINVAL
    yield DownWrite(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None or (vma.file is None and mode & {VM_UFFD_MINOR, VM_UFFD_WP}):
        # vma_can_userfault(): MINOR is for shmem (and hugetlb) only.  Model restriction: an
        # anonymous VMA is not registered for WP either (the kernel allows it, with uffd-wp
        # bits but no markers on anonymous memory, which the model does not have)
        yield UpWrite(mm.mmap_lock)
        return EINVAL
    new_flags = (vma.flags - VM_UFFD_FLAGS) | mode
    if new_flags != vma.flags:
        # re-registering without WP ends the write protection of the range
        drop_wp = VM_UFFD_WP in vma.flags and VM_UFFD_WP not in mode
        yield Atomic(f"userfaultfd_set_vm_flags({vma!r}, {'|'.join(sorted(mode))})",
                     _set_uffd_flags, (k, vma, new_flags, drop_wp), touches=(vma,))
    yield UpWrite(mm.mmap_lock)
    return 0


def userfaultfd_unregister(k, mm, addr):
    """fs/userfaultfd.c: userfaultfd_unregister() (6.6) of the VMA at ``addr``, under mmap_lock
    for write: a WP-registered VMA is first unprotected (uffd_wp_range(false): markers dropped,
    uffd-wp bits cleared), then its uffd flags are cleared."""
    yield DownWrite(mm.mmap_lock)
    vma = mm.find_vma(addr)
    if vma is None:
        yield UpWrite(mm.mmap_lock)
        return EINVAL
    if userfaultfd_registered(vma):
        if VM_UFFD_WP in vma.flags:
            yield Atomic(f"ioctl(UFFDIO_UNREGISTER, {vma!r})", _forget_wp, (k, vma), touches=(mm,))
            yield from uffd_wp_range(k, vma, vma.start, vma.end, False)
        yield Atomic(f"userfaultfd_set_vm_flags({vma!r}, 0)", _set_uffd_flags,
                     (k, vma, vma.flags - VM_UFFD_FLAGS, False), touches=(vma,))
    yield UpWrite(mm.mmap_lock)
    return 0


# ------------------------------------------------------------------------------------------------
# UFFDIO_MOVE (6.8+; only in a kernel version with KernelVersion.uffd_move)

#: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: a hole in the source counts as moved instead of -ENOENT
UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 2
EBUSY = "EBUSY"


def double_pt_lock(k, ptl1, ptl2):
    """mm/userfaultfd.c: double_pt_lock() (7.0): both ptls in one fixed order (the kernel's is
    by address; the model's by name, also a total order), the second nested; once if they are
    the same lock."""
    if ptl1 is not ptl2 and ptl2.name < ptl1.name:
        ptl1, ptl2 = ptl2, ptl1
    yield Lock(ptl1)
    if ptl1 is not ptl2:
        yield Lock(ptl2, 1)  # spin_lock_nested(ptl2, SINGLE_DEPTH_NESTING)


def double_pt_unlock(k, ptl1, ptl2):
    """mm/userfaultfd.c: double_pt_unlock() (7.0)."""
    yield Unlock(ptl1)
    if ptl1 is not ptl2:
        yield Unlock(ptl2)


def is_pte_pages_stable(k, dst_pte, src_pte, orig_dst_pte, orig_src_pte, dst_pmdp, dst_pmdval,
                        dst_recheck=True):
    """mm/userfaultfd.c: is_pte_pages_stable() (7.0; dd95d2782a25), under both ptls: the source
    entry is unchanged (pte_same() on a non-none entry also proves its table still linked: a
    detached table is empty), the destination entry is unchanged (still none, which proves
    nothing about its table), and so the destination PMD still names the table that was mapped
    (pmd_same() against the snapshot: PT reclaim may have freed it).  Without ``dst_recheck``
    it is the form before dd95d2782a25 (pte_same() of both entries only)."""
    if (yield Load(src_pte.table, src_pte.idx)) != orig_src_pte:
        return False
    if (yield Load(dst_pte.table, dst_pte.idx)) != orig_dst_pte:
        return False
    return not dst_recheck or dst_pmdval == (yield from k.ops.pmdp_get_lockless(k, dst_pmdp))


def _move_rmap(m, t, k, mm, folio, dst_vma, src_addr, dst_addr):
    """folio_move_anon_rmap() and folio->index = linear_page_index(dst_vma, dst_addr); the page's
    content now belongs to the destination address (mapcount and rss are unchanged: the page
    stays mapped once, in the same mm)."""
    folio.mapping = dst_vma.anon_vma
    folio.index = dst_vma.linear_page_index(dst_addr)
    k.hooks.anon_moved(mm, src_addr, mm, dst_addr)


def page_anon_exclusive(folio) -> bool:
    """PageAnonExclusive(), approximated: an anonymous page mapped once (fork shares it, and the
    model does not track the bit itself)."""
    return folio.anon and folio.mapcount == 1


def move_present_ptes(k, mm, dst_vma, src_vma, dst_addr, src_addr, dst_pte, src_pte,
                      orig_dst_pte, orig_src_pte, dst_pmdp, dst_pmdval, dst_ptl, src_ptl,
                      src_folio, dst_recheck=True):
    """mm/userfaultfd.c: move_present_ptes() (7.0) for one page (the model's move_pages_pte()
    moves one page per call, so no batch follows): under double_pt_lock(), check
    is_pte_pages_stable() (-EAGAIN) and that the folio is small and exclusive (-EBUSY; it is
    never DMA-pinned here); clear the source entry, move the anon rmap to the destination VMA,
    set the destination entry (writable and young: mk_pte() with dst_vma's protection,
    pte_mkwrite()), flush the source TLB entry.  The folio stays locked (the caller unlocks it)
    and its reference is dropped here once the move is past the point of no return.  Returns
    1 (pages moved) or the error."""
    yield from double_pt_lock(k, dst_ptl, src_ptl)
    ret = 1
    if not (yield from is_pte_pages_stable(k, dst_pte, src_pte, orig_dst_pte, orig_src_pte,
                                           dst_pmdp, dst_pmdval, dst_recheck)):
        ret = EAGAIN
    elif src_folio.nr > 1 or not page_anon_exclusive(src_folio):
        ret = EBUSY
    else:
        folio_put(k, src_folio)  # the page table holds a reference too
        yield Store(src_pte.table, src_pte.idx, None)  # ptep_get_and_clear()
        yield Atomic(f"folio_move_anon_rmap({src_folio!r}, {dst_vma!r})", _move_rmap,
                     (k, mm, src_folio, dst_vma, src_addr, dst_addr), touches=(mm,))
        # set_pte_at()
        yield Store(dst_pte.table, dst_pte.idx, Pte(src_folio, orig_src_pte.idx, write=True))
        yield from flush_tlb_range(k, src_vma, src_addr, src_addr + 1)
    yield from double_pt_unlock(k, dst_ptl, src_ptl)
    return ret


def validate_move_areas(src_vma, dst_vma):
    """mm/userfaultfd.c: validate_move_areas() (7.0): the same access flags (here VM_WRITE),
    writable, the destination registered with userfaultfd, and both anonymous; else -EINVAL."""
    if (VM_WRITE in src_vma.flags) != (VM_WRITE in dst_vma.flags):
        return EINVAL
    if VM_WRITE not in src_vma.flags:
        return EINVAL
    if not userfaultfd_registered(dst_vma):
        return EINVAL
    if src_vma.file is not None or dst_vma.file is not None:
        return EINVAL
    return 0


def move_pages(k, mm, dst_start, src_start, length, mode=0):
    """mm/userfaultfd.c: move_pages() (7.0), UFFDIO_MOVE of ``length`` pages from ``src_start``
    to ``dst_start`` of ``mm``, under mmap_lock for read (uffd_move_lock() without per-VMA locks;
    the model keeps mmap_lock): find_vma_and_prepare_anon() of the destination (no VMA: -ENOENT;
    anon_vma_prepare() if anonymous), vma_lookup() of the source (-ENOENT); -EINVAL for a shared
    VMA, a range past either VMA's end, or validate_move_areas().  Then per page: a none source
    PMD is -ENOENT (or gets a table with ALLOW_SRC_HOLES), a huge destination PMD -EEXIST,
    pte_alloc() the destination table, and move_pages_pte() through the implementation table,
    called again on -EAGAIN.  Returns the pages moved, or the error if none was.  (Anonymous
    VMAs have no huge PMDs in the model, so move_pages_huge_pmd() is not modelled; nor is
    mmap_changing, without non-cooperative events.)"""
    yield DownRead(mm.mmap_lock)
    dst_vma = mm.find_vma(dst_start)
    if dst_vma is None:
        yield UpRead(mm.mmap_lock)
        return ENOENT
    if dst_vma.file is None:
        yield from anon_vma_prepare(k, dst_vma)
    src_vma = dst_vma if dst_vma.start <= src_start < dst_vma.end else mm.find_vma(src_start)
    if src_vma is None:
        yield UpRead(mm.mmap_lock)
        return ENOENT
    err = EINVAL
    if src_vma.shared or src_start + length > src_vma.end or dst_vma.shared or \
            dst_start + length > dst_vma.end:
        yield UpRead(mm.mmap_lock)
        return err
    err = validate_move_areas(src_vma, dst_vma)
    if err:
        yield UpRead(mm.mmap_lock)
        return err
    moved = 0
    src_addr, dst_addr = src_start, dst_start
    while src_addr < src_start + length:
        src_pmdp = yield from mm_find_pmd(k, mm, src_addr)
        dst_pmdp = mm.pmd_offset(dst_addr, k.geo)  # mm_alloc_pmd(): the model's one PMD table
        if pmd_trans_huge((yield from k.ops.pmdp_get_lockless(k, dst_pmdp))):
            err = EEXIST
            break
        if pmd_none((yield Load(src_pmdp.table, src_pmdp.idx))):
            if not mode & UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES:
                err = ENOENT
                break
            yield from __pte_alloc(k, mm, src_pmdp)
        yield from pte_alloc(k, mm, dst_pmdp)
        ret = yield from k.ops.move_pages_pte(k, mm, dst_pmdp, src_pmdp, dst_vma, src_vma,
                                               dst_addr, src_addr, mode)
        if ret == EAGAIN:
            continue
        if type(ret) is str:
            err = ret
            break
        src_addr += ret
        dst_addr += ret
        moved += ret
    yield UpRead(mm.mmap_lock)
    return moved if moved else err
