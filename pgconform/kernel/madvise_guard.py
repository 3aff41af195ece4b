"""Guard regions on the model's file-backed (shmem) VMAs: madvise(MADV_GUARD_INSTALL) and
madvise(MADV_GUARD_REMOVE), mm/madvise.c and the install_pte walk of mm/pagewalk.c, Linux 7.0.

MADV_GUARD_INSTALL (6.13 for anonymous memory, file-backed VMAs since 6.15) puts a
PTE_MARKER_GUARD in each page of the range: any access there is SIGSEGV until MADV_GUARD_REMOVE
clears it.  It holds the mmap_lock for *read* only, so nothing but the ptl orders the markers
against the retract_page_tables() of a khugepaged or MADV_COLLAPSE collapse of the same file
range; the huge folio's lock does not either, since no folio is involved.  In 7.0 the install
first sets VMA_MAYBE_GUARD_BIT with one atomic bit operation (vma_set_atomic_flag(), the only VMA
flag written under the read lock), and retract_page_tables() checks it before and under the ptl
(file_backed_vma_is_retractable()): a retract that finds no flag under the ptl knows no marker is
in the table, since markers are stored under that ptl after the flag was set.
try_collapse_pte_mapped_thp() checks nothing of the kind: between its step 2 (PTEs cleared, ptl
dropped) and step 4 (the table freed) an install can fill the emptied table, which then goes
with the markers (a finding: tests/selftest/test_guard.py).

The install walk allocates a PTE table where there is none (walk_pmd_range() with ->install_pte:
__pte_alloc()), maps each table with pte_offset_map_lock() (NULL: ACTION_AGAIN, look at the pmd
again), stores a marker into each none entry and counts the guard markers already there; any
other entry (a page faulted in, but also a uffd-wp or poison marker), or a huge PMD, aborts the
walk, which then zaps the range (zap_page_range_single() with no details: it keeps guard markers,
and uffd-wp markers of a file VMA, and reclaims no table) and tries again, up to
MAX_MADVISE_GUARD_RETRIES times before restart_syscall() sends the call back through userspace
(-ERESTARTNOINTR, invisible to the process; the model loops, see restart_syscall()).  A uffd-wp
marker therefore never goes: the call never finishes (tests/selftest/test_guard.py records it as a
finding; v7.0 declares it, scoped to madvise_guard_install()).

Model restrictions: the call acts on the VMA at ``start`` only (clipped to it; none: -ENOMEM);
the model's VMAs are never VM_LOCKED, VM_SPECIAL or hugetlb, so is_valid_guard_vma() holds; the
VMA read lock 7.0 may take instead of the mmap_lock is the mmap_lock here (it excludes the same
writers).  Both calls return -EINVAL in a kernel version without guard regions (6.6).
"""

from __future__ import annotations

from pgconform.kernel.arch.arm import update_mmu_cache_range
from pgconform.kernel.memory import __split_huge_pmd, zap_page_range_single
from pgconform.kernel.objects import (
    PTE_MARKER_GUARD,
    VMA_MAYBE_GUARD,
    pmd_none,
    pmd_trans_huge,
    pte_none,
)
from pgconform.kernel.pgalloc import __pte_alloc
from pgconform.sim.effects import Atomic, DownRead, Load, Store, UpRead

EINVAL = -22
ENOMEM = -12
#: what a call ended by a fatal signal at restart_syscall() returns in the model (the task dies)
EINTR_KILLED = -4
#: include/linux/mm.h (7.0): how many zap-and-retry rounds before restart_syscall()
MAX_MADVISE_GUARD_RETRIES = 3


def _vma_set_atomic_flag(m, t, vma, flag):
    """set_bit() on the VMA's flags word: one atomic read-modify-write."""
    vma.flags = vma.flags | {flag}


def vma_set_atomic_flag(k, vma, flag):
    """include/linux/mm.h: vma_set_atomic_flag() (7.0): an atomic set_bit() of an allow-listed
    VMA flag (VMA_MAYBE_GUARD_BIT only), legal under the mmap (or VMA) read lock: every writer of
    the other flags holds the write lock, which excludes this one."""
    yield Atomic(f"vma_set_atomic_flag({vma!r}, {flag})", _vma_set_atomic_flag, (vma, flag),
                 touches=(vma,))


