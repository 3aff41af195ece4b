"""Re-export of :mod:`pgconform.strategies.worlds` (the code lives in the package)."""

from pgconform.strategies.worlds import *  # noqa: F403
