"""Garbage: ``__pte_offset_map`` returns a string where the kernel returns (pte, pmdval)."""

from pgconform.reference.pgtable_generic import __pte_offset_map as reference


def __pte_offset_map(k, pmdp, addr):
    yield from reference(k, pmdp, addr)
    return "a pte"


IMPL = {"__pte_offset_map": __pte_offset_map}
