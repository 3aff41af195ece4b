"""The repository's root conftest: pytester for the plugin's own tests, and the Hypothesis profile
for every test of the repository.

The profiles (``dev``, ``ci``, ``nightly``, ``bench``) are pgconform's, registered by
:mod:`pgconform.harness.profiles`; this loads the one the environment asks for
(``HYPOTHESIS_PROFILE``, else ``ci`` when ``CI`` is truthy, else ``dev``).
``--hypothesis-profile NAME`` on the command line overrides it.  pgconform's plugin then derives a
per-implementation profile from the loaded one, adding only the example database (see
pgconform/plugin/selection.py).
"""

from __future__ import annotations

import pytest

from pgconform.harness import profiles

# pytester drives the plugin's own tests (tests/selftest/test_plugin.py).  It is enabled here
# because pytest only honours pytest_plugins in the rootdir's conftest.
pytest_plugins = ["pytester"]


# tryfirst: before Hypothesis's own plugin loads --hypothesis-profile, which must win
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        if config.getoption("hypothesis_profile", None):
            # Hypothesis loads it; this conftest may be registered after that (pytest --pyargs
            # pgconform.conformance from the checkout), so it must not load one over it
            profiles.register()
        else:
            profiles.load_from_environment()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
