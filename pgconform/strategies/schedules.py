"""Strategies for the shape of a conformance machine's run and its schedules: the
initialisation rule's draws (swarm subset of kinds, hot range, prefaults, first operation and
its partner) and the scheduling rules' (which CPU advances how far, PCT priorities and change
points, which RCU callback runs).

The conformance machines (:mod:`pgconform.harness.machines`) draw every choice from these, and
replay strings record the drawn values by these names: a change of a draw's range or meaning is
a change of the model version (:data:`pgconform.harness.replay.MODEL`).
"""

from __future__ import annotations

from hypothesis import strategies as st

from pgconform.harness.operations import OP_KINDS
from pgconform.sim.policies.pct import RCU_LANE
from pgconform.strategies.operations import op_draws

#: CPUs running operations; the RCU lane runs callbacks
NCPUS = 3
LANES = tuple(f"CPU{i}" for i in range(NCPUS)) + (RCU_LANE,)

#: the draws of the initialisation rule, besides the world (whose strategy is the scenario's):
#: the swarm bitmask over OP_KINDS, the hot range, prefaults in it, the first operation (``freer``
#: 0-2 replaces its kind by one that frees page tables), a partner started where the first is
#: about to take its ``stage``-th lock
INIT_DRAWS = {"kinds": st.integers(1, 2 ** len(OP_KINDS) - 1), "hot": st.integers(0, 7),
              "warm": st.lists(st.integers(0, 7), max_size=3),
              "primary": st.fixed_dictionaries(op_draws), "freer": st.integers(0, 3),
              "partner": st.fixed_dictionaries(op_draws), "stage": st.integers(0, 16)}

#: advance: which runnable CPU, and by how many effects
ADVANCE_DRAWS = {"pick": st.integers(0, NCPUS - 1), "n": st.integers(1, 12)}
#: advance_to_lock: which runnable CPU, to just before its n-th lock from now
ADVANCE_TO_LOCK_DRAWS = {"pick": st.integers(0, NCPUS - 1), "n": st.integers(1, 16)}
#: schedule (PCT): lane priorities, the change points (preemption points, or lock acquisitions
#: with ``at_locks``)
SCHEDULE_DRAWS = {"order": st.permutations(LANES),
                  "change": st.lists(st.integers(0, 15) | st.integers(0, 63), max_size=3,
                                     unique=True),
                  "at_locks": st.booleans()}
#: rcu_callback: which ready callback
RCU_CALLBACK_DRAWS = {"pick": st.integers(0, 3)}
