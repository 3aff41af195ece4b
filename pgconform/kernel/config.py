"""The geometry of the modelled kernel, and how it compiles plain page-table reads.

The architectures are :mod:`pgconform.kernel.arch`, one module per arch.

The geometry is scaled down (a few PTEs per table) so that short schedules reach every interesting
state; HPAGE_PMD_NR equals PTRS_PER_PTE, as in the kernel.  Addresses are virtual page numbers.
"""

from __future__ import annotations

import os

import attrs

#: How the model compiles two plain (not READ_ONCE) C reads of one page-table entry that have no
#: call, barrier or volatile access between them: C lets the compiler merge them into one load
#: ("fused", what GCC 12.2 emits for x86-64 change_pmd_range(), mm/mprotect.o) or emit two
#: ("split", C's abstract semantics, which another compiler, arch or instrumented build may
#: emit).  kernel/mprotect.py change_pmd_range() is where the model has such a pair.
PLAIN_READS_FORMS = ("fused", "split")
#: the environment variable choosing the form (default "fused": kernel/mprotect.py says why)
PLAIN_READS_ENV = "PGCONFORM_PLAIN_READS"


def plain_reads_form(value: str | None = None) -> str:
    """The form of plain page-table reads a run models: ``value``, else ``PGCONFORM_PLAIN_READS``,
    else "fused".  Anything else is a ValueError naming the choices."""
    if value is None:
        value = os.environ.get(PLAIN_READS_ENV) or "fused"
    if value not in PLAIN_READS_FORMS:
        raise ValueError(f"{PLAIN_READS_ENV}={value!r}: the form of plain page-table reads is one "
                         f"of {', '.join(PLAIN_READS_FORMS)}")
    return value


@attrs.frozen
class Geometry:
    ptrs_per_pte: int = 4   # PTRS_PER_PTE == HPAGE_PMD_NR
    ptrs_per_pmd: int = 4   # PMD slots per mm (one PMD table per mm)

    @property
    def hpage_pmd_nr(self) -> int:
        return self.ptrs_per_pte

    def pmd_index(self, addr: int) -> int:
        return addr // self.ptrs_per_pte

    def pte_index(self, addr: int) -> int:
        return addr % self.ptrs_per_pte

    def haddr(self, addr: int) -> int:
        """addr & HPAGE_PMD_MASK"""
        return addr - addr % self.ptrs_per_pte

    @property
    def task_size(self) -> int:
        return self.ptrs_per_pte * self.ptrs_per_pmd
