"""pgconform's pytest plugin, its first half: the options, which implementation and architectures
the suite judges, and their export to xdist workers and subprocesses (the second half,
:mod:`pgconform.plugin.judging`, judges what the items did).

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

The entry point loads this plugin in every pytest run of the environment, so it acts only on
pgconform's own runs: those that give one of its options or its ini key (from
``pytest_configure``), or that collect a conformance module (when the module asks for the
selection, :func:`_current`).  Any other run is left exactly as it was: its example database, its
output, its exit status, whatever ``PGCONFORM_IMPL`` says.

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
#: The environment variable to which ``--xfails-file`` is exported (its absolute path).
XFAILS_ENV_VAR = "PGCONFORM_XFAILS"
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
# its own selection and give the outer one back when it ends.  Each configured run, innermost last;
# its selection is in its stash once the plugin acts on it (see pytest_configure).
_runs: list[pytest.Config] = []
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
    if _runs:
        selection = _runs[-1].stash.get(_SELECTION_KEY, None)
        # None: a run that gave no pgconform option, now collecting a conformance module
        return selection if selection is not None else _activate_on_collection(_runs[-1])
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
    from pgconform.kernel.arch import ARCHES

    chosen = [a for a in os.environ.get(ARCH_ENV_VAR, "").split(",") if a]
    return chosen or list(ARCHES)


def selected_xfails(arch: str, scenario: str) -> dict:
    """The known-failures file's entries for one item: clause -> (line, reason)."""
    from pgconform.oracle.clauses import CLAUSES
    from pgconform.report.summary import parse_xfails, tolerated_for

    path = os.environ.get(XFAILS_ENV_VAR)
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return tolerated_for(parse_xfails(f.read()), arch, scenario, CLAUSES)


