"""The reference implementation: the series as merged in Linux 6.6, one module per kernel file.

``REFERENCE_FUNCTIONS`` maps every name of :data:`pgconform.implementation.SERIES_FUNCTIONS` to its
reference function; ``IMPLEMENTATION`` is the registered ``reference`` implementation (no overrides).
"""

from __future__ import annotations

from pgconform.implementation import SERIES_FUNCTIONS, Implementation
from pgconform.reference import khugepaged, mm, pgtable_generic

_MODULES = {"pgtable_generic": pgtable_generic, "mm": mm, "khugepaged": khugepaged}

REFERENCE_FUNCTIONS = {name: getattr(_MODULES[mod], name) for name, mod in SERIES_FUNCTIONS.items()}

IMPLEMENTATION = Implementation(
    name="reference",
    description="Linux 6.6 as merged: mm/pgtable-generic.c, include/linux/mm.h, mm/khugepaged.c",
    source="v6.6 (a349d72fd9ef, 146b42e07494, 13cf577e6b66, 1d65b771bc08, 1043173eb5eb, "
           "a98460494b16)",
)
