"""Hypothesis strategies for pgconform: worlds, operations and schedules.

Every choice the conformance machines make is a draw from these, so failures shrink to minimal
worlds and schedules and replay from the example database."""

from pgconform.strategies.worlds import hot_places, make_op, op_draws, worlds

__all__ = ["hot_places", "make_op", "op_draws", "worlds"]
