"""Corrupts: ``pte_offset_map_lock`` returns a pointer into a table that is not a page table (a
list), which passes the type check of the return value's container but breaks the model where it
is used (impl.bad-value)."""

from pgconform.kernel.objects import PtePtr
from pgconform.reference.pgtable_generic import pte_offset_map_lock as reference


def pte_offset_map_lock(k, mm, pmdp, addr):
    pte, ptl = yield from reference(k, mm, pmdp, addr)
    if pte is None:
        return pte, ptl
    return PtePtr([], pte.idx), ptl


IMPL = {"pte_offset_map_lock": pte_offset_map_lock}
