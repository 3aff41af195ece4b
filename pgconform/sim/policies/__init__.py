"""Schedule policies: each only decides which runnable task (or ready RCU callback) steps next.

- :mod:`.pct`: probabilistic concurrency testing (priorities and change points), drawn by Hypothesis.
- round-robin: :meth:`pgconform.sim.machine.Machine.finish`, used to finish a run fairly.
"""
