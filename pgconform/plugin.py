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
import sys
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
    (:data:`pgconform.harness.machines.SCENARIOS`), then the sweep's worlds (a sweep item's scenario is
    its world, :data:`pgconform.harness.sweep.WORLDS`)."""
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
    config.addinivalue_line("markers", "pgconform_sweep: an item of pgconform's exhaustive "
                                       "sweep (a conformance item)")
    config.stash[_RESULTS_KEY] = []
    # conformance items collected, deselected; other tests that ran
    config.stash[_PGCONFORM_ITEMS_KEY] = [0, 0, 0]
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
    from pgconform.implementation import ImplementationError
    from pgconform.harness.sweep import default_bound

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


# ------------------------------------------------------------------------------------------------
# verdicts of the conformance items: determinism, trace pictures, known failures, the report


def _machine_of(item: pytest.Item):
    """The conformance machine class an item runs, or None for other tests."""
    machines = sys.modules.get("pgconform.harness.machines")
    if machines is None:  # no machine was made in this process: nothing to import for others
        return None
    cls = getattr(getattr(item, "obj", None), "_hypothesis_state_machine_class", None)
    return cls if isinstance(cls, type) and issubclass(cls, machines.ConformanceMachine) else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    runs = sys.modules.get("pgconform.harness.runs")
    if runs is None:  # not imported yet: nothing to reset (and nothing imported for others)
        return
    runs.last_failure = None
    runs.last_machine = None
    runs.tolerated_hits.clear()


@attrs.frozen
class _Judged:
    """What a conformance item judges: a machine's (``machine`` set) or a sweep's."""

    arch: str
    scenario: str
    spec: str
    xfails: dict
    machine: type | None = None


def _judged_by(item: pytest.Item) -> _Judged | None:
    """What ``item`` judges, for a conformance machine or a sweep item (which sets
    ``pgconform_item`` on itself when it runs); None for other tests."""
    cls = _machine_of(item)
    if cls is not None:
        return _Judged(cls.arch, cls.scenario, cls.spec, cls.xfails, cls)
    info = getattr(item, "pgconform_item", None)
    if info is None:
        return None
    arch, scenario = info
    return _Judged(arch, scenario, selected_spec(), selected_xfails(arch, scenario))


def _judge_failure(item, judged: _Judged, exc, report) -> dict:
    """Clause, outcome, message and replay string of a failed item; checks that the failure is
    deterministic, and writes its picture with ``--pgconform-trace-dir``."""
    from pgconform.harness import replay, runs
    from pgconform.sim.errors import Violation

    failure = runs.last_failure
    verdict = {"outcome": "errored", "clause": None, "message": f"{type(exc).__name__}: {exc}",
               "replay": "", "diagram_rows": 0}
    others: list[str] = []
    if isinstance(exc, BaseExceptionGroup):  # Hypothesis found several distinct failures
        found = [e for e in exc.exceptions if isinstance(e, Violation)]
        if found:
            exc, others = found[0], [e.clause for e in found[1:]]
    if isinstance(exc, Violation):
        from pgconform.report.trace import count_rows

        also = f" (and distinct failures: {', '.join(others)})" if others else ""
        verdict.update(outcome=exc.outcome, clause=exc.clause, message=exc.message + also,
                       diagram_rows=count_rows(exc.diagram))
    if failure is None and judged.machine is not None and _is_flaky(exc):
        # Hypothesis could not replay its own draws before any failure was recorded (the
        # implementation changed which rules could run): replay the last run and compare
        run = runs.latest_run()
        if run is not None:
            odd = _check_determinism(replay, run, None, report)
            if odd is not None:
                failure = replay.Failure(run, odd, None)
                return _nondeterministic(item, judged, failure, odd, report, verdict)
    if failure is None:
        return _write_trace(item, judged, getattr(exc, "machine", None), exc, report, verdict)
    verdict["replay"] = failure.string
    # a sweep failure was checked by the sweep itself (pgconform.harness.sweep.sweep), hangs included
    if failure.violation.clause == "impl.hang" and not isinstance(failure.run, replay.SweepRun):
        return _confirm_hang(item, judged, failure, report, verdict)
    odd = None
    if not isinstance(failure.run, replay.SweepRun):
        odd = _check_determinism(replay, failure.run, failure.violation.clause, report)
    if odd is not None:
        return _nondeterministic(item, judged, failure, odd, report, verdict)
    return _write_trace(item, judged, failure.machine, failure.violation, report, verdict)


def _is_flaky(exc) -> bool:
    from hypothesis.errors import Flaky

    return isinstance(exc, Flaky)


def _check_determinism(replay, run, expected, report):
    """``replay.check_determinism``; None, with a note in the report, if it cannot run."""
    try:
        return replay.check_determinism(run, expected=expected)
    except Exception as e:  # noqa: BLE001 - the report must not crash on a broken replay
        why = f"the determinism check could not run: {type(e).__name__}: {e}"
        report.sections.append(("pgconform", why))
        return None


def _nondeterministic(item, judged: _Judged, failure, odd, report, verdict: dict) -> dict:
    """The ``impl.nondeterministic`` verdict ``odd`` on ``failure``'s run, ahead of the failure
    that was being judged."""
    verdict["replay"] = failure.string
    verdict.update(outcome="errored", clause=odd.clause, message=odd.message)
    text = "\n\n".join([odd.headline(), (f"replay: python -m pgconform replay "
                          f"{failure.string} --check-determinism")])
    # the failure that was being judged goes below the verdict, never into its summary line
    report.sections.append(("pgconform: the failure that was being judged", str(report.longrepr)))
    report.longrepr = text
    return _write_trace(item, judged, failure.machine, failure.violation, report, verdict)


def _confirm_hang(item, judged: _Judged, failure, report, verdict: dict) -> dict:
    """An ``impl.hang`` is a verdict only if replaying the run, with the watchdog's full CPU
    time, hangs again at the same place (this replaces the determinism check).  A hang that does
    not reproduce judged nothing: the item is reported skipped, never failed."""
    from pgconform.harness import replay
    from pgconform.sim.watchdog import first_timeout_s

    try:
        again = replay.confirm_hang(failure.run, failure.violation)
    except Exception as e:  # noqa: BLE001 - the report must not crash on a broken replay
        report.sections.append(("pgconform", f"the hang could not be replayed: "
                                             f"{type(e).__name__}: {e}"))
        return _write_trace(item, judged, failure.machine, failure.violation, report, verdict)
    if again is not None:  # its message gives the full time it ran for
        verdict["message"] = again.message
        report.sections.append(("pgconform: the hang, confirmed when replayed", again.message))
        return _write_trace(item, judged, failure.machine, failure.violation, report, verdict)
    reason = (f"pgconform: not judged: a hang was seen ({failure.violation.message}) and did not "
              f"reproduce when the run was replayed with the full {first_timeout_s():g} s of CPU "
              f"time (replay: python -m pgconform replay {failure.string})")
    report.outcome = "skipped"
    report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {reason}")
    return dict(verdict, outcome="skipped", clause=None, message=reason, diagram_rows=0)


def _write_trace(item, judged: _Judged, machine, violation, report, verdict: dict) -> dict:
    """With ``--pgconform-trace-dir``, the failure's timeline, named after the item."""
    trace_dir = item.config.getoption("pgconform_trace_dir")
    if trace_dir and machine is not None:
        from pgconform.report.timeline import write_html

        os.makedirs(trace_dir, exist_ok=True)
        name = item.nodeid.split("::")[-2] if item.nodeid.count("::") >= 2 else item.name
        path = os.path.join(trace_dir, f"{database_dirname(name)}-"
                                       f"{database_dirname(judged.spec)}.html")
        write_html(path, machine, violation,
                   title=f"{judged.spec} on {judged.arch}, scenario {judged.scenario}")
        report.sections.append(("pgconform trace", f"timeline written to {path}"))
    return verdict


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    judged = _judged_by(item)
    if judged is None:
        return
    from pgconform.harness import runs
    from pgconform.report.summary import ItemResult

    if report.skipped and report.when in ("setup", "call") and not hasattr(report, "wasxfail"):
        result = ItemResult(item.nodeid, judged.arch, judged.scenario, "skipped")
    elif report.when == "call":
        known = dict(runs.tolerated_hits)
        verdict = {"outcome": "passed"}
        if report.failed and call.excinfo is not None:
            _show_verdict_first(item, call.excinfo, report)
            verdict = _judge_failure(item, judged, call.excinfo.value, report)
        xfails = judged.xfails
        hit = sorted({xfails[c][0] for c in known if c in xfails})
        if report.passed and hit:
            report.outcome = "skipped"
            report.wasxfail = "pgconform --xfails-file: " + "; ".join(
                f"{c} x{n} ({xfails[c][1]})" for c, n in sorted(known.items()) if c in xfails)
        result = ItemResult(item.nodeid, judged.arch, judged.scenario, known=known,
                            xfails=tuple(hit), **verdict)
    elif report.failed:  # setup or teardown: no verdict, but the item did not pass
        exc = call.excinfo.value if call.excinfo is not None else None
        result = ItemResult(item.nodeid, judged.arch, judged.scenario, "errored",
                            message=f"{report.when}: {type(exc).__name__}: {exc}")
    else:
        return
    report.user_properties.append(("pgconform", result.to_json()))
    _record_for_junit(item, result)


