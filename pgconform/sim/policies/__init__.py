"""Schedule policies, one module each, all implementing :class:`pgconform.sim.scheduler.Scheduler`
(the engine calls :meth:`~pgconform.sim.scheduler.Scheduler.pick` before each step and knows no
policy by name).  Each only decides which runnable task (or ready RCU callback) steps next, so a
policy's decisions replay exactly.

- :mod:`.pct`: probabilistic concurrency testing with a depth (lane priorities and change points,
  at preemption points or at lock acquisitions), used by the conformance machines' ``schedule``
  rule (``pgconform/harness/machines.py``; their other rules, ``advance``, ``advance_to_lock``,
  ``rcu_callback``, are single decisions drawn and shrunk by Hypothesis);
- :mod:`.round_robin`: finishes every run fairly (``Machine.finish``'s default);
- :mod:`.replay`: a recorded list of decisions, then the default ones (a sweep failure's replay
  string; a conformance machine's replay re-runs its rule calls, :mod:`pgconform.harness.replay`);
- :mod:`.exhaustive`: every schedule up to a preemption bound, each one a :mod:`.replay` of a
  decision prefix that records where it could have branched (``pgconform/harness/sweep.py`` runs
  it over every pair of operations).
"""

from pgconform.sim.scheduler import Scheduler

__all__ = ["Scheduler"]
