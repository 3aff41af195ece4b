"""The conformance suite's test modules, shipped in the package so that it runs wherever pgconform
is installed: ``pytest -n auto --pyargs pgconform.conformance [--impl SPEC]`` judges the selected
implementation with the conformance machines (:mod:`.test_conformance`) and the exhaustive sweep
(:mod:`.test_exhaustive`).  A checkout's ``tests/conformance`` holds the same items (its modules
import these), which is what the README's command runs; ``python -m pgconform bench`` runs these
directly, so it needs no checkout.
"""