# ------------------------------------------------------------------------------------------------
# what a failure shows: the verdict first, the harness traceback only when asked for

#: The ``--tb`` styles that show the harness's traceback after the verdict: those who ask for a
#: whole traceback get it (and ``--full-trace``).  ``auto`` (the default) and ``short`` show the
#: verdict alone, ``line`` its first line, ``no`` nothing.
_TRACEBACK_STYLES = ("long", "native")


def _violations_in(exc) -> list | None:
    """The pgconform violations ``exc`` is (one, or Hypothesis's group of distinct failures), or
    None when anything else was raised: a crash of the harness keeps pytest's traceback."""
    from pgconform.sim.errors import Violation

    if isinstance(exc, Violation):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [_violations_in(e) for e in exc.exceptions]
        if found and all(f is not None for f in found):
            return [v for f in found for v in f]
    return None


def verdict_text(violations: list) -> str:
    """What a failure shows first: each violation's verdict (headline, diagram, what was judged,
    the replay line) and after it Hypothesis's notes on it (the program that reproduces it)."""
    parts = []
    for i, v in enumerate(violations):
        if len(violations) > 1:
            parts.append(f"distinct failure {i + 1} of {len(violations)}:")
        parts.append(str(v))
        notes = [str(n) for n in getattr(v, "__notes__", ())]
        if notes:
            parts.append("\n".join(notes))
    return "\n\n".join(parts) + "\n"


