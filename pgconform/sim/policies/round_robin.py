"""Round-robin: every runnable task one step in turn, then the ready RCU callbacks, until every
task has ended and every callback has run (rcu_barrier).  Fair, so an operation that does not
finish under it is livelocked (``sched.no-progress`` at the step bound) or deadlocked
(``sched.deadlock``).  It finishes every run of the conformance machines and every schedule of
the exhaustive explorer, whatever policy chose the steps before."""

from __future__ import annotations

from pgconform.sim.errors import Violation


def run_round_robin(m) -> None:
    """Finish ``m``'s run fairly (``Machine.finish``)."""
    while True:
        progressed = False
        for t in list(m.tasks):
            if not t.done and t.pending.blocked(m, t) is None:
                m.step(t)
                progressed = True
        if progressed:
            continue
        ready = m.ready_callbacks()
        if ready:
            m.run_callback(ready[0])
            continue
        if m.active():
            m.check_deadlock()
            continue
        if m.callbacks:  # pragma: no cover - every reader has ended, so all are ready
            m._fail(Violation("rcu.stall", "RCU callbacks never became ready"), None)
        return
