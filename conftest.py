"""Hypothesis profiles for the whole repository.

``dev`` (the default) is quick; ``ci`` is derived from Hypothesis's own ``ci`` profile
(derandomized, no example database) but prints no ``@reproduce_failure`` blobs (see below);
``nightly`` runs long.  Which one loads:
``HYPOTHESIS_PROFILE`` if set, else ``ci`` when the ``CI`` environment variable is truthy, else
``dev``.
``--hypothesis-profile NAME`` on the command line overrides all of these.

pgconform's plugin then derives a per-implementation profile from the loaded one, adding only the
example database (see pgconform/plugin.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# pytester drives the plugin's own tests (tests/selftest/test_plugin.py).  It is enabled here
# because pytest only honours pytest_plugins in the rootdir's conftest.
pytest_plugins = ["pytester"]

# The conformance machines are stateful and simulate whole kernels: slow and data-hungry by design.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large)


def _suppress(parent: settings) -> list[HealthCheck]:
    already = list(parent.suppress_health_check)
    return already + [check for check in _SUPPRESSED if check not in already]


# Explicit parents: without one, a profile derives from whatever is loaded now, and Hypothesis
# loads its own derandomized "ci" profile at import when it detects CI.
_hypothesis_default = settings.get_profile("default")
settings.register_profile(
    "dev",
    parent=_hypothesis_default,
    # per (arch, scenario) item of the conformance suite; a machine runs ~150 examples/s
    max_examples=2000,
    deadline=None,
    suppress_health_check=_suppress(_hypothesis_default),
)
_hypothesis_ci = settings.get_profile("ci")
settings.register_profile(
    "ci",
    parent=_hypothesis_ci,
    max_examples=500,
    deadline=None,
    # Hypothesis's ci profile prints "@reproduce_failure(...) as a decorator on your test
    # function": advice nobody can follow here.  The conformance items are state machines that
    # tests/conformance builds in a loop (make_machine), so there is no function or class in the
    # user's source to decorate; the blob encodes Hypothesis's choices for this Hypothesis
    # version and these strategies only; and the profile is derandomized, so rerunning the same
    # command finds the same failure anyway.  Every verdict ends with its replay string
    # (python -m pgconform replay), which replays the schedule without Hypothesis, under any
    # --impl.
    print_blob=False,
    suppress_health_check=_suppress(_hypothesis_ci),
)
settings.register_profile(
    "nightly",
    parent=_hypothesis_default,
    max_examples=10000,
    deadline=None,
    suppress_health_check=_suppress(_hypothesis_default),
)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def _profile_name() -> str:
    # An explicit HYPOTHESIS_PROFILE wins over the ambient CI flag: a CI job may run nightly.
    if os.environ.get("HYPOTHESIS_PROFILE", "").strip():
        return os.environ["HYPOTHESIS_PROFILE"].strip()
    return "ci" if _truthy(os.environ.get("CI")) else "dev"


settings.load_profile(_profile_name())
# the benchmark's xdist measure (pgconform/tools/bench.py): a fixed, derandomized workload
settings.register_profile(
    "bench",
    parent=_hypothesis_default,
    max_examples=int(os.environ.get("PGCONFORM_BENCH_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_suppress(_hypothesis_default),
)