def _show_verdict_first(item: pytest.Item, excinfo: pytest.ExceptionInfo, report) -> None:
    """For a pgconform violation, make the failure section the verdict: pytest's traceback of the
    harness (Hypothesis, the machine, ``Machine.violation``) says nothing the verdict does not,
    and it came first, 40-55 lines of it.  With ``--tb=long`` or ``--tb=native`` it follows the
    verdict, its message cut to one line.  The crash line (the short test summary, ``--tb=line``,
    JUnit's failure message) is the violation's first line only: pytest prints that message whole
    when ``CI`` is set, and the verdict must be printed once.  Anything but a violation keeps
    pytest's traceback."""
    violations = _violations_in(excinfo.value)
    if not violations:
        return
    try:
        report.longrepr = _verdict_longrepr(item, excinfo, violations, report.longrepr)
    except Exception as e:  # noqa: BLE001 - never an INTERNALERROR: pytest's own repr stands
        report.sections.append(("pgconform", f"the verdict could not be put first: "
                                             f"{type(e).__name__}: {e}"))


def _verdict_longrepr(item: pytest.Item, excinfo: pytest.ExceptionInfo, violations: list,
                      original):
    """The failure section of ``violations`` (see :func:`_show_verdict_first`), built of pytest's
    own repr classes so that xdist carries it from the workers and junitxml finds its message
    (``_pytest._code.code``: pytest has no public way to build one; should they change, the
    caller's fallback keeps pytest's own repr)."""
    from _pytest._code.code import (
        ExceptionChainRepr,
        ExceptionRepr,
        ReprFileLocation,
        ReprTracebackNative,
    )

    first = violations[0]
    message = f"[{first.clause}] {first.message}".split("\n", 1)[0]
    if len(violations) > 1:
        message += f" (and {len(violations) - 1} more distinct failures)"
    # where: the item's own file (a machine's runTest is Hypothesis's, in hypothesis/stateful.py)
    path, line = item.nodeid.split("::", 1)[0], 1
    if item.location[0] == path and item.location[1] is not None:
        line = item.location[1] + 1
    crash = ReprFileLocation(path, line, message)
    style = item.config.getoption("tbstyle", "auto")
    asked = f"--tb={style}"
    if item.config.getoption("fulltrace", False):
        style, asked = "long", "--full-trace"  # pytest shows the long traceback, unfiltered
    # --tb=line: the crash line alone, "path:line: [clause] message"
    lines = [] if style == "line" else verdict_text(violations).splitlines(keepends=True)
    chain = [(ReprTracebackNative(lines), crash, None)]
    if style in _TRACEBACK_STYLES and isinstance(original, ExceptionRepr):
        before = getattr(original, "chain", None) or [(original.reprtraceback, None, None)]
        chain[0] = (chain[0][0], None, f"The harness's traceback ({asked}):")
        chain += [(_without_message(tb, excinfo.value), where, why) for tb, where, why in before]
        chain[-1] = (chain[-1][0], crash, chain[-1][2])
    longrepr = ExceptionChainRepr(chain)
    if isinstance(original, ExceptionRepr):
        longrepr.sections.extend(original.sections)
    return longrepr


