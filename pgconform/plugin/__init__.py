"""The pytest plugin (entry point ``pytest11: pgconform``), in two halves loaded as plugins of
their own (``pytest_plugins`` below):

- :mod:`pgconform.plugin.selection`: the options, which implementation and architectures the suite
  judges (``--impl``, ``PGCONFORM_IMPL``, the ``pgconform_impl`` ini key), their export to xdist
  workers and subprocesses, the per-implementation example database, the report header;
- :mod:`pgconform.plugin.judging`: what an item's failure is (the verdict first), the determinism
  re-check, the confirmation of hangs, the failure's timeline, the known failures, the summary
  and the report.

This module re-exports what the conformance modules and other users import
(``from pgconform.plugin import selected_implementation``), and registers pgconform's Hypothesis
profiles (:mod:`pgconform.harness.profiles`) when ``--hypothesis-profile`` names one of them that
is not registered yet (an installed wheel, without the repository's conftest.py), before
Hypothesis's own plugin loads it.  Nothing of pgconform but this package, and not Hypothesis, is
imported by loading the plugin: the entry point loads it in every pytest run of the environment.
"""

from __future__ import annotations

import pytest

from pgconform.plugin.judging import verdict_text
from pgconform.plugin.selection import (
    ARCH_ENV_VAR,
    DEFAULT_SPEC,
    ENV_VAR,
    INI_KEY,
    XFAILS_ENV_VAR,
    Selection,
    choose_spec,
    database_dirname,
    scenarios,
    selected_arches,
    selected_implementation,
    selected_source,
    selected_spec,
    selected_xfails,
)

__all__ = [
    "ARCH_ENV_VAR",
    "DEFAULT_SPEC",
    "ENV_VAR",
    "INI_KEY",
    "XFAILS_ENV_VAR",
    "Selection",
    "choose_spec",
    "database_dirname",
    "scenarios",
    "selected_arches",
    "selected_implementation",
    "selected_source",
    "selected_spec",
    "selected_xfails",
    "verdict_text",
]

pytest_plugins = ["pgconform.plugin.selection", "pgconform.plugin.judging"]


# tryfirst: before Hypothesis's plugin loads --hypothesis-profile in its own pytest_configure
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("hypothesis_profile", None)
    if name is None:
        return
    from pgconform.harness.profiles import NAMES

    if name not in NAMES:
        return  # another project's profile, or none: nothing of pgconform's is registered
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    from pgconform.harness.profiles import register

    try:
        settings.get_profile(name)
    except InvalidArgument:
        try:
            register()
        except ValueError as e:
            raise pytest.UsageError(f"pgconform: {e}") from None
