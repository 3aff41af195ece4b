"""The conformance suite: the selected implementation (``--impl``) judged by the conformance
machines, one test item per (architecture, scenario), so that ``pytest -n auto --dist worksteal``
spreads them over the workers.  This is what users run:

    pytest -n auto tests/conformance --impl SPEC [--arch NAME ...]

An implementation that declares the architectures it applies to (``Implementation.arches``) is
skipped, as not applicable, on the others.
"""

# The module itself is pgconform/conformance/test_conformance.py, in the package (pytest --pyargs
# pgconform.conformance runs it from an installed wheel); this re-exports the machines' test
# cases (Test_<arch>_<scenario>).
from pgconform.conformance.test_conformance import *  # noqa: F403
