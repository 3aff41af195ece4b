"""The conformance suite: the selected implementation (``--impl``) judged by the conformance
machines, one test item per (architecture, scenario), so that ``pytest -n auto --dist worksteal``
spreads them over the workers.  This is what users run:

    pytest -n auto tests/conformance --impl SPEC [--arch NAME ...]

An implementation that declares the architectures it applies to (``Implementation.arches``) is
skipped, as not applicable, on the others.
"""

import unittest

from pgconform.harness.machines import SCENARIOS, make_machine
from pgconform.plugin import (
    selected_arches,
    selected_implementation,
    selected_spec,
    selected_xfails,
)

_impl = selected_implementation()

for _arch in selected_arches():
    for _scenario in SCENARIOS:
        _name = f"Test_{_arch.replace('-', '_').replace('.', '_')}_{_scenario}"
        _case = make_machine(_impl, _arch, name=_name, scenario=_scenario, spec=selected_spec(),
                             xfails=selected_xfails(_arch, _scenario)).TestCase
        if _impl.arches and _arch not in _impl.arches:
            _case = unittest.skip(f"{_impl.name} applies to {', '.join(_impl.arches)} only")(_case)
        globals()[_name] = _case

del _case  # the loop variable must not be collected as one more test
