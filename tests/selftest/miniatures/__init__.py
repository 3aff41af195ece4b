"""Miniatures: tiny broken implementations, one per way an implementation can misbehave as code
or break the protocol's discipline, each of which must get its own verdict (never a crash of the
harness).  ``tests/selftest/test_verdicts.py`` judges each one; import them as
``miniatures.NAME:IMPL`` with ``tests/selftest`` on ``sys.path``.

Each overrides a function every fault goes through (``__pte_offset_map``, ``pte_offset_map_lock``,
``pte_unmap``...), wrapping the reference where it needs to behave at all.
"""

#: miniature -> (the clauses it may be judged under, the outcome): a livelock can also end in a
#: deadlock of the tasks waiting on it; a leaked spinlock in a deadlock or a recursion of its next
#: taker, or a sleep under it; a leaked RCU read section in a sleep inside it
VERDICTS = {
    "raises": (("impl.raised",), "errored"),
    "hangs": (("impl.hang",), "errored"),
    "bad_yield": (("impl.bad-yield",), "errored"),
    "bad_lock": (("impl.bad-yield",), "errored"),
    "bad_unlock": (("impl.bad-yield",), "errored"),
    "garbage": (("impl.bad-return",), "errored"),
    "not_a_generator": (("impl.bad-return",), "errored"),
    "wrong_signature": (("impl.bad-return",), "errored"),
    "calls_missing": (("impl.raised",), "errored"),
    "corrupts": (("impl.bad-value",), "errored"),
    "nondeterministic": (("impl.nondeterministic",), "errored"),
    "flaky_draws": (("impl.nondeterministic",), "errored"),
    "spins": (("sched.no-progress", "sched.deadlock"), "failed"),
    "deadlocks": (("lock.recursive",), "failed"),
    "leaves_lock_held": (("lock.held-at-exit", "sched.deadlock", "lock.recursive",
                          "lock.recursive-class", "sched.sleep-in-atomic"), "failed"),
    "leaves_rcu_held": (("rcu.held-at-exit", "sched.sleep-in-atomic"), "failed"),
}