def scenarios() -> list[str]:
    """The scenarios of the conformance items, as ``--xfails-file`` names them: the machines'
    (:data:`pgconform.harness.machines.SCENARIOS`), then the sweep's worlds (a sweep item's
    scenario is its world, :data:`pgconform.harness.sweep.WORLDS`)."""
    from pgconform.harness.machines import SCENARIOS
    from pgconform.harness.sweep import WORLDS

    return list(dict.fromkeys([*SCENARIOS, *WORLDS]))


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
    group.addoption(
        "--xfails-file",
        action="store",
        dest="pgconform_xfails",
        metavar="PATH",
        default=None,
        help="known failures: lines 'CLAUSE [ARCH [SCENARIO]]' (globs; '#' starts a comment, the "
             "reason). Their violations are counted, not failed, and the run goes on; an item "
             "that hits one is reported xfailed. Entries that match nothing are warned about.",
    )
    group.addoption(
        "--pgconform-report",
        action="store",
        dest="pgconform_report",
        metavar="PATH",
        default=None,
        help="write the conformance report (per clause and architecture: passed, failed, "
             "errored) to PATH: Markdown if it ends in .md, else JSON",
    )
    group.addoption(
        "--pgconform-trace-dir",
        action="store",
        dest="pgconform_trace_dir",
        metavar="DIR",
        default=None,
        help="write each failure's schedule as a self-contained HTML timeline in DIR "
             "(lanes per CPU, lock holds, RCU sections, grace periods)",
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
_RESULTS_KEY = pytest.StashKey[list]()
_XFAILS_KEY = pytest.StashKey[list]()
_SELECTION_KEY = pytest.StashKey[Selection]()
_PGCONFORM_ITEMS_KEY = pytest.StashKey[list]()


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


#: The options that make a run pgconform's from the start (dests of pytest_addoption's options).
_OPTION_DESTS = ("pgconform_impl", "pgconform_arch", "pgconform_xfails", "pgconform_report",
                 "pgconform_trace_dir")
_USAGE_KEY = pytest.StashKey[str]()


def _explicit(config: pytest.Config) -> bool:
    """Whether the run asks for pgconform: one of its options given, or its ini key set."""
    return (any(config.getoption(dest, None) is not None for dest in _OPTION_DESTS)
            or bool(str(config.getini(INI_KEY)).strip()))


# trylast: Hypothesis's own plugin loads --hypothesis-profile in its pytest_configure; the
# per-implementation profile must be derived from the profile that is finally in force.
@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """The plugin is installed for every pytest run of the environment, so it acts only on
    pgconform's own: from here when one of its options (or its ini key) is given, else when a
    conformance module is collected (it asks for the selection: :func:`_current`).  Until then
    it changes nothing: no environment, no Hypothesis database, no header."""
    if getattr(config.option, "help", False):
        return  # `pytest --help` must work whatever the environment selects
    _runs.append(config)
    config.add_cleanup(lambda: _runs.remove(config) if config in _runs else None)
    if _explicit(config):
        _activate(config)


def _activate_on_collection(config: pytest.Config) -> Selection:
    """Act on a run that gave no option, as a conformance module is collected: a usage error
    here is remembered and raised out of the collection (see pytest_make_collect_report)."""
    try:
        return _activate(config)
    except pytest.UsageError as e:
        config.stash[_USAGE_KEY] = str(e)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    message = collector.config.stash.get(_USAGE_KEY, None)
    if message is not None:  # exit 4 with the one line, not a collection error with a traceback
        raise pytest.UsageError(message)
    return report


def _activate(config: pytest.Config) -> Selection:
    """Resolve the selection and check the configuration: any problem is a usage error."""
    from pgconform.harness.sweep import default_bound
    from pgconform.implementation import ImplementationError

    option = config.getoption("pgconform_impl")
    if option is not None and not option.strip():
        raise pytest.UsageError(
            "pgconform: --impl is empty; give a registered name (python -m pgconform list) or "
            f"module:attr, or leave the option out (then ${ENV_VAR}, the {INI_KEY} ini key, or "
            f"{DEFAULT_SPEC})")
    spec, source = choose_spec(option, os.environ.get(ENV_VAR), config.getini(INI_KEY))
    try:
        selection = _resolve(spec, source)
    except ImplementationError as exc:
        raise pytest.UsageError(
            f"pgconform: {exc} (implementation chosen by {_describe_source(source, config)})"
        ) from None
    from pgconform.kernel.config import plain_reads_form
    from pgconform.sim.watchdog import first_timeout_s

    try:
        default_bound()
        plain_reads_form()
        first_timeout_s()
    except ValueError as exc:
        raise pytest.UsageError(f"pgconform: {exc}") from None
    _check_output_paths(config)

    config.stash[_SELECTION_KEY] = selection
    _export_arches(config)
    _export_env(config, ENV_VAR, spec)
    config.stash[_DATABASE_KEY] = _use_own_database(config, spec)
    _export_xfails(config)
    return selection


def _check_output_paths(config: pytest.Config) -> None:
    """``--pgconform-trace-dir`` must be a directory that can be created, and
    ``--pgconform-report`` a file that can be written: found out now, not after the run."""
    trace_dir = config.getoption("pgconform_trace_dir")
    if trace_dir is not None:
        try:
            os.makedirs(trace_dir, exist_ok=True)
            if not os.access(trace_dir, os.W_OK):
                raise PermissionError("not writable")
        except OSError as e:
            raise pytest.UsageError(
                f"pgconform: --pgconform-trace-dir {trace_dir}: cannot create or write to it "
                f"({e.strerror or e})") from None
    report = config.getoption("pgconform_report")
    if report is not None:
        path = os.path.abspath(report)
        parent = os.path.dirname(path)
        if os.path.isdir(path):
            why = "is a directory"
        elif not os.path.isdir(parent):
            why = f"no directory {parent}"
        elif not os.access(path if os.path.exists(path) else parent, os.W_OK):
            why = "not writable"
        else:
            return
        raise pytest.UsageError(f"pgconform: --pgconform-report {report}: cannot write the "
                                f"report there ({why})")


def _export_env(config: pytest.Config, name: str, value: str) -> None:
    """Set an environment variable for this run (and its xdist workers), restored at the end."""
    previous = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    config.add_cleanup(restore)


def _export_xfails(config: pytest.Config) -> None:
    """Read ``--xfails-file``: a file that does not parse is a usage error; entries that cannot
    match anything are warned about (by the controller only)."""
    from pgconform.kernel.arch import ARCHES
    from pgconform.oracle.clauses import CLAUSES
    from pgconform.report.summary import XfailsError, parse_xfails, static_warnings

    path = config.getoption("pgconform_xfails")
    if not path:
        if XFAILS_ENV_VAR in os.environ and not hasattr(config, "workerinput"):
            _export_env(config, XFAILS_ENV_VAR, "")
        return
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            entries = parse_xfails(f.read())
    except UnicodeDecodeError as e:
        raise pytest.UsageError(f"pgconform: --xfails-file {path}: not UTF-8 text (byte "
                                f"{e.start}: {e.reason})") from None
    except (OSError, XfailsError) as e:
        raise pytest.UsageError(f"pgconform: --xfails-file {path}: {e}") from None
    config.stash[_XFAILS_KEY] = entries
    _export_env(config, XFAILS_ENV_VAR, path)
    if hasattr(config, "workerinput"):
        return
    arches = selected_arches() if os.environ.get(ARCH_ENV_VAR) else list(ARCHES)
    for warning in static_warnings(entries, CLAUSES, arches, scenarios()):
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(f"pgconform: --xfails-file {path}, {warning}"), 2)


