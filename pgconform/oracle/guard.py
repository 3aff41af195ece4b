"""The guard-region shadow: what MADV_GUARD_INSTALL promised a process (Linux 7.0: guard regions on
file-backed VMAs, kernel/madvise_guard.py), and the oracle that holds the kernel to it
(a lost guard marker, the guard-region case of a lost marker).

A guard marker promises that every access to its address faults with SIGSEGV until the process
takes it away.  The promise is recorded per mm and address (:class:`GuardOracle`'s own state) in
the step that stores the marker under the ptl, and withdrawn in the step of each legitimate removal
(the kernel model announces both, kernel/hooks.py):

* MADV_GUARD_REMOVE clearing the marker;
* a zap that drops markers (ZAP_FLAG_DROP_MARKER: munmap and exit, and unmap_mapping_folio() when
  truncation finds the folio of that file offset still mapped somewhere).

MADV_DONTNEED, hole punching's unmap_mapping_range() and MADV_GUARD_INSTALL's own zap keep guard
markers (7.0 zap_nonpresent_ptes()), as do mprotect() and UFFDIO_WRITEPROTECT; so nothing else may
take one away: not retract_page_tables() (which must leave a VMA with VMA_MAYBE_GUARD_BIT alone),
not a collapse, not a fault, not UFFDIO_COPY.

A promise binds only while the VMA it was made in still covers the address at the same place
(munmap ends it anyway; mremap moves the markers with the page tables but the promise, kept per
address, lapses conservatively; a child of fork() gets no promise of its own).

Clause ``data.guard-marker-lost``: a user access (CPU or GUP) at a guarded address that reaches
memory instead of SIGSEGV, or, at the end of a run, a guarded address whose entry is not its guard
marker.
"""

from __future__ import annotations

from pgconform.kernel.objects import PTE_MARKER_GUARD, HugePmd, TablePmd

CLAUSE = "data.guard-marker-lost"


def fingerprint(vma):
    """The VMA a promise was made in, where it was: the promise lapses if the VMA goes or moves."""
    return (vma, vma.start, vma.pgoff)


def _binding(guards, mm, addr, vma=None):
    """The VMA covering ``addr`` if the guard promise at ``addr`` was made in it, else None."""
    fp = guards.get(addr)
    if fp is None:
        return None
    if vma is None:
        vma = mm.find_vma(addr)
    if vma is None or fp != fingerprint(vma):
        return None
    return vma


class GuardOracle:
    """The guard-region shadow of one world (mm -> address -> the fingerprint of the VMA each
    guard marker was installed in) and its oracle, subscribed by
    :func:`pgconform.oracle.install`."""

    def __init__(self, k) -> None:
        self.k = k
        self.by_mm: dict = {}

    def guards(self, mm) -> dict:
        """The addresses ``mm`` guarded (read-only for callers)."""
        return self.by_mm.get(mm) or {}

    # --------------------------------------------------------------------------------------------
    # shadow updates (announced in the step that stores or clears the marker)

    def guard_installed(self, vma, addr) -> None:
        """MADV_GUARD_INSTALL stored a PTE_MARKER_GUARD at ``addr`` of ``vma``."""
        self.by_mm.setdefault(vma.mm, {})[addr] = fingerprint(vma)

    def guard_removed(self, mm, addr) -> None:
        """A guard marker at ``addr`` was legitimately cleared (MADV_GUARD_REMOVE, or a zap that
        drops markers): its promise ends."""
        guards = self.by_mm.get(mm)
        if guards:
            guards.pop(addr, None)

    # --------------------------------------------------------------------------------------------
    # oracles

    def check_access(self, k, t, mm, vma, addr, what) -> None:
        """At an access the page tables let through (a CPU load or store, a page GUP confirms):
        not at an address the process guarded."""
        guards = self.by_mm.get(mm)
        if guards and addr in guards and _binding(guards, mm, addr, vma) is not None:
            k.m.violation(CLAUSE,
                          f"{mm!r} addr {addr} is a guard region (MADV_GUARD_INSTALL, not removed "
                          f"since), but a {what} there reached memory instead of SIGSEGV (the "
                          "guard marker was lost)", t, mm)

    def check_user_access(self, k, t, mm, vma, addr, write, folio, idx) -> None:
        """The ``user_access`` event: a CPU load or store."""
        if self.by_mm.get(mm):
            self.check_access(k, t, mm, vma, addr, "store" if write else "load")

    def check_end(self) -> None:
        """End of run: every guarded address still holds its guard marker."""
        k = self.k
        for mm in k.mms:
            guards = self.guards(mm)
            for addr in sorted(guards):
                if _binding(guards, mm, addr) is None or _holds_marker(k, mm, addr):
                    continue
                k.m.violation(CLAUSE,
                              f"{mm!r} addr {addr} is a guard region (MADV_GUARD_INSTALL, not "
                              f"removed since), but its entry is {_describe(k, mm, addr)}, not "
                              "the guard marker", None, mm)


def _describe(k, mm, addr) -> str:
    """What the page tables of ``mm`` hold at ``addr``, for the message."""
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    if type(pmdv) is HugePmd:
        return f"mapped by a huge PMD ({pmdv!r})"
    if type(pmdv) is not TablePmd:
        return "under a none PMD (no PTE table: it went with the marker)"
    return f"{k.pmd_table(pmdv).entries[geo.pte_index(addr)]!r}"


def _holds_marker(k, mm, addr) -> bool:
    geo = k.geo
    pmdv = mm.pmd_table.entries[geo.pmd_index(addr)]
    return (type(pmdv) is TablePmd
            and k.pmd_table(pmdv).entries[geo.pte_index(addr)] == PTE_MARKER_GUARD)
