"""Round-robin: every runnable task one step in turn, then the ready RCU callbacks, until every
task has ended and every callback has run (rcu_barrier).  Fair, so an operation that does not
finish under it is livelocked (``sched.no-progress`` at the step bound) or deadlocked
(``sched.deadlock``).  It finishes every run of the conformance machines and every schedule of
the exhaustive explorer, whatever policy chose the steps before (``Machine.finish``)."""

from __future__ import annotations

from pgconform.sim.errors import Violation
from pgconform.sim.scheduler import Scheduler


class RoundRobin(Scheduler):
    """Rounds over the tasks as they were when the round began; a round in which no task could
    step runs the first ready callback (and a new round begins), else the run is over."""

    def __init__(self):
        self._round: list | None = None  # the tasks of this round (None: begin one)
        self._next = 0
        self._progressed = False

    def pick(self, m):
        while True:
            if self._round is None:
                self._round, self._next, self._progressed = list(m.tasks), 0, False
            tasks = self._round
            while self._next < len(tasks):
                t = tasks[self._next]
                self._next += 1
                if not t.done and t.pending.blocked(m, t) is None:
                    self._progressed = True
                    return t
            if self._progressed:
                self._round = None
                continue
            # a round in which no task could step
            self._round = None
            ready = m.ready_callbacks()
            if ready:
                return ready[0]
            if m.active():
                m.check_deadlock()
                continue
            if m.callbacks:  # pragma: no cover - every reader has ended, so all are ready
                m._fail(Violation("rcu.stall", "RCU callbacks never became ready"), None)
            return None

