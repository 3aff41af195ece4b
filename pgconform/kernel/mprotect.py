"""Changing the protection of mapped pages: mm/mprotect.c (Linux 6.6) change_protection() ->
change_pmd_range() -> change_pte_range(), shared by mprotect() and userfaultfd write-protection
(UFFDIO_WRITEPROTECT and UFFDIO_UNREGISTER go through uffd_wp_range(), kernel/userfaultfd.py).

change_pte_range() maps the table with pte_offset_map_lock(); NULL is -EAGAIN and
change_pmd_range() retries the PMD ("goto again"), which for uffd-wp first repopulates a none PMD
(change_pmd_prepare() -> pte_alloc()): a write-protected range of a file VMA gets a PTE table even
where nothing is mapped, and a PTE_MARKER_UFFD_WP in every none entry.  These markers are
installed under the ptl only, without any folio lock: that is why retract_page_tables() rechecks
userfaultfd_wp() under ptl (mm/khugepaged.c, 1d65b771bc08; the recheck came in v2 of patch 09;
zoo mutant A8).

Model restrictions: protection is only the write permission (VM_WRITE and the PTE write bit);
mprotect() takes whole VMAs (no split, as munmap in kernel/mmap.py); the VMAs are all shmem, so
userfaultfd_wp_use_markers() is userfaultfd_wp(); NUMA hinting (MM_CP_PROT_NUMA) is not modelled.
The PTE write bit after a change is what pte_modify() with vma->vm_page_prot, pte_mkuffd_wp() /
pte_clear_uffd_wp() and MM_CP_TRY_CHANGE_WRITABLE (can_change_pte_writable()) give together; the
model does not write-notify shared mappings, so a shared page counts as dirty.

change_pmd_range() reads ``*pmd`` twice with plain C reads (pte_alloc()'s test, then its own
pmd_none() test); whether that is one load or two is the compiler's, and the model's
``k.plain_reads`` (PGCONFORM_PLAIN_READS): pmd_none_plain_read().
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch.powerpc import assert_pte_locked
from pgconform.kernel.memory import pte_write_allowed
from pgconform.kernel.objects import (
    PTE_MARKER_GUARD,
    PTE_MARKER_POISONED,
    PTE_MARKER_UFFD_WP,
    VM_UFFD_WP,
    VM_WRITE,
    HugePmd,
    PteMarker,
    pmd_none,
    pmd_trans_huge,
    pte_present,
)
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.pgtable import set_pmd
from pgconform.kernel.tlbflush import flush_tlb_range
from pgconform.sim.effects import Atomic, DownWrite, Load, Store, Unlock, UpWrite

MM_CP_TRY_CHANGE_WRITABLE = 1
MM_CP_UFFD_WP = 4
MM_CP_UFFD_WP_RESOLVE = 8

EAGAIN = -11
EINVAL = -22
ENOMEM = -12


def userfaultfd_wp(vma) -> bool:
    """include/linux/userfaultfd_k.h: userfaultfd_wp() (6.6)."""
    return VM_UFFD_WP in vma.flags


def userfaultfd_wp_use_markers(vma) -> bool:
    """include/linux/userfaultfd_k.h: userfaultfd_wp_use_markers() (6.6): file-backed uffd-wp
    always protects none PTEs with markers (the model has only shmem VMAs)."""
    return userfaultfd_wp(vma)


def pgtable_split_needed(vma, cp_flags) -> bool:
    """mm/mprotect.c: pgtable_split_needed() (6.6): uffd-wp of a file VMA works on PTEs only."""
    return bool(cp_flags & MM_CP_UFFD_WP)


def pgtable_populate_needed(vma, cp_flags) -> bool:
    """mm/mprotect.c: pgtable_populate_needed() (6.6): UFFDIO_WRITEPROTECT where markers are
    used."""
    return bool(cp_flags & MM_CP_UFFD_WP) and userfaultfd_wp_use_markers(vma)


#: The known-violation key of the plain-read race in change_pmd_range() (pmd_none_plain_read()),
#: which every version whose retract or PT reclaim clears a PMD under mmap_lock for read declares
#: (the reference and v6.6, v1, v2, v7.0; not v6.5, whose retract holds mmap_lock for write)
PLAIN_READ_RACE = "pt.plain-read-race@change_pmd_range"
PLAIN_READ_RACE_WHY = (
    "a latent race in mm/mprotect.c change_pmd_range() (6.6, 7.0), compiler-dependent: "
    "pte_alloc()'s pmd_none(*pmd) and the pmd_none(*pmd) test are plain reads with nothing "
    "between them; GCC 12.2 (x86-64) emits one load, a compiler that emits two lets "
    "retract_page_tables() (or 7.0's PT reclaim) clear the PMD between them, and "
    "UFFDIO_WRITEPROTECT skips the range with no markers (judged with PGCONFORM_PLAIN_READS=split)")
#: what the race leaves behind: the markers that were not installed, the write not reported
PLAIN_READ_RACE_CONSEQUENCES = ("data.uffd-marker-lost", "data.uffd-wp-write-unnotified")

#: change_pmd_prepare() did not read the PMD (no markers needed)
NOT_READ = object()


def change_pmd_prepare(k, vma, pmdp, cp_flags):
    """mm/mprotect.c: change_pmd_prepare() (6.6, 7.0): pte_alloc() a none PMD if markers may be
    needed.  Returns the value pte_alloc()'s plain read of ``*pmd`` saw (None: it allocated), or
    NOT_READ."""
    if pgtable_populate_needed(vma, cp_flags):
        return (yield from pte_alloc(k, vma.mm, pmdp))
    return NOT_READ


def pmd_none_plain_read(k, pmdp, prepared):
    """The plain read of ``*pmd`` in change_pmd_range()'s ``if (pmd_none(*pmd)) goto next;``
    (mm/mprotect.c, 6.6 l.378; the same code in 7.0), after change_pmd_prepare()'s plain read in
    pte_alloc() (6.6 l.372) saw ``prepared``.

    Neither read is READ_ONCE(), and on the populated path nothing lies between them (no call:
    __pte_alloc() is only called for a none PMD; mmu_notifier_invalidate_range_start() comes
    after the test).  So C lets the compiler load ``*pmd`` once or twice, and a store by another
    CPU in between (retract_page_tables() clearing the PMD under pml, 7.0's PT reclaim freeing
    an empty table) is a data race on the entry, which KCSAN reports.  GCC 12.2 (x86-64, 6.6 and
    7.0 mm/mprotect.o) fuses them: the next load is pmdp_get_lockless(), a clear seen there makes
    pte_offset_map_lock() fail, change_pte_range() returns -EAGAIN and "goto again" allocates a
    new table for the markers.  Two loads instead let the pmd_none() test see the clear and skip
    the range, so UFFDIO_WRITEPROTECT returns with no markers in that PMD.

    ``k.plain_reads`` picks the form (kernel/config.py PLAIN_READS_FORMS): "fused" returns
    ``prepared``, with no effect; "split" reads again, and a different value is the clause
    ``pt.plain-read-race`` (oracle/pagetable.py), after which (if it is a declared known
    violation) the model goes on with the second value, as two loads would.  The first read of
    the PMD (no markers needed) and a re-read after __pte_alloc() (a call: the code really loads
    again, in both forms) are loads of their own."""
    if prepared is NOT_READ or pmd_none(prepared):
        return (yield Load(pmdp.table, pmdp.idx))
    if k.plain_reads == "fused":
        return prepared
    return (yield Atomic(f"READ {pmdp.table!r}[{pmdp.idx}] (plain, again)", _plain_reread,
                         (k, pmdp, prepared), touches=(pmdp.table,)))


def _plain_reread(m, t, k, pmdp, first):
    """The second of two plain loads of ``pmdp``: a Load that compares with the first (in the
    step, so that the clause is scoped by the reader's call path)."""
    page = pmdp.table
    if page.freed:
        m.use_after_free(t, page, f"read of entry {pmdp.idx}")
    pmdval = page.entries[pmdp.idx]
    if pmdval != first:
        k.hooks.plain_read_race(m, t, pmdp, first, pmdval, "change_pmd_range(): pte_alloc()'s "
                                "pmd_none(*pmd), then pmd_none(*pmd)")
    return pmdval


def vma_wants_manual_pte_write_upgrade(vma) -> bool:
    """include/linux/mm.h: vma_wants_manual_pte_write_upgrade() (6.6): private writable VMAs, and
    shared ones that write-notify (here: those registered for uffd-wp)."""
    if vma.shared:
        return userfaultfd_wp(vma)
    return VM_WRITE in vma.flags


def _new_pte(vma, ent, cp_flags):
    """The present entry change_pte_range() commits for ``ent``: pte_modify() with the VMA's
    vm_page_prot, then pte_mkuffd_wp() (write-protects) or pte_clear_uffd_wp(), then
    MM_CP_TRY_CHANGE_WRITABLE if can_change_pte_writable() (never for a uffd-wp PTE; an anonymous
    page only while exclusive, approximated by a single mapping)."""
    if cp_flags & MM_CP_UFFD_WP:
        uffd_wp = True
    elif cp_flags & MM_CP_UFFD_WP_RESOLVE:
        uffd_wp = False
    else:
        uffd_wp = ent.uffd_wp
    folio = ent.folio
    write = (not uffd_wp and pte_write_allowed(vma, folio)
             and (not folio.anon or folio.mapcount == 1))
    return attrs.evolve(ent, write=write, uffd_wp=uffd_wp)


def change_pte_range(k, vma, pmdp, addr, end, cp_flags):
    """mm/mprotect.c: change_pte_range() (6.6): under pte_offset_map_lock() (NULL: -EAGAIN), update
    every present PTE; leave poison (and, 7.0, guard) markers alone; with MM_CP_UFFD_WP_RESOLVE
    drop uffd-wp markers; with MM_CP_UFFD_WP put a PTE_MARKER_UFFD_WP in every none entry of a
    file VMA.  Returns the number of entries changed, or -EAGAIN."""
    mm = vma.mm
    pte, ptl = yield from k.ops.pte_offset_map_lock(k, mm, pmdp, addr)
    if pte is None:
        return EAGAIN
    uffd_wp = cp_flags & MM_CP_UFFD_WP
    uffd_wp_resolve = cp_flags & MM_CP_UFFD_WP_RESOLVE
    pages = 0
    for a in range(addr, end):
        ptep = pte + (a - addr)
        old = yield Load(ptep.table, ptep.idx)
        if pte_present(old):
            new = _new_pte(vma, old, cp_flags)
            if new != old:  # ptep_modify_prot_start() + ptep_modify_prot_commit()
                if k.arch.debug_vm:  # pte_update()
                    yield from assert_pte_locked(k, mm, a)
                yield Store(ptep.table, ptep.idx, new)
            pages += 1
        elif type(old) is PteMarker:
            if old == PTE_MARKER_POISONED or old == PTE_MARKER_GUARD:
                continue  # any access SIGBUSes (guard, 7.0: SIGSEGVs) anyway
            if uffd_wp_resolve:
                yield Store(ptep.table, ptep.idx, None)  # pte_clear()
                pages += 1
        elif uffd_wp and userfaultfd_wp_use_markers(vma):
            yield Store(ptep.table, ptep.idx, PTE_MARKER_UFFD_WP)
            pages += 1
    yield from k.ops.pte_unmap_unlock(k, pte, ptl)
    return pages


def change_huge_pmd(k, vma, pmdp, addr, cp_flags):
    """mm/huge_memory.c: change_huge_pmd() (6.6) for a file THP (mprotect only: uffd-wp splits
    file PMDs first): under pmd_lock, rewrite the write bit of a PMD that is still huge.  Returns
    HPAGE_PMD_NR, or 0 if it was no longer huge."""
    mm = vma.mm
    ptl = yield from k.ops.pmd_lock(k, mm, pmdp)
    old = yield Load(pmdp.table, pmdp.idx)
    if not pmd_trans_huge(old):
        yield Unlock(ptl)
        return 0
    new = HugePmd(old.folio, write=pte_write_allowed(vma, old.folio))
    if new != old:
        yield from set_pmd(k, pmdp, new)  # pmdp_invalidate_ad() + set_pmd_at()
    yield Unlock(ptl)
    return k.geo.hpage_pmd_nr


def change_protection(k, vma, start, end, cp_flags):
    """mm/mprotect.c: change_protection() (6.6) -> change_protection_range(): the page-table walk,
    then (tlb_finish_mmu() of the caller's mmu_gather) a TLB flush if anything changed."""
    pages = yield from k.ops.change_pmd_range(k, vma, start, end, cp_flags)
    if pages:
        yield from flush_tlb_range(k, vma, start, end)
    return pages


def _set_flags(m, t, vma, flags):
    """vm_flags_reset() + vma_set_page_prot() under mmap_lock for write."""
    vma.flags = flags


def mprotect_fixup(k, vma, start, end, newflags):
    """mm/mprotect.c: mprotect_fixup() (6.6) for a whole VMA: set the new flags (and with them
    vm_page_prot), then change_protection(), trying to make PTEs writable where the VMA wants a
    manual upgrade."""
    if newflags == vma.flags:
        return 0
    yield Atomic(f"vm_flags_reset({vma!r}, {'RW' if VM_WRITE in newflags else 'RO'})",
                 _set_flags, (vma, newflags), touches=(vma,))
    cp_flags = MM_CP_TRY_CHANGE_WRITABLE if vma_wants_manual_pte_write_upgrade(vma) else 0
    yield from change_protection(k, vma, start, end, cp_flags)
    return 0


def do_mprotect_pkey(k, mm, start, end, write):
    """mm/mprotect.c: do_mprotect_pkey() (6.6) with PROT_READ (``write`` false) or
    PROT_READ|PROT_WRITE, under mmap_lock for write.  The model takes whole VMAs: a range covering
    part of one is EINVAL here (the kernel would split it); no VMA is ENOMEM."""
    yield DownWrite(mm.mmap_lock)
    vma = mm.find_vma(start)
    if vma is None or start > vma.start or end < vma.end:
        yield UpWrite(mm.mmap_lock)
        return ENOMEM if vma is None else EINVAL
    newflags = vma.flags | {VM_WRITE} if write else vma.flags - {VM_WRITE}
    ret = yield from mprotect_fixup(k, vma, vma.start, vma.end, newflags)
    yield UpWrite(mm.mmap_lock)
    return ret