def _export_arches(config: pytest.Config) -> None:
    """Validate ``--arch`` and export it for xdist workers (restored when the run ends)."""
    from pgconform.kernel.arch import ARCHES

    arches = config.getoption("pgconform_arch") or []
    unknown = [a for a in arches if a not in ARCHES]
    if unknown:
        raise pytest.UsageError(f"pgconform: unknown --arch {', '.join(unknown)}; known: "
                                f"{', '.join(ARCHES)}")
    if arches:
        _export_env(config, ARCH_ENV_VAR, ",".join(dict.fromkeys(arches)))


def _plain_reads_line() -> str:
    """The header line naming how plain page-table reads are compiled (kernel/config.py)."""
    from pgconform.kernel.config import PLAIN_READS_ENV, plain_reads_form

    if plain_reads_form() == "split":
        return (f"pgconform: plain page-table reads split into two loads ({PLAIN_READS_ENV}): "
                "a write between them is pt.plain-read-race")
    return (f"pgconform: plain page-table reads fused into one load, as GCC 12.2 on x86-64 "
            f"emits ({PLAIN_READS_ENV}=split for two)")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    selection = config.stash.get(_SELECTION_KEY, None)
    if selection is None:
        return None
    lines = [f"pgconform: implementation {selection.spec} (from {selection.source})",
             f"pgconform: architectures {', '.join(selected_arches())}",
             _plain_reads_line()]
    impl = selection.implementation
    known = [(key, "", why) for key, why in impl.known_violations.items()]
    known += [(key, f" on {arch}", why) for arch, table in impl.arch_known_violations.items()
              for key, why in table.items()]
    for key, where, why in known:
        lines.append(f"pgconform: known violation {key}{where} (counted, not failed): {why}")
        if impl.known_consequences.get(key):
            lines.append(f"pgconform:   and after it, in the same run: "
                         f"{', '.join(impl.known_consequences[key])}")
    database = config.stash.get(_DATABASE_KEY, None)
    if database is not None:
        lines.append(f"pgconform: example database {database}")
    else:
        lines.append("pgconform: example database disabled by the Hypothesis profile")
    return lines
