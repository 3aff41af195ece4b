"""The repository's ``strategies`` folder: a re-export of :mod:`pgconform.strategies`, where the
Hypothesis strategies live (the wheel ships only the ``pgconform`` package)."""

from pgconform.strategies import hot_places, make_op, op_draws, worlds

__all__ = ["hot_places", "make_op", "op_draws", "worlds"]
