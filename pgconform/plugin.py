"""The pytest plugin (entry point ``pytest11: pgconform``): which implementation the suite judges.

Selection, first match wins (as pytest-django does for ``--ds``):

======================  ==============================  ===================
source                  how                             header says
======================  ==============================  ===================
command-line option     ``--impl SPEC``                 ``(from option)``
environment variable    ``PGCONFORM_IMPL=SPEC``         ``(from env)``
ini key                 ``pgconform_impl = SPEC``       ``(from ini)``
default                 ``reference``                   ``(from default)``
======================  ==============================  ===================

``SPEC`` is a registered name (``python -m pgconform list``) or ``module:attr``; see
:mod:`pgconform.registry`.  The choice is resolved once, in ``pytest_configure``; a spec that does
not resolve is a usage error.  The resolved spec is written back to ``PGCONFORM_IMPL`` so that xdist
workers and any subprocess agree with the controller.

Each implementation gets its own Hypothesis example database, ``.hypothesis/examples/<name>`` under
the rootdir, so judging one implementation never replays (or erases) another's failures.  It is set
on a profile derived from whichever profile is loaded when the plugin configures (the root
conftest's choice, or ``--hypothesis-profile``); a profile that disables the database (Hypothesis's
derandomized ``ci``) is left alone.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import attrs
import pytest

if TYPE_CHECKING:
    from pgconform.implementation import Implementation

#: The environment variable naming the implementation (and to which the resolved spec is exported).
ENV_VAR = "PGCONFORM_IMPL"
#: The environment variable to which the ``--arch`` selection is exported (comma-separated), so
#: that xdist workers collect the same items.
ARCH_ENV_VAR = "PGCONFORM_ARCH"
#: The ini key naming the implementation.
INI_KEY = "pgconform_impl"
#: What is judged when nothing is chosen.
DEFAULT_SPEC = "reference"

_SOURCES = ("option", "env", "ini", "default")


@attrs.frozen(eq=False)  # identity: nested runs may select the same spec
class Selection:
    """The implementation judged: the spec as given, where it came from, what it resolved to."""

    spec: str
    source: str
    implementation: Implementation


# A stack, not a single value: pytester runs pytest in-process inside pytest, and each run must see
# its own selection and give the outer one back when it ends.
_configured: list[Selection] = []
_lazy: Selection | None = None


def choose_spec(option: str | None, env: str | None, ini: str | None) -> tuple[str, str]:
    """The spec to use and its source: ``option``, ``env``, ``ini`` or ``default``.

    The first of ``option``, ``env``, ``ini`` that is set and not blank wins.
    """
    for source, value in zip(_SOURCES, (option, env, ini), strict=False):
        if value is not None and value.strip():
            return value.strip(), source
    return DEFAULT_SPEC, "default"


def _describe_source(source: str, config: pytest.Config | None = None) -> str:
    if source == "option":
        return "--impl"
    if source == "env":
        return f"the {ENV_VAR} environment variable"
    if source == "ini":
        where = f" in {config.inipath}" if config is not None and config.inipath else ""
        return f"the {INI_KEY} ini key{where}"
    return "default"


def _resolve(spec: str, source: str) -> Selection:
    from pgconform.registry import resolve

    # ImplementationError propagates; the caller decides how to report it.
    return Selection(spec=spec, source=source, implementation=resolve(spec))


def _current() -> Selection:
    global _lazy
    if _configured:
        return _configured[-1]
    # Outside a configured pytest run (a script, a REPL, a worker of some other runner): the
    # environment or the default, re-resolved if the environment changed since last time.
    spec, source = choose_spec(None, os.environ.get(ENV_VAR), None)
    if _lazy is None or _lazy.spec != spec:
        _lazy = _resolve(spec, source)
    return _lazy


def selected_implementation() -> Implementation:
    """The implementation this run judges (from the environment if pytest has not configured)."""
    return _current().implementation


def selected_arches() -> list[str]:
    """The architecture configurations to judge (``--arch``, repeatable; default: all)."""
    from pgconform.kernel.config import ARCHES

    chosen = [a for a in os.environ.get(ARCH_ENV_VAR, "").split(",") if a]
    return chosen or list(ARCHES)


def selected_spec() -> str:
    """The spec that was selected, as given (a registered name or ``module:attr``)."""
    return _current().spec


def selected_source() -> str:
    """Where the selection came from: ``option``, ``env``, ``ini`` or ``default``."""
    return _current().source


def database_dirname(spec: str) -> str:
    """The directory name, under ``.hypothesis/examples``, of the example database for ``spec``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("._") or "impl"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgconform", "pgconform: the implementation under test")
    group.addoption(
        "--impl",
        action="store",
        dest="pgconform_impl",
        metavar="SPEC",
        default=None,
        help=(
            "implementation to judge: a registered name (python -m pgconform list) or module:attr. "
            f"Overrides ${ENV_VAR} and the {INI_KEY} ini key; default: {DEFAULT_SPEC}."
        ),
    )
    group.addoption(
        "--arch",
        action="append",
        dest="pgconform_arch",
        metavar="NAME",
        default=None,
        help="architecture configuration to judge on (repeatable; default: all of them; "
             "python -m pgconform list shows them)",
    )
    parser.addini(
        INI_KEY,
        type="string",
        default="",
        help=(
            f"implementation to judge when neither --impl nor ${ENV_VAR} is given "
            f"(default: {DEFAULT_SPEC})"
        ),
    )


