"""Re-export of :mod:`pgconform.strategies.operations` (the code lives in the package)."""

from pgconform.strategies.operations import *  # noqa: F403
