"""The userfaultfd shadow: what UFFDIO_WRITEPROTECT and UFFDIO_POISON promised a process, and the
oracles that hold the kernel to it (lost uffd-wp markers, zoo mutant A8; lost poison).

The promises live on each mm (:class:`pgconform.kernel.objects.UffdPromises`).  The kernel model
updates them at the step where the promise is made or legitimately withdrawn:

* a UFFDIO_WRITEPROTECT (protect) that returns adds its range, unless another UFFDIO_WRITEPROTECT
  on the same addresses started while it ran (userspace raced itself: either outcome is right);
* unprotect, UFFDIO_UNREGISTER and a re-register without WP drop the range when they *start*
  (from then on a write may legitimately land);
* UFFDIO_POISON adds an address when its marker is stored; MADV_DONTNEED (a zap that clears
  poison markers) and UFFDIO_COPY/CONTINUE installing a page over a marker withdraw it, as the
  6.6 kernel allows (pte_none_mostly()).
* 7.0: UFFDIO_WRITEPROTECT leaves a guard marker alone (it protects the address a fortiori);
  MADV_GUARD_REMOVE clearing it withdraws the write-protect promise there, as a zap of a poison
  marker does (the process removed the only marker at the address).

A promise binds only while the VMA it was made in still covers the address at the same place
(munmap and mremap end it), and a write-protect promise only while that VMA is still registered
VM_UFFD_WP.
"""

from __future__ import annotations

from pgconform.kernel.objects import (
    PTE_MARKER_GUARD,
    PTE_MARKER_POISONED,
    PTE_MARKER_UFFD_WP,
    VM_UFFD_WP,
    HugePmd,
    TablePmd,
    pte_present,
)


def fingerprint(vma):
    """The VMA a promise was made in, where it was: the promise lapses if the VMA goes or moves."""
    return (vma, vma.start, vma.pgoff)


def _binding(u_map, mm, addr, vma=None):
    """The VMA covering ``addr`` if the promise recorded in ``u_map`` was made in it, else None."""
    fp = u_map.get(addr)
    if fp is None:
        return None
    if vma is None:
        vma = mm.find_vma(addr)
    if vma is None or fp != (vma, vma.start, vma.pgoff):
        return None
    return vma


# ------------------------------------------------------------------------------------------------
# shadow updates (called by the kernel model inside the step that makes or withdraws a promise)


def wp_op_start(mm, token, start, end, protect):
    """A UFFDIO_WRITEPROTECT of [start, end) begins; an unprotect withdraws the promise now."""
    u = mm.uffd
    u.inflight.append((token, start, end))
    for a in range(start, end):
        u.last[a] = token
        if not protect:
            u.wp.pop(a, None)


def wp_op_end(mm, token, start, end, protect, fp):
    """The UFFDIO_WRITEPROTECT ``token`` returns, having protected [start, end) of the VMA of
    :func:`fingerprint` ``fp`` (None: it failed)."""
    u = mm.uffd
    u.inflight = [op for op in u.inflight if op[0] is not token]
    if not protect or fp is None:
        return
    for a in range(start, end):
        if u.last.get(a) is token and not any(s <= a < e for _, s, e in u.inflight):
            u.wp[a] = fp


#: ``UffdPromises.last`` of an address whose protection something else ended after the last
#: UFFDIO_WRITEPROTECT started there: a protect still in flight does not promise it on return
WITHDRAWN = "withdrawn"


def forget_wp(mm, start, end):
    """Write protection of [start, end) ends (unregister, re-register without WP)."""
    u = mm.uffd
    for a in range(start, end):
        u.wp.pop(a, None)
        u.last[a] = WITHDRAWN


def poison_installed(vma, addr):
    vma.mm.uffd.poisoned[addr] = fingerprint(vma)


def marker_replaced(mm, addr):
    """A marker at ``addr`` was legitimately replaced or zapped (MADV_DONTNEED of a poison marker;
    UFFDIO_COPY/CONTINUE over a uffd-wp or poison marker): its promise ends."""
    u = mm.uffd
    u.poisoned.pop(addr, None)
    u.wp.pop(addr, None)
    if addr in u.last:
        u.last[addr] = WITHDRAWN


# ------------------------------------------------------------------------------------------------
# oracles


def check_access(k, t, mm, vma, addr, write) -> None:
    """At a user access the hardware lets through: not at a poisoned address, and no write at an
    address the monitor write-protected in a VMA still registered for WP."""
    u = mm.uffd
    if addr in u.poisoned and _binding(u.poisoned, mm, addr, vma) is not None:
        k.m.violation("data.poison-read",
                      f"{mm!r} addr {addr} was poisoned with UFFDIO_POISON, but a "
                      f"{'store' if write else 'load'} there reached memory instead of SIGBUS "
                      "(the poison marker was lost)", t, mm)
    if write and addr in u.wp and VM_UFFD_WP in vma.flags and \
            _binding(u.wp, mm, addr, vma) is not None:
        k.m.violation("data.uffd-wp-write-unnotified",
                      f"{mm!r} addr {addr} is write-protected by the monitor "
                      "(UFFDIO_WRITEPROTECT), but a store landed there without a uffd-wp fault "
                      "(the marker or the uffd-wp bit was lost)", t, mm)


def _entry(k, mm, addr):
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    if type(pmdv) is TablePmd:
        return k.pmd_table(pmdv).entries[geo.pte_index(addr)]
    return pmdv


def check_end(k) -> None:
    """End of run: every promised marker is still in the page tables (a PTE_MARKER_UFFD_WP or a
    present PTE with the uffd-wp bit; a PTE_MARKER_POISONED).  A poison marker, or a guard marker
    (7.0), keeps a write-protected address protected too: no store can land there at all, and
    change_pte_range() (mm/mprotect.c: 6.6, which added UFFDIO_POISON, and 7.0) leaves
    both alone, so UFFDIO_WRITEPROTECT over a poisoned or guarded address installs nothing."""
    for mm in k.mms:
        u = mm.uffd
        for addr in sorted(u.wp):
            vma = _binding(u.wp, mm, addr)
            if vma is None or VM_UFFD_WP not in vma.flags:
                continue
            ent = _entry(k, mm, addr)
            if ent == PTE_MARKER_UFFD_WP or (pte_present(ent) and ent.uffd_wp) or \
                    ent == PTE_MARKER_GUARD or ent == PTE_MARKER_POISONED:
                continue
            what = "a huge PMD" if type(ent) is HugePmd else repr(ent)
            k.m.violation("data.uffd-marker-lost",
                          f"{mm!r} addr {addr} is write-protected by the monitor, but its entry "
                          f"is {what}: neither a uffd-wp marker nor a uffd-wp PTE", None, mm)
        for addr in sorted(u.poisoned):
            if _binding(u.poisoned, mm, addr) is None:
                continue
            ent = _entry(k, mm, addr)
            if ent != PTE_MARKER_POISONED:
                k.m.violation("data.uffd-marker-lost",
                              f"{mm!r} addr {addr} was poisoned with UFFDIO_POISON, but its entry "
                              f"is {ent!r}, not the poison marker", None, mm,
                              "PTE_MARKER_POISONED")
