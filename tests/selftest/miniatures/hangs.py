"""Hangs: ``__pte_offset_map`` loops forever without yielding an effect (impl.hang: the
watchdog interrupts it; the step bound cannot, since no effect is ever yielded)."""

from pgconform.reference.pgtable_generic import __pte_offset_map as reference


def __pte_offset_map(k, pmdp, addr):
    n = 0
    while n >= 0:  # forever: n only grows
        n += 1
    return (yield from reference(k, pmdp, addr))


IMPL = {"__pte_offset_map": __pte_offset_map}
