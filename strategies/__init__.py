"""The repository's ``strategies`` folder: a re-export of :mod:`pgconform.strategies`, where the
Hypothesis strategies live (the wheel ships only the ``pgconform`` package)."""

from pgconform.strategies import *  # noqa: F403
from pgconform.strategies import __all__  # noqa: F401
