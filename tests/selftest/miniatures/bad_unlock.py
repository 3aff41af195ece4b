"""Malformed effect: ``pte_unmap`` yields ``Unlock(None)``, an unlock of no lock, before doing the
reference's work."""

from pgconform.reference.pgtable_generic import pte_unmap as reference
from pgconform.sim.effects import Unlock


def pte_unmap(k, pte):
    yield Unlock(None)
    yield from reference(k, pte)


IMPL = {"pte_unmap": pte_unmap}
