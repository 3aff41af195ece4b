"""The conformance suite: the selected implementation (``--impl``) judged by the conformance
machines, one per architecture configuration.  This is what users run:

    pytest -n auto tests/conformance --impl SPEC
"""

from pgconform.kernel.config import ARCHES
from pgconform.machines import make_machine
from pgconform.plugin import selected_implementation

_impl = selected_implementation()

for _arch in ARCHES:
    _name = "Test_" + _arch.replace("-", "_")
    globals()[_name] = make_machine(_impl, _arch, name=_name).TestCase
