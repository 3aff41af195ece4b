"""A14: pte_offset_map_nolock() deriving the ptl from a re-read of ``*pmd`` (the pre-6.6 idiom).

arch/arm/mm/fault-armv.c and arch/powerpc/mm/pgtable.c before 6.6, the reason for patches 03
(arm adjust_pte, de2e4626c706) and 04 (powerpc
assert_pte_locked): ``pte_offset_map(pmd)`` then ``pte_lockptr(mm, pmd)``, which dereferences the
pmd again instead of using the value the map was made from.  If the table was retracted between
the two reads, the ptl is computed from a none (or huge, or other table's) pmd: pmd_page() of
garbage, or another table's lock.  Without split PTE ptlocks the lock is mm->page_table_lock
whatever the pmd says, so the idiom is harmless there (arm, x86_64-nosplit)."""

from pgconform.implementation import Implementation
from pgconform.kernel.arch import arches_where
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.sim.effects import Load


def pte_offset_map_nolock(k, mm, pmdp, addr):
    """The mutation: map with pte_offset_map(), then pte_lockptr(mm, pmd) of a fresh read of the
    pmd entry rather than of the snapshot the map used."""
    pte = yield from k.ops.pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, None
    ptl = yield from k.ops.pte_lockptr(k, mm, (yield Load(pmdp.table, pmdp.idx)))
    return pte, ptl


MUTANT = Implementation(
    name="zoo.pte_lockptr_from_reread_pmd",
    overrides={"pte_offset_map_nolock": pte_offset_map_nolock},
    description="pte_offset_map_nolock() computes the ptl from a re-read of *pmd, not from the "
                "snapshot that pte_offset_map() mapped",
    source="arch/arm/mm/fault-armv.c adjust_pte(), arch/powerpc/mm/pgtable.c assert_pte_locked(): "
           "the 6.5 idiom pte_offset_map() + pte_lockptr(mm, pmd) that "
           "patches 03 (de2e4626c706) and 04 (3d140215a6ae) replaced",
    expected=("pt.lock-mismatch", "pt.write-unlocked", "pt.assert-pte-locked"),
    arches=arches_where(lambda arch: arch.split_pte_ptlocks),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
