"""pgconform's pytest plugin, its second half: what a conformance item's failure is (its verdict
first, the harness traceback only when asked for), whether it is deterministic (replayed), whether
a hang reproduces, the failure's HTML timeline (``--pgconform-trace-dir``), the known failures
(``--xfails-file``), the summary at the end and the report (``--pgconform-report``).  What is
judged comes from :mod:`pgconform.plugin.selection`.
"""

from __future__ import annotations

import os
import sys

import attrs
import pytest

from pgconform.plugin.selection import (
    _PGCONFORM_ITEMS_KEY,
    _RESULTS_KEY,
    _SELECTION_KEY,
    _USAGE_KEY,
    _XFAILS_KEY,
    ENV_VAR,
    INI_KEY,
    choose_spec,
    database_dirname,
    selected_spec,
    selected_xfails,
)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "help", False):
        return
    config.addinivalue_line("markers", "pgconform_sweep: an item of pgconform's exhaustive "
                                       "sweep (a conformance item)")
    config.stash[_RESULTS_KEY] = []
    # conformance items collected, deselected; other tests that ran
    config.stash[_PGCONFORM_ITEMS_KEY] = [0, 0, 0]


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
    # a sweep failure was checked by the sweep itself (pgconform.harness.sweep.sweep), hangs
    # included
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
