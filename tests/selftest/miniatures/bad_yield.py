"""Bad yield: ``__pte_offset_map`` yields a string instead of a simulator effect."""

from pgconform.reference.pgtable_generic import __pte_offset_map as reference


def __pte_offset_map(k, pmdp, addr):
    yield "rcu_read_lock"
    return (yield from reference(k, pmdp, addr))


IMPL = {"__pte_offset_map": __pte_offset_map}
