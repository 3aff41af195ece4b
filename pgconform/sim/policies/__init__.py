"""Schedule policies: each only decides which runnable task (or ready RCU callback) steps next;
the machine itself makes no choice, so a policy's decisions replay exactly.

- the Hypothesis-driven policy (the default): the conformance machines' rules
  (``pgconform/harness/machines.py``: ``advance``, ``advance_to_lock``, ``schedule``, ``rcu_callback``,
  the staged partner of ``init_world``), drawn and shrunk by Hypothesis;
- :mod:`.pct`: probabilistic concurrency testing with a depth (lane priorities and change points,
  at preemption points or at lock acquisitions), used by the ``schedule`` rule;
- :mod:`.exhaustive`: every schedule up to a preemption bound, switching only before effects
  that can conflict (``pgconform/harness/sweep.py`` runs it over every pair of operations);
- replay: :mod:`pgconform.harness.replay` (a conformance machine's rule calls) and
  :func:`.exhaustive.run_schedule` with a decision prefix (an explored schedule);
- :mod:`.round_robin`: finishes every run fairly (``Machine.finish``).
"""