def _find_vma_range(mm, start, end):
    vma = mm.find_vma(start)
    if vma is None:
        return None, start, end
    return vma, max(start, vma.start), min(end, vma.end)


# ------------------------------------------------------------------------------------------------
# MADV_GUARD_INSTALL


def guard_install_pte_range(k, vma, pmdp, addr, end):
    """mm/pagewalk.c: walk_pte_range() -> walk_pte_range_inner() (7.0) with madvise_guard_install's
    ops: under pte_offset_map_lock(), guard_install_set_pte() stores a PTE_MARKER_GUARD into each
    none entry (set_pte_at() then update_mmu_cache()); guard_install_pte_entry() counts an entry
    that already is a guard marker and stops the walk (>0: "zap needed") at any other.  Returns
    ``(err, again)``: ``again`` when the table could not be mapped (ACTION_AGAIN)."""
    mm = vma.mm
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return 0, True
    err = 0
    for a in range(addr, end):
        ptep = pte + (a - addr)
        ent = yield Load(ptep.table, ptep.idx)
        if pte_none(ent):
            yield Store(ptep.table, ptep.idx, PTE_MARKER_GUARD)
            k.hooks.guard_installed(vma, a)  # the promise, in the step of the store
            if k.arch.vivt_cache:
                yield from update_mmu_cache_range(k, vma, a, ptep)
        elif ent != PTE_MARKER_GUARD:  # populated: abort, the caller zaps and retries
            err = 1
            break
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return err, False


def guard_install_walk(k, vma, start, end):
    """mm/pagewalk.c: walk_page_range_mm_unsafe() (7.0) over [start, end) with
    madvise_guard_install's ops, down walk_pmd_range(): a none pmd gets a table (__pte_alloc(),
    as ->install_pte asks); guard_install_pmd_entry() stops at a huge pmd (>0); split_huge_pmd()
    (nothing to split once that check passed, unless a racing fault mapped one since); then the
    PTE level, again while it answers ACTION_AGAIN.  Returns 0, or >0 when the range must be
    zapped first."""
    mm = vma.mm
    geo = k.geo
    addr = start
    while addr < end:
        nxt = min(end, geo.haddr(addr) + geo.ptrs_per_pte)
        pmdp = mm.pmd_offset(addr, geo)
        while True:
            if pmd_none((yield Load(pmdp.table, pmdp.idx))):
                yield from __pte_alloc(k, mm, pmdp)
            if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):  # guard_install_pmd_entry()
                return 1
            if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):  # split_huge_pmd()
                yield from __split_huge_pmd(k, vma, pmdp, addr)
            err, again = yield from guard_install_pte_range(k, vma, pmdp, addr, nxt)
            if err:
                return err
            if not again:
                break
        addr = nxt
    return 0


def madvise_guard_install(k, mm, start, end):
    """mm/madvise.c: madvise_guard_install() (7.0) on a file-backed VMA, under the mmap_lock for
    read: set VMA_MAYBE_GUARD_BIT atomically (vma_set_atomic_flag()), then walk the range
    installing guard markers (guard_install_walk()); where the walk finds pages mapped, zap the
    range (zap_page_range_single(), which keeps the guard markers already installed) and walk
    again, MAX_MADVISE_GUARD_RETRIES times; then restart_syscall(): the lock is dropped and the
    call made again.  No anon_vma_prepare() for a file-backed VMA in 7.0 (before
    VMA_MAYBE_GUARD_BIT, file-backed install made one so that retract would skip the VMA).
    Returns 0, -ENOMEM (no VMA at ``start``) or -EINVAL (a kernel without guard regions)."""
    if not k.version.guard_regions:
        return EINVAL
    while True:
        yield DownRead(mm.mmap_lock)
        vma, lo, hi = _find_vma_range(mm, start, end)
        if vma is None:
            yield UpRead(mm.mmap_lock)
            return ENOMEM
        yield from vma_set_atomic_flag(k, vma, VMA_MAYBE_GUARD)
        for _ in range(MAX_MADVISE_GUARD_RETRIES):
            if (yield from guard_install_walk(k, vma, lo, hi)) == 0:
                yield UpRead(mm.mmap_lock)
                return 0
            # some of the range has pages mapped: zap them (guard markers stay) and walk again
            yield from zap_page_range_single(k, vma, lo, hi)
        yield UpRead(mm.mmap_lock)
        if not (yield from restart_syscall()):
            return EINTR_KILLED


