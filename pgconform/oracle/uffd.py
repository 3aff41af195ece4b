"""The userfaultfd shadow: what UFFDIO_WRITEPROTECT and UFFDIO_POISON promised a process, and the
oracles that hold the kernel to it (lost uffd-wp markers, zoo mutant A8; lost poison).

The promises are this oracle's own state, per mm (:class:`UffdPromises`, in :class:`UffdOracle`).
The kernel model announces the events that make or legitimately withdraw one (kernel/hooks.py), in
the step where that happens:

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

import attrs

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


@attrs.define(slots=True, eq=False)
class UffdPromises:
    """What userfaultfd promised one process, per address.

    ``wp``: addresses a UFFDIO_WRITEPROTECT that returned protected and that nobody has asked to
    unprotect since (unprotect, unregister, or an explicit UFFDIO_COPY/CONTINUE over the marker).
    ``poisoned``: addresses where UFFDIO_POISON installed a marker that no legitimate path
    (MADV_DONTNEED, UFFDIO_COPY/CONTINUE over it) has removed since.  ``inflight`` and ``last``
    void a protect whose range another UFFDIO_WRITEPROTECT touched while it ran: userspace raced
    itself, and the outcome is either.  ``applied``: token -> the fingerprint of the VMA each
    UFFDIO_WRITEPROTECT in flight found registered for WP (under mmap_lock)."""

    #: address -> (vma, vm_start, vm_pgoff) the promise was made in
    wp: dict = attrs.field(factory=dict)
    poisoned: dict = attrs.field(factory=dict)
    inflight: list = attrs.field(factory=list)
    last: dict = attrs.field(factory=dict)
    applied: dict = attrs.field(factory=dict)


#: ``UffdPromises.last`` of an address whose protection something else ended after the last
#: UFFDIO_WRITEPROTECT started there: a protect still in flight does not promise it on return
WITHDRAWN = "withdrawn"

_NONE = UffdPromises()  # what a process that was promised nothing has (never written)


class UffdOracle:
    """The userfaultfd shadow of one world and its oracles, subscribed to the kernel's events by
    :func:`pgconform.oracle.install`."""

    def __init__(self, k) -> None:
        self.k = k
        self.by_mm: dict = {}

    def promises(self, mm) -> UffdPromises:
        """What userfaultfd promised ``mm`` (read-only for callers)."""
        return self.by_mm.get(mm, _NONE)

    def _of(self, mm) -> UffdPromises:
        u = self.by_mm.get(mm)
        if u is None:
            u = self.by_mm[mm] = UffdPromises()
        return u

    # --------------------------------------------------------------------------------------------
    # shadow updates (announced by the kernel model in the step that makes or withdraws a promise)

    def wp_op_start(self, mm, token, start, end, protect) -> None:
        """A UFFDIO_WRITEPROTECT of [start, end) begins; an unprotect withdraws the promise now."""
        u = self._of(mm)
        u.inflight.append((token, start, end))
        for a in range(start, end):
            u.last[a] = token
            if not protect:
                u.wp.pop(a, None)

    def wp_applied(self, mm, token, vma) -> None:
        """The UFFDIO_WRITEPROTECT ``token`` found ``vma`` registered for WP (under mmap_lock)."""
        self._of(mm).applied[token] = fingerprint(vma)

    def wp_op_end(self, mm, token, start, end, protect) -> None:
        """The UFFDIO_WRITEPROTECT ``token`` returns, having protected [start, end) of the VMA it
        found (none: it failed)."""
        u = self._of(mm)
        fp = u.applied.pop(token, None)
        u.inflight = [op for op in u.inflight if op[0] is not token]
        if not protect or fp is None:
            return
        for a in range(start, end):
            if u.last.get(a) is token and not any(s <= a < e for _, s, e in u.inflight):
                u.wp[a] = fp

    def forget_wp(self, mm, start, end) -> None:
        """Write protection of [start, end) ends (unregister, re-register without WP)."""
        u = self._of(mm)
        for a in range(start, end):
            u.wp.pop(a, None)
            u.last[a] = WITHDRAWN

    def poison_installed(self, vma, addr) -> None:
        self._of(vma.mm).poisoned[addr] = fingerprint(vma)

    def marker_replaced(self, mm, addr) -> None:
        """A marker at ``addr`` was legitimately replaced or zapped (MADV_DONTNEED of a poison
        marker; UFFDIO_COPY/CONTINUE over a uffd-wp or poison marker): its promise ends."""
        u = self.by_mm.get(mm)
        if u is None:
            return
        u.poisoned.pop(addr, None)
        u.wp.pop(addr, None)
        if addr in u.last:
            u.last[addr] = WITHDRAWN

    # --------------------------------------------------------------------------------------------
    # oracles

    def check_access(self, k, t, mm, vma, addr, write, folio, idx) -> None:
        """At a user access the hardware lets through: not at a poisoned address, and no write at
        an address the monitor write-protected in a VMA still registered for WP."""
        u = self.by_mm.get(mm)
        if u is None or not (u.wp or u.poisoned):
            return
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

    def check_end(self) -> None:
        """End of run: every promised marker is still in the page tables (a PTE_MARKER_UFFD_WP or
        a present PTE with the uffd-wp bit; a PTE_MARKER_POISONED).  A poison marker, or a guard
        marker (7.0), keeps a write-protected address protected too: no store can land there at
        all, and change_pte_range() (mm/mprotect.c: 6.6, which added UFFDIO_POISON, and 7.0)
        leaves both alone, so UFFDIO_WRITEPROTECT over a poisoned or guarded address installs
        nothing."""
        k = self.k
        for mm in k.mms:
            u = self.promises(mm)
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
                              f"{mm!r} addr {addr} is write-protected by the monitor, but its "
                              f"entry is {what}: neither a uffd-wp marker nor a uffd-wp PTE",
                              None, mm)
            for addr in sorted(u.poisoned):
                if _binding(u.poisoned, mm, addr) is None:
                    continue
                ent = _entry(k, mm, addr)
                if ent != PTE_MARKER_POISONED:
                    k.m.violation("data.uffd-marker-lost",
                                  f"{mm!r} addr {addr} was poisoned with UFFDIO_POISON, but its "
                                  f"entry is {ent!r}, not the poison marker", None, mm,
                                  "PTE_MARKER_POISONED")


def _entry(k, mm, addr):
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    if type(pmdv) is TablePmd:
        return k.pmd_table(pmdv).entries[geo.pte_index(addr)]
    return pmdv
