"""Fixtures for the project's own tests.

pytester itself is enabled in the root conftest.py: pytest refuses ``pytest_plugins`` in a conftest
below the rootdir when it is collected from there (``pytest`` or ``pytest tests``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.selftest.helpers import PLUGIN_ARGS


@pytest.fixture
def pgconform_pytester(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """``pytester`` with ``PGCONFORM_IMPL`` cleared: the outer run exports its selection there."""
    monkeypatch.delenv("PGCONFORM_IMPL", raising=False)
    return pytester


@pytest.fixture
def run_pgconform(pgconform_pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Run pytest in a subprocess, in ``pgconform_pytester``'s directory, with the plugin loaded."""

    def run(*args: str) -> pytest.RunResult:
        return pgconform_pytester.runpytest_subprocess(*PLUGIN_ARGS, *args)

    return run
