"""The exhaustive sweep (pgconform/harness/sweep.py): every freer against every operation kind,
both ways round, in small worlds of each scenario shape, under every schedule with at most
``PGCONFORM_PREEMPTION_BOUND`` preemptions (default 1).  One test item per (architecture,
world); it fails with the first violation, naming the pair and the schedule's decisions.

    pytest -n auto tests/conformance --impl SPEC [--arch NAME ...]
"""

# The module itself is pgconform/conformance/test_exhaustive.py, in the package (pytest --pyargs
# pgconform.conformance runs it from an installed wheel); this re-exports the sweep's test
# (test_sweep).
from pgconform.conformance.test_exhaustive import *  # noqa: F403
