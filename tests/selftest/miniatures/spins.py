"""Spins: ``__pte_offset_map`` re-reads the PMD forever (a livelock: sched.no-progress)."""

from pgconform.reference.pgtable_generic import pmdp_get_lockless


def __pte_offset_map(k, pmdp, addr):
    while True:
        yield from pmdp_get_lockless(k, pmdp)


IMPL = {"__pte_offset_map": __pte_offset_map}