def _without_message(reprtraceback, exc):
    """``reprtraceback`` with the exception's message cut to its first line: the rest of it is
    the verdict, already shown above the traceback."""
    import dataclasses
    import traceback

    from _pytest._code.code import ReprEntry, ReprEntryNative, ReprTraceback

    entries = []
    for entry in reprtraceback.reprentries:
        if isinstance(entry, ReprEntry):
            marks = [i for i, line in enumerate(entry.lines) if line.startswith("E")]
            if len(marks) > 1:
                lines = [*entry.lines[:marks[0] + 1], "E       (the verdict above)",
                         *entry.lines[marks[-1] + 1:]]
                entry = dataclasses.replace(entry, lines=lines)
        elif isinstance(entry, ReprEntryNative):
            only = traceback.format_exception_only(type(exc), exc)
            lines = list(entry.lines)
            if len(lines) > len(only) and lines[-len(only):] == only:
                head = only[0].split("\n", 1)[0]
                entry = ReprEntryNative([*lines[:-len(only)], f"{head}\n",
                                         "    (the verdict above)\n"])
        entries.append(entry)
    return ReprTraceback(entries, reprtraceback.extraline, reprtraceback.style)


def _record_for_junit(item: pytest.Item, result) -> None:
    """A failure's clause, outcome and replay string as plain-string properties of the item, so
    that JUnit XML (``--junitxml``) carries them to CI systems.  They go on the item: junitxml
    writes the properties of the teardown report, which copies the item's; the ``pgconform``
    property (a dict, for this plugin's summary) is on the call report only."""
    if result.outcome not in ("failed", "errored"):
        return
    if result.clause:
        item.user_properties.append(("pgconform_clause", result.clause))
    item.user_properties.append(("pgconform_outcome", result.outcome))
    if result.replay:
        item.user_properties.append(("pgconform_replay", result.replay))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    ours = False
    for key, value in getattr(report, "user_properties", ()):
        if key == "pgconform":
            from pgconform.report.summary import ItemResult

            ours = True
            results = _current_results()
            if results is not None:
                results.append(ItemResult(**{**value, "xfails": tuple(value["xfails"])}))
    if not ours and report.when == "call" and not report.skipped and _configs:
        # some other test ran: see _judged_nothing
        counts = _configs[-1].stash.get(_PGCONFORM_ITEMS_KEY, None)
        if counts is not None:
            counts[2] += 1


