"""Malformed effect: ``__pte_offset_map`` yields ``Lock("x")``, a lock effect whose lock is a
string, before doing the reference's work."""

from pgconform.reference.pgtable_generic import __pte_offset_map as reference
from pgconform.sim.effects import Lock


def __pte_offset_map(k, pmdp, addr):
    yield Lock("x")
    return (yield from reference(k, pmdp, addr))


IMPL = {"__pte_offset_map": __pte_offset_map}
