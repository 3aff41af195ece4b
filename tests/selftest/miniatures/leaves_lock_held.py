"""Leaves a lock held: ``pte_unmap_unlock`` forgets spin_unlock (lock.held-at-exit, unless a
waiter deadlocks on the lock first)."""


def pte_unmap_unlock(k, pte, ptl):
    yield from k.ops.pte_unmap(k, pte)


IMPL = {"pte_unmap_unlock": pte_unmap_unlock}