def _current_results() -> list | None:
    config = _configs[-1] if _configs else None
    return config.stash.get(_RESULTS_KEY, None) if config is not None else None


_configs: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _configs.append(session.config)


def _is_conformance_item(item: pytest.Item) -> bool:
    """A conformance machine's item or the sweep's (marked ``pgconform_sweep``), before it runs."""
    return _machine_of(item) is not None or item.get_closest_marker("pgconform_sweep") is not None


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    counts = config.stash.get(_PGCONFORM_ITEMS_KEY, None)
    if counts is not None:
        counts[0] += sum(1 for item in items if _is_conformance_item(item))


def pytest_deselected(items) -> None:
    config = items[0].config if items else None
    counts = config.stash.get(_PGCONFORM_ITEMS_KEY, None) if config is not None else None
    if counts is not None:
        counts[1] += sum(1 for item in items if _is_conformance_item(item))


def _judged_nothing(config: pytest.Config) -> str | None:
    """Why a run that collected conformance items judged none of them, or None."""
    results = config.stash.get(_RESULTS_KEY, None) or []
    collected, deselected, others = config.stash.get(_PGCONFORM_ITEMS_KEY, (0, 0, 0))
    if (config.getoption("collectonly", False) or not (collected or results) or others
            or any(r.outcome != "skipped" for r in results)):
        return None
    skipped = sum(1 for r in results if r.outcome == "skipped")
    parts = [f"{n} {what}" for n, what in ((skipped, "skipped"), (deselected, "deselected"))
             if n]
    return ("pgconform: usage error: the run judged nothing: every conformance item was "
            f"skipped or deselected ({', '.join(parts) or 'none ran'}); check --arch, -k, -m "
            "and the implementation's arches")


def _implementation_info(config: pytest.Config) -> dict:
    selection = config.stash.get(_SELECTION_KEY, None)
    if selection is None:
        # the xdist controller of a run without options: the workers chose the same way
        spec, source = choose_spec(None, os.environ.get(ENV_VAR), config.getini(INI_KEY))
        return {"spec": spec, "source": source}
    return {"spec": selection.spec, "source": selection.source,
            "name": selection.implementation.name}


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    nothing = _judged_nothing(config)
    results = config.stash.get(_RESULTS_KEY, None)
    if nothing is not None:
        terminalreporter.write_line(nothing, red=True)
    if not results or nothing is not None:
        return
    from pgconform.report.summary import summary_lines

    info = _implementation_info(config)
    terminalreporter.write_sep("=", "pgconform conformance summary")
    header = f"implementation {info.get('spec')} (from {info.get('source')})"
    for line in summary_lines(results, header, verbose=config.getoption("verbose") > 0):
        terminalreporter.write_line(line)
    entries = config.stash.get(_XFAILS_KEY, [])
    hit = {line for r in results for line in r.xfails}
    for e in entries:
        if e.line not in hit:
            terminalreporter.write_line(
                f"pgconform: warning: --xfails-file line {e.line} ({e.clause} {e.arch} "
                f"{e.scenario}) matched no violation in this run: fixed? remove it")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """An xdist worker's usage error (raised as it collected a conformance module) reaches the
    controller here: the run ends with it, not with "no tests ran"."""
    message = getattr(node, "workeroutput", {}).get("pgconform_usage_error")
    if message:
        node.config.stash[_USAGE_KEY] = message


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    if _configs and _configs[-1] is config:
        _configs.pop()
    message = config.stash.get(_USAGE_KEY, None)
    if hasattr(config, "workerinput"):
        if message is not None:
            config.workeroutput["pgconform_usage_error"] = message
        return
    if message is not None:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if config.getoption("dist", "no") != "no":  # else pytest prints the UsageError
            print(f"ERROR: {message}", file=sys.stderr)
        return
    if (_judged_nothing(config) is not None
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    results = config.stash.get(_RESULTS_KEY, None)
    path = config.getoption("pgconform_report", None)
    if path and results is not None:
        from pgconform.report.summary import write

        try:
            write(path, results, _implementation_info(config))
        except OSError as e:  # checked at configure; it may still go away during the run
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            print(f"pgconform: --pgconform-report {path}: cannot write the report ({e})")