def _restart(m, t):
    return t.fatal_signal is None


def restart_syscall():
    """include/linux/sched/signal.h: restart_syscall(): TIF_SIGPENDING and -ERESTARTNOINTR, so
    the call goes back through userspace (arch_do_signal_or_restart()) and is made again, unless
    get_signal() finds a fatal signal pending: the task dies there.  Returns whether the call is
    made again.  The model ends the call (:data:`EINTR_KILLED`) and does not run the process's
    exit; the only fatal signal of the model is the one a known sched.no-progress sends
    (Machine._no_progress())."""
    return (yield Atomic("restart_syscall()", _restart))


# ------------------------------------------------------------------------------------------------
# MADV_GUARD_REMOVE


def guard_remove_pte_range(k, vma, pmdp, addr, end):
    """mm/pagewalk.c: walk_pte_range() (7.0) with guard_remove_pte_entry(): under
    pte_offset_map_lock(), clear each guard marker (pte_clear() then update_mmu_cache()); leave
    every other entry.  Returns True when the table could not be mapped (ACTION_AGAIN)."""
    mm = vma.mm
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return True
    for a in range(addr, end):
        ptep = pte + (a - addr)
        if (yield Load(ptep.table, ptep.idx)) == PTE_MARKER_GUARD:
            yield Store(ptep.table, ptep.idx, None)
            # the process asked for it: the promise ends with the clear, and so does a uffd-wp
            # one (UFFDIO_WRITEPROTECT over the guard left the marker alone, as it does poison)
            k.hooks.guard_removed(mm, a)
            k.hooks.marker_replaced(mm, a)
            if k.arch.vivt_cache:
                yield from update_mmu_cache_range(k, vma, a, ptep)
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return False


def madvise_guard_remove(k, mm, start, end):
    """mm/madvise.c: madvise_guard_remove() (7.0) under the mmap_lock for read:
    walk_page_range_vma() over the range without allocating: a none pmd is skipped, a huge one
    too (guard_remove_pmd_entry(): ACTION_CONTINUE, no guard marker can be under it), else
    split_huge_pmd() (for one a racing fault mapped since) and guard_remove_pte_range(), the pmd
    looked at again on ACTION_AGAIN.  VMA_MAYBE_GUARD_BIT stays set.  Returns 0,
    -ENOMEM (no VMA at ``start``) or -EINVAL (a kernel without guard regions)."""
    if not k.version.guard_regions:
        return EINVAL
    geo = k.geo
    yield DownRead(mm.mmap_lock)
    vma, lo, hi = _find_vma_range(mm, start, end)
    if vma is None:
        yield UpRead(mm.mmap_lock)
        return ENOMEM
    addr = lo
    while addr < hi:
        nxt = min(hi, geo.haddr(addr) + geo.ptrs_per_pte)
        pmdp = mm.pmd_offset(addr, geo)
        while True:
            if pmd_none((yield Load(pmdp.table, pmdp.idx))):
                break
            if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):  # guard_remove_pmd_entry()
                break
            if pmd_trans_huge((yield Load(pmdp.table, pmdp.idx))):  # split_huge_pmd()
                yield from __split_huge_pmd(k, vma, pmdp, addr)
            if not (yield from guard_remove_pte_range(k, vma, pmdp, addr, nxt)):
                break
        addr = nxt
    yield UpRead(mm.mmap_lock)
    return 0
