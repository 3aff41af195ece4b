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

RCU_LANE = "RCU"


def run_pct(m, priorities: dict, change_points, budget: int, at_locks: bool = False) -> int:
    """Run up to ``budget`` steps of ``m`` under PCT; returns the number of steps taken.

    ``priorities`` maps lane names to numbers (higher runs first; lanes not listed rank lowest);
    ``change_points`` is a collection of preemption-point indices.  With ``at_locks`` the points
    are instead the lock acquisitions (SYNC_EFFECTS), and a lane at a change point drops *before*
    taking the lock: the race windows of this protocol are a lockless check followed by taking
    pml or ptl, and there are far fewer locks than preemption points, so a window is hit more
    often."""
    prio = dict(priorities)
    low = min(prio.values(), default=0) - 1
    points = 0
    steps = 0
    change = set(change_points)
    while steps < budget:
        best = None
        best_p = None
        for t in m.tasks:
            if t.done:
                continue
            p = prio.get(t.lane, low - 1)
            if (best_p is None or p > best_p) and t.pending.blocked(m, t) is None:
                best, best_p = t, p
        rcu_p = prio.get(RCU_LANE, low - 1)
        if (best is None or rcu_p > best_p) and m.callbacks:
            ready = m.ready_callbacks()
            if ready:
                m.run_callback(ready[0])
                steps += 1
                continue
        if best is None:
            break
        eff = best.pending
        if at_locks:
            if type(eff) in SYNC_EFFECTS:
                points += 1
                if points - 1 in change:
                    prio[best.lane] = low  # preempted just before it takes the lock
                    low -= 1
                    continue
            m.step(best)
            steps += 1
            continue
        m.step(best)
        steps += 1
        if eff.preempt_point:
            if points in change:
                prio[best.lane] = low
                low -= 1
            points += 1
    return steps
