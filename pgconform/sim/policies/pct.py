"""PCT (Burckhardt et al., "A randomized scheduler with probabilistic guarantees of finding bugs",
ASPLOS 2010), adapted to the simulated machine.

Each lane (CPU or the RCU-callback lane) has a priority; the highest-priority lane that can run
takes the next step.  At each *change point* the lane that just stepped drops below every other
lane.  A bug of depth d (d ordering constraints) among n lanes and k steps is found with
probability at least 1/(n * k^(d-1)) per run.

Change points are counted only at *preemption points*: effects after which another lane acting
can change the outcome (a value read, a lock released, an RCU section left, a model action).
That shrinks k to the steps that matter.  The schedule itself is data (lane priorities and
change-point indices), so Hypothesis draws it in a few decisions, shrinks it and replays it.
"""

from __future__ import annotations

from pgconform.sim.machine import SYNC_EFFECTS
from pgconform.sim.scheduler import Scheduler

RCU_LANE = "RCU"


class PCT(Scheduler):
    """PCT with lane ``priorities`` (lane name -> number, higher runs first; lanes not listed
    rank lowest) and ``change_points`` (a collection of preemption-point indices).  With
    ``at_locks`` the points are instead the lock acquisitions (SYNC_EFFECTS), and a lane at a
    change point drops *before* taking the lock: the race windows of this protocol are a lockless
    check followed by taking pml or ptl, and there are far fewer locks than preemption points, so
    a window is hit more often."""

    def __init__(self, priorities: dict, change_points, at_locks: bool = False):
        self.prio = dict(priorities)
        self.low = min(self.prio.values(), default=0) - 1
        self.points = 0
        self.change = set(change_points)
        self.at_locks = at_locks
        #: the lane and the effect of the step just taken, counted at the next decision if the
        #: effect was a preemption point (not at_locks)
        self._lane = None
        self._effect = None

    def pick(self, m):
        prio = self.prio
        if self._effect is not None:
            eff, self._effect = self._effect, None
            if eff.preempt_point:
                if self.points in self.change:
                    prio[self._lane] = self.low
                    self.low -= 1
                self.points += 1
        at_locks = self.at_locks
        while True:
            low = self.low
            best = None
            best_p = None
            for t in m.tasks:
                if t.done:
                    continue
                p = prio.get(t.lane, low - 1)
                if (best_p is None or p > best_p) and t.pending.blocked(m, t) is None:
                    best, best_p = t, p
            if m.callbacks and (best is None or prio.get(RCU_LANE, low - 1) > best_p):
                ready = m.ready_callbacks()
                if ready:
                    return ready[0]
            if best is None:
                return None
            if not at_locks:
                self._lane, self._effect = best.lane, best.pending
                return best
            if type(best.pending) in SYNC_EFFECTS:
                self.points += 1
                if self.points - 1 in self.change:
                    prio[best.lane] = low  # preempted just before it takes the lock
                    self.low -= 1
                    continue
            return best


def run_pct(m, priorities: dict, change_points, budget: int, at_locks: bool = False) -> int:
    """Run up to ``budget`` steps of ``m`` under :class:`PCT`; returns the number of steps
    taken."""
    return m.drive(PCT(priorities, change_points, at_locks), budget)
