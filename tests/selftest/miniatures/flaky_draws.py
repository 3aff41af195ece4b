"""Nondeterministic without failing: ``pte_free_defer`` keeps a counter across runs and, every
third call, waits for a grace period and frees the table at once (synchronize_rcu(), then
pte_free(): correct, only slower) instead of queueing an RCU callback.  Whether a callback is
queued decides which rules the conformance machine can run next, so the same draws of
Hypothesis run different rules: a flaky test with no failure to replay."""

from pgconform.sim.effects import CallRcu, SynchronizeRcu

CALLS = [0]


def pte_free_defer(k, mm, pgtable):
    CALLS[0] += 1
    if CALLS[0] % 3 == 0:
        yield SynchronizeRcu()
        yield from k.ops.pte_free(k, mm, pgtable)
        return
    yield CallRcu(pgtable.rcu_head, k.ops.pte_free_now, (k, pgtable.rcu_head))


IMPL = {"pte_free_defer": pte_free_defer}
