"""Kernel versions as environments: what the kernel around the series does in each version.

An implementation is the series' own functions (``pgconform.implementation``); the kernel it runs in
is everything else: the callers, the other actors, the architecture configurations.  Those changed
after 6.6 too, and an implementation written for 7.0 must be judged in a 7.0 kernel, so each
:class:`~pgconform.implementation.Implementation` names its version (``Implementation.kernel``) and
:data:`VERSIONS` says what that version's environment is.

Sources: the v6.6 and v7.0 trees; the changes in between are named by commit where they are
modelled (6.13 pte_offset_map_{ro,rw}_nolock(), 6.14 6375e95f381e PT reclaim and 6c18ec9af86c,
later file_backed_vma_is_retractable() in mm/khugepaged.c).
"""

from __future__ import annotations

import attrs

from pgconform.kernel.arch import ARCHES, ArchConfig


@attrs.frozen
class KernelVersion:
    """The environment of one kernel version.  Every flag defaults to 6.6."""

    name: str
    #: 6.13 (Qi Zheng, "introduce pte_offset_map_{ro|rw}_nolock()"): pte_offset_map_nolock() is
    #: gone; readers call pte_offset_map_ro_nolock(), writers pte_offset_map_rw_nolock() and
    #: recheck pmd_same() (or pte_same() on a non-none entry) under the ptl before writing
    rw_nolock: bool = False
    #: 6.14 (6375e95f381e): MADV_DONTNEED reclaims PTE tables it leaves empty, on the arches that
    #: select ARCH_SUPPORTS_PT_RECLAIM (ArchConfig.pt_reclaim)
    pt_reclaim: bool = False
    #: 6.15-7.0: MADV_GUARD_INSTALL on file-backed VMAs, under the mmap read lock after setting
    #: VMA_MAYBE_GUARD_BIT atomically (the flag retract_page_tables() checks)
    guard_regions: bool = False
    #: 6.8 (adaa6d41db4f, "userfaultfd: UFFDIO_MOVE uABI"): UFFDIO_MOVE moves anonymous pages
    #: between anonymous private VMAs (kernel/userfaultfd.py move_pages())
    uffd_move: bool = False
    source: str = ""

    def arch(self, name: str) -> ArchConfig:
        """The configuration of arch ``name`` in this version (KeyError: no such arch); what
        changed since 6.6 is the arch record's own (ArchConfig.versions, pgconform.kernel.arch)."""
        return ARCHES[name].in_version(self.name)


V6_6 = KernelVersion(name="6.6", source="v6.6 and its stable updates (v6.6.0 to 6.6.57)")

V7_0 = KernelVersion(
    name="7.0", rw_nolock=True, pt_reclaim=True, guard_regions=True, uffd_move=True,
    source="v7.0 (read in the v7.0.0 tree of github julianw1010/hydra-7.0.0-fork, 826db671768a); "
           "C1 (6.13), C2 (6.14), "
           "718b13861d22, d08d4e7cd6bf",
)

VERSIONS: dict[str, KernelVersion] = {v.name: v for v in (V6_6, V7_0)}
