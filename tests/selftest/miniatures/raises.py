"""Raises: ``__pte_offset_map`` raises after reading the PMD (impl.raised)."""

from pgconform.reference.pgtable_generic import __pte_offset_map as reference


def __pte_offset_map(k, pmdp, addr):
    result = yield from reference(k, pmdp, addr)
    raise RuntimeError("this implementation gives up")
    return result  # never reached


IMPL = {"__pte_offset_map": __pte_offset_map}
