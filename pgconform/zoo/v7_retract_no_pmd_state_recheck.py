"""7.0 mutant: retract_page_tables() without the pmd-state recheck under pml (before 6c18ec9af86c).

mm/khugepaged.c retract_page_tables(), 7.0; mm/memory.c zap_pte_range(): from 6.14 (6375e95f381e)
MADV_DONTNEED reclaims the PTE tables it empties under the mmap
read lock only.  retract_page_tables() finds the table locklessly; if the reclaim clears the PMD
before retract takes pml, retract derives the ptl from a none PMD (pte_lockptr() of garbage) and
clears and frees whatever is there.  Qi Zheng's series added check_pmd_state() under pml with the
reclaim (6c18ec9af86c, suggested by Jann Horn): this is 7.0 without it."""

from pgconform.implementation import Implementation
from pgconform.versions import v7_0


def retract_page_tables(k, mapping, pgoff):
    """The mutation: no check_pmd_state() after pmd_lock()."""
    yield from v7_0.retract_page_tables_as(k, mapping, pgoff, pmd_state_recheck=False)


MUTANT = Implementation(
    name="zoo.v7_retract_no_pmd_state_recheck",
    kernel="7.0",
    overrides={**v7_0.IMPLEMENTATION.overrides, "retract_page_tables": retract_page_tables},
    arch_overrides=v7_0.IMPLEMENTATION.arch_overrides,
    arches=v7_0.PT_RECLAIM_ARCHES,  # ARCH_SUPPORTS_PT_RECLAIM
    description="7.0 retract_page_tables() without check_pmd_state() under pml: MADV_DONTNEED's "
                "PT reclaim may have freed the table it found",
    source="6c18ec9af86c mm: khugepaged: recheck pmd state in retract_page_tables() (6.14)",
    expected=("pt.lock-mismatch", "pt.not-a-table"),
    known_violations=v7_0.IMPLEMENTATION.known_violations,
    known_consequences=v7_0.IMPLEMENTATION.known_consequences,
)
