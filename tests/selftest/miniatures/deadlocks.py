"""Deadlocks: ``pte_offset_map_lock`` takes the ptl a second time (a self-deadlock:
lock.recursive)."""

from pgconform.reference.pgtable_generic import pte_offset_map_lock as reference
from pgconform.sim.effects import Lock


def pte_offset_map_lock(k, mm, pmdp, addr):
    pte, ptl = yield from reference(k, mm, pmdp, addr)
    if ptl is not None:
        yield Lock(ptl)
    return pte, ptl


IMPL = {"pte_offset_map_lock": pte_offset_map_lock}
