"""Re-export of :mod:`pgconform.strategies.schedules` (the code lives in the package)."""

from pgconform.strategies.schedules import *  # noqa: F403
