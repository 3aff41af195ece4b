"""Alternative designs of the series that were posted but not merged, modelled so the suite can
judge them: each module defines ``IMPLEMENTATION`` (an :class:`~pgconform.implementation.
Implementation` restricted to the architectures the design is for).  A correct design must pass."""
