"""pgconform's Hypothesis profiles, registered by the package (not by a repository's conftest.py),
so that every one of them can be loaded wherever pgconform is installed.

==========  =====================================================================================
profile     settings
==========  =====================================================================================
``dev``     2000 examples per machine, no deadline (the default)
``ci``      derived from Hypothesis's own ``ci`` profile (derandomized, no example database) but
            prints no ``@reproduce_failure`` blobs; 500 examples, no deadline
``nightly`` 10000 examples, no deadline
``bench``   the benchmark's fixed, derandomized workload (``python -m pgconform bench``):
            ``PGCONFORM_BENCH_EXAMPLES`` examples (200), no database, no deadline
==========  =====================================================================================

All of them suppress the ``too_slow`` and ``data_too_large`` health checks: the conformance
machines are stateful and simulate whole kernels, slow and data-hungry by design.

Which profile loads (:func:`load_from_environment`, called by the repository's root conftest.py):
``HYPOTHESIS_PROFILE`` if set, else ``ci`` when the ``CI`` environment variable is truthy, else
``dev``; ``--hypothesis-profile NAME`` on the pytest command line overrides it (Hypothesis's own
plugin loads it, after this).  pgconform's pytest plugin registers these profiles before that
when the name asked for is one of them (:func:`register`), so ``--hypothesis-profile bench``
works from an installed wheel too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The profiles this module registers, in the order the README documents them.
NAMES = ("dev", "ci", "nightly", "bench")
#: The environment variable naming the profile to load.
ENV_VAR = "HYPOTHESIS_PROFILE"
#: The environment variable sizing the ``bench`` profile (examples per item).
BENCH_EXAMPLES_ENV = "PGCONFORM_BENCH_EXAMPLES"


def _suppress(parent) -> list:
    from hypothesis import HealthCheck

    already = list(parent.suppress_health_check)
    wanted = (HealthCheck.too_slow, HealthCheck.data_too_large)
    return already + [check for check in wanted if check not in already]


def register(environ: Mapping[str, str] = os.environ) -> None:
    """Register :data:`NAMES` with Hypothesis (again: the last registration wins).

    Explicit parents: without one, a profile derives from whatever is loaded now, and Hypothesis
    loads its own derandomized ``ci`` profile at import when it detects CI."""
    from hypothesis import settings

    def derive(name: str, parent: settings, **changes) -> None:
        # every profile: no deadline, and the slow, data-hungry machines are no health problem
        settings.register_profile(name, parent=parent, deadline=None,
                                  suppress_health_check=_suppress(parent), **changes)

    default = settings.get_profile("default")
    # per (arch, scenario) item of the conformance suite; a machine runs ~150 examples/s
    derive("dev", default, max_examples=2000)
    # Hypothesis's ci profile prints "@reproduce_failure(...) as a decorator on your test
    # function": advice nobody can follow here.  The conformance items are state machines that
    # tests/conformance builds in a loop (make_machine), so there is no function or class in the
    # user's source to decorate; the blob encodes Hypothesis's choices for this Hypothesis
    # version and these strategies only; and the profile is derandomized, so rerunning the same
    # command finds the same failure anyway.  Every verdict ends with its replay string
    # (python -m pgconform replay), which replays the schedule without Hypothesis, under any
    # --impl.
    derive("ci", settings.get_profile("ci"), max_examples=500, print_blob=False)
    derive("nightly", default, max_examples=10000)
    derive("bench", default, max_examples=bench_examples(environ), derandomize=True,
           database=None)


def bench_examples(environ: Mapping[str, str] = os.environ) -> int:
    """The ``bench`` profile's examples per item: ``PGCONFORM_BENCH_EXAMPLES`` (200)."""
    text = environ.get(BENCH_EXAMPLES_ENV, "").strip() or "200"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{BENCH_EXAMPLES_ENV}={text!r}: give a whole number of examples, 1 or "
                         "more")
    return value


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def name_from_environment(environ: Mapping[str, str] = os.environ) -> str:
    """The profile the environment asks for.  An explicit ``HYPOTHESIS_PROFILE`` wins over the
    ambient ``CI`` flag: a CI job may run nightly."""
    if environ.get(ENV_VAR, "").strip():
        return environ[ENV_VAR].strip()
    return "ci" if _truthy(environ.get("CI")) else "dev"


def load_from_environment(environ: Mapping[str, str] = os.environ) -> str:
    """Register the profiles, then load the one the environment asks for; its name.  A name that
    is neither one of :data:`NAMES` nor registered by someone else is a ValueError naming them."""
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    register(environ)
    name = name_from_environment(environ)
    try:
        settings.load_profile(name)
    except InvalidArgument:
        raise ValueError(f"{ENV_VAR}={name!r} is not a Hypothesis profile; pgconform's are "
                         f"{', '.join(NAMES)}") from None
    return name
