"""Linux 6.6 as merged (``v6.6``): the reference, under the name of its version.

The series' v3 <7cd843a9-aa80-14f-5eb2-33427363c20@google.com> as merged for 6.6 plus the fixes
folded in before 6.6.0 (a98460494b16, B1), in the 6.6 kernel with its stable fixes (the mremap of
6fa1066fc5d0, CVE-2024-50066).  The arches are 6.6's: ``s390-6.7`` is a later kernel's s390 and
is left to the reference."""

from __future__ import annotations

import attrs

from pgconform.kernel.arch import arches_except
from pgconform.reference import IMPLEMENTATION as REFERENCE

IMPLEMENTATION = attrs.evolve(
    REFERENCE, name="v6.6", arches=arches_except("s390-6.7"),
    description="Linux 6.6 as merged: " + REFERENCE.description.split(": ", 1)[1],
)
