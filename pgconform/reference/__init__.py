"""The reference implementation: the series as merged in Linux 6.6, one module per kernel file.

``REFERENCE_FUNCTIONS`` maps every generic name of :data:`pgconform.implementation.SERIES_FUNCTIONS`
to its reference function; ``ARCH_FUNCTIONS`` holds each architecture's own (``reference/arch/``,
one module per ``ArchConfig.allocator`` named by the arch records of :mod:`pgconform.kernel.arch`,
in any kernel version), which :func:`reference_functions` puts over the generic ones.
``IMPLEMENTATION`` is the registered ``reference`` implementation (no overrides).
"""

from __future__ import annotations

import importlib

from pgconform.implementation import SERIES_FUNCTIONS, Implementation
from pgconform.kernel.arch import ARCHES
from pgconform.kernel.mprotect import (
    PLAIN_READ_RACE,
    PLAIN_READ_RACE_CONSEQUENCES,
    PLAIN_READ_RACE_WHY,
)
from pgconform.reference import (
    gup,
    khugepaged,
    memory,
    mm,
    mprotect,
    mremap,
    pgtable_generic,
    userfaultfd,
)
from pgconform.reference.arch import arm, generic

_MODULES = {"pgtable_generic": pgtable_generic, "mm": mm, "khugepaged": khugepaged,
            "mremap": mremap, "userfaultfd": userfaultfd, "gup": gup, "memory": memory,
            "mprotect": mprotect, "arm": arm, "arch": generic}

REFERENCE_FUNCTIONS = {name: getattr(_MODULES[mod], name) for name, mod in SERIES_FUNCTIONS.items()
                       if hasattr(_MODULES[mod], name)}


def _allocators() -> list[str]:
    """Every ``ArchConfig.allocator`` an arch record names, in 6.6 or in a later version."""
    names = {"generic"}
    for config in ARCHES.values():
        names.add(config.allocator)
        names.update(changes.get("allocator", config.allocator)
                     for changes in config.versions.values())
    return sorted(names)


#: ArchConfig.allocator -> the functions that arch defines itself: the ``FUNCTIONS`` of the module
#: of reference/arch/ so named (the arch record is where they are registered)
ARCH_FUNCTIONS = {name: importlib.import_module(f"pgconform.reference.arch.{name}").FUNCTIONS
                  for name in _allocators()}

#: every reference function, generic or arch (to tell an implementation's code from ours)
ALL_REFERENCE_FUNCTIONS = frozenset(REFERENCE_FUNCTIONS.values()).union(
    *(fns.values() for fns in ARCH_FUNCTIONS.values()))


def reference_functions(arch=None) -> dict:
    """The reference's function table on ``arch`` (an ArchConfig; None: generic)."""
    table = dict(REFERENCE_FUNCTIONS)
    if arch is not None:
        table.update(ARCH_FUNCTIONS[arch.allocator])
    return table


#: Findings of the suite in Linux 6.6 (and still in 7.0): a PTE_MARKER_POISONED that UFFDIO_POISON
#: put into a table of a file VMA is freed with it.  mfill_atomic_pte_poison() stores the marker
#: under the ptl alone (mmap_lock for read, no folio lock), and neither remover of the table looks
#: for it: retract_page_tables() checks anon_vma and userfaultfd_wp() only, and
#: collapse_pte_mapped_thp() drops the ptl of a shared VMA between step 2 (the PTEs cleared) and
#: step 4 (the table freed).  The next access reads the page instead of SIGBUS.  Scoped to the
#: two functions and to a table whose live entries are all poison markers, so that the same
#: clause anywhere else (a PTE lost, a guard marker) still fails.
#: tests/selftest/test_uffd.py::test_poison_survives_retract and
#: ::test_poison_survives_collapse_pte_mapped_thp (strict xfails) show them.
POISON_RETRACT_FINDING = (
    "finding in 6.6 (still in 7.0): retract_page_tables() frees a table holding a "
    "PTE_MARKER_POISONED that UFFDIO_POISON installed (under the ptl alone) in a file VMA: its "
    "checks (anon_vma, userfaultfd_wp) do not cover poison markers; the next access reads the "
    "page instead of SIGBUS")
POISON_COLLAPSE_FINDING = (
    "finding in 6.6 (still in 7.0): collapse_pte_mapped_thp() drops the ptl of a shared VMA "
    "between step 2 (PTEs cleared) and step 4 (table freed); UFFDIO_POISON can put a "
    "PTE_MARKER_POISONED into the emptied table there, and step 4 frees it with the marker")
#: the symptoms of a lost poison marker: the table's free again in the RCU callback, the read
#: that reaches memory, the end-of-run check
POISON_LOST_CONSEQUENCES = ("pt.free-nonempty[PTE_MARKER_POISONED]", "data.poison-read",
                            "data.uffd-marker-lost[PTE_MARKER_POISONED]")
POISON_KNOWN_VIOLATIONS = {
    "pt.free-nonempty[PTE_MARKER_POISONED]@retract_page_tables": POISON_RETRACT_FINDING,
    "pt.free-nonempty[PTE_MARKER_POISONED]@collapse_pte_mapped_thp": POISON_COLLAPSE_FINDING,
}
POISON_KNOWN_CONSEQUENCES = dict.fromkeys(POISON_KNOWN_VIOLATIONS, POISON_LOST_CONSEQUENCES)


IMPLEMENTATION = Implementation(
    name="reference",
    description="Linux 6.6 as merged: mm/pgtable-generic.c, include/linux/mm.h, mm/khugepaged.c, "
                "and the arch pte_free_defer()s (powerpc, s390, sparc64; s390 6.7)",
    source="v6.6 (a349d72fd9ef, 146b42e07494, de2e4626c706, 3d140215a6ae, 32cc0b7c9d50, "
           "ad1ac8d94cde, 8211dad62798, 13cf577e6b66, 1d65b771bc08, 1043173eb5eb, a98460494b16)",
    # the poison findings, and one in the 6.6 kernel around the series seen only when plain
    # reads are split
    known_violations={**POISON_KNOWN_VIOLATIONS, PLAIN_READ_RACE: PLAIN_READ_RACE_WHY},
    known_consequences={**POISON_KNOWN_CONSEQUENCES,
                        PLAIN_READ_RACE: PLAIN_READ_RACE_CONSEQUENCES},
)
