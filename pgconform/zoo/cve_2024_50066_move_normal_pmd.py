"""CVE-2024-50066: move_normal_pmd() without the recheck under the pmd lock (Linux 6.6.0 to 6.11).

Patch 09 of the series let retract_page_tables() clear a PMD under i_mmap_rwsem for read only.
mremap's move_page_tables() looks at the old PMD before move_pgt_entry() takes the rmap locks, and
6.6.0's move_normal_pmd() then moves whatever the slot holds: when retract cleared it in between,
pmd_populate() links pmd_pgtable() of a none PMD into the new slot.  Fixed by 6fa1066fc5d0
("mm/mremap: fix move_normal_pmd/retract_page_tables race", Jann Horn, 6.12 and stable; Fixes:
1d65b771bc08)."""

from pgconform.implementation import Implementation
from pgconform.kernel.arch import arches_where
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.reference.mremap import move_normal_pmd_as


def move_normal_pmd(k, vma, old_addr, new_addr, old_pmd, new_pmd):
    """The mutation (6.6.0 as released): no recheck of the old entry under the pmd lock."""
    return (yield from move_normal_pmd_as(k, vma, old_addr, new_addr, old_pmd, new_pmd,
                                          recheck=False))


MUTANT = Implementation(
    name="zoo.move_normal_pmd_no_recheck",
    overrides={"move_normal_pmd": move_normal_pmd},
    description="mremap's move_normal_pmd() moves a PMD retract just cleared (6.6.0, "
                "CVE-2024-50066)",
    source="6fa1066fc5d0 mm/mremap: fix move_normal_pmd/retract_page_tables race (Fixes: "
           "1d65b771bc08)",
    expected=("pt.populate-dead",),
    arches=arches_where(lambda arch: arch.move_pmd),  # CONFIG_HAVE_MOVE_PMD
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
