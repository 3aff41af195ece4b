"""Leaves RCU held: ``pte_unmap`` forgets rcu_read_unlock (rcu.held-at-exit)."""

from pgconform.sim.effects import Atomic


def _nothing(m, t):
    return None


def pte_unmap(k, pte):
    yield Atomic("pte_unmap() without rcu_read_unlock()", _nothing)


IMPL = {"pte_unmap": pte_unmap}
