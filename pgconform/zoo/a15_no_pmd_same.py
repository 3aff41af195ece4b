"""A15: pte_offset_map_lock() without the pmd_same() recheck after taking the ptl.

mm/pgtable-generic.c __pte_offset_map_lock() (0d940a9b270b, 6.5) without its pmd_same() recheck:
the caller locks the ptl of the table its snapshot named, which may
have been detached meanwhile, and writes into it: the entry is lost with the table."""

from pgconform.implementation import Implementation
from pgconform.reference import POISON_KNOWN_CONSEQUENCES, POISON_KNOWN_VIOLATIONS
from pgconform.sim.effects import Lock


def pte_offset_map_lock(k, mm, pmdp, addr):
    """The mutation: map, lock, return, with no recheck of ``*pmd``."""
    pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, None
    ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
    yield Lock(ptl)
    return pte, ptl


MUTANT = Implementation(
    name="zoo.pte_offset_map_lock_no_pmd_same",
    overrides={"pte_offset_map_lock": pte_offset_map_lock},
    description="pte_offset_map_lock() returns without checking pmd_same() under the ptl",
    source="mm/pgtable-generic.c __pte_offset_map_lock(): the recheck of 0d940a9b270b removed",
    expected=("pt.write-detached", "pt.free-nonempty", "data.mismatch", "acct.rss"),
    known_violations=POISON_KNOWN_VIOLATIONS,
    known_consequences=POISON_KNOWN_CONSEQUENCES,
)