_DATABASE_KEY = pytest.StashKey["str | None"]()
_SELECTION_KEY = pytest.StashKey[Selection]()


def _use_own_database(config: pytest.Config, spec: str) -> str | None:
    """Load a profile like the current one but with ``spec``'s own example database.

    Returns the database's path, or None (changing nothing) when the current profile has no
    database.
    """
    from hypothesis import settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    if settings.default.database is None:
        return None
    base = settings.get_current_profile_name()
    path = config.rootpath / ".hypothesis" / "examples" / database_dirname(spec)
    name = f"{base}+pgconform:{database_dirname(spec)}"
    settings.register_profile(
        name, parent=settings.get_profile(base), database=DirectoryBasedExampleDatabase(str(path))
    )
    settings.load_profile(name)
    config.add_cleanup(lambda: settings.load_profile(base))
    return str(path)


# trylast: Hypothesis's own plugin loads --hypothesis-profile in its pytest_configure; the
# per-implementation profile must be derived from the profile that is finally in force.
@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "help", False):
        return  # `pytest --help` must work whatever the environment selects
    from pgconform.implementation import ImplementationError

    spec, source = choose_spec(
        config.getoption("pgconform_impl"), os.environ.get(ENV_VAR), config.getini(INI_KEY)
    )
    try:
        selection = _resolve(spec, source)
    except ImplementationError as exc:
        raise pytest.UsageError(
            f"pgconform: {exc} (implementation chosen by {_describe_source(source, config)})"
        ) from None

    _configured.append(selection)
    config.stash[_SELECTION_KEY] = selection
    _export_arches(config)

    previous_env = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = spec

    def restore() -> None:
        if previous_env is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous_env
        for i in range(len(_configured) - 1, -1, -1):
            if _configured[i] is selection:
                del _configured[i]
                break

    config.add_cleanup(restore)
    config.stash[_DATABASE_KEY] = _use_own_database(config, spec)


def _export_arches(config: pytest.Config) -> None:
    """Validate ``--arch`` and export it for xdist workers (restored when the run ends)."""
    from pgconform.kernel.config import ARCHES

    arches = config.getoption("pgconform_arch") or []
    unknown = [a for a in arches if a not in ARCHES]
    if unknown:
        raise pytest.UsageError(f"pgconform: unknown --arch {', '.join(unknown)}; known: "
                                f"{', '.join(ARCHES)}")
    if not arches:
        return
    previous = os.environ.get(ARCH_ENV_VAR)
    os.environ[ARCH_ENV_VAR] = ",".join(dict.fromkeys(arches))

    def restore() -> None:
        if previous is None:
            os.environ.pop(ARCH_ENV_VAR, None)
        else:
            os.environ[ARCH_ENV_VAR] = previous

    config.add_cleanup(restore)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    selection = config.stash.get(_SELECTION_KEY, None)
    if selection is None:
        return None
    lines = [f"pgconform: implementation {selection.spec} (from {selection.source})",
             f"pgconform: architectures {', '.join(selected_arches())}"]
    for clause, why in selection.implementation.known_violations.items():
        lines.append(f"pgconform: known violation {clause} (counted, not failed): {why}")
    database = config.stash.get(_DATABASE_KEY, None)
    if database is not None:
        lines.append(f"pgconform: example database {database}")
    else:
        lines.append("pgconform: example database disabled by the Hypothesis profile")
    return lines
