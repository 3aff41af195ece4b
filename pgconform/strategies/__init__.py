"""Hypothesis strategies for pgconform: worlds, operations and schedules.

Every choice the conformance machines make is a draw from these, so failures shrink to minimal
worlds and schedules and replay from the example database:

- :mod:`~pgconform.strategies.worlds`: who maps what (the scenarios' world shapes);
- :mod:`~pgconform.strategies.operations`: the operations CPUs perform;
- :mod:`~pgconform.strategies.schedules`: the run's shape and its schedules (the machines'
  rules);
- :mod:`~pgconform.strategies.sweep_worlds`: the exhaustive sweep's hand-written worlds."""

from pgconform.strategies.operations import make_op, op_draws, pick_address
from pgconform.strategies.schedules import INIT_DRAWS, LANES, NCPUS
from pgconform.strategies.sweep_worlds import WORLDS as SWEEP_WORLDS
from pgconform.strategies.worlds import SHAPES, hot_places, worlds

__all__ = ["INIT_DRAWS", "LANES", "NCPUS", "SHAPES", "SWEEP_WORLDS", "hot_places", "make_op",
           "op_draws", "pick_address", "worlds"]
