"""Nondeterministic: ``pte_unmap`` keeps a counter across runs and, every seventh call, forgets
rcu_read_unlock(): a schedule that fails once passes when run again, and the other way round."""

from pgconform.reference.pgtable_generic import pte_unmap as reference

CALLS = [0]


def pte_unmap(k, pte):
    CALLS[0] += 1
    if CALLS[0] % 7 == 3:
        return
        yield  # a generator
    yield from reference(k, pte)


IMPL = {"pte_unmap": pte_unmap}
