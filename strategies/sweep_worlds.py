"""Re-export of :mod:`pgconform.strategies.sweep_worlds` (the code lives in the package)."""

from pgconform.strategies.sweep_worlds import *  # noqa: F403
