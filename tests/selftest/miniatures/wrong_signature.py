"""Wrong signature: ``pte_offset_map_lock`` without the ``mm`` argument the kernel passes."""

from pgconform.reference.pgtable_generic import pte_offset_map_lock as reference


def pte_offset_map_lock(k, pmdp, addr):
    return (yield from reference(k, None, pmdp, addr))


IMPL = {"pte_offset_map_lock": pte_offset_map_lock}
