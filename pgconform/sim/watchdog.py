"""The watchdog: code that runs too long without yielding an effect is interrupted and judged.

An implementation that loops while yielding effects is caught by the machine's step bound
(``sched.no-progress``).  One that loops *without* yielding (``while True: pass`` inside a series
function) never returns to the simulator, so the step bound cannot see it: a timer of the
process's own CPU time (``ITIMER_PROF``, SIGPROF), armed around each rule of a conformance machine
and each schedule of the exhaustive sweep, raises :class:`~pgconform.sim.errors.Hang` into it,
and the run reports ``impl.hang`` instead of hanging the suite.

CPU time, never wall-clock time: a verdict must depend on the implementation, not on the machine
it runs on.  A loaded machine, a slow CI runner, a stopped process (SIGSTOP, a debugger, a laptop
asleep) spend wall-clock time but no CPU time of this process, so they cannot make a correct
implementation "hang".  And a hang is confirmed before it is a verdict: the plugin replays the
failing run with the full time (:func:`pgconform.harness.replay.confirm_hang`), the sweep runs the
schedule again; one that does not hang again at the same place is not judged.

A machine's first hang waits :func:`first_timeout_s` (``PGCONFORM_HANG_S``, default
:data:`DEFAULT_TIMEOUT_S` seconds of CPU time).  Its later ones wait :data:`LATER_TIMEOUT_S`, so
that Hypothesis shrinking a hang (which calls the hanging code many times) stays quick, but only
while the function that hung is running: anywhere else the full time holds, so a garbage
collection or a slow rule elsewhere is never taken for the hang.  Other machines (items) keep
the full time.  A rule of the reference takes milliseconds of CPU time (a full garbage
collection in a long run, up to half a second).

Without ``setitimer`` (Windows) or off the main thread, the watchdog does nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time

from pgconform.sim.errors import Hang, ImplementationErrored

#: the environment variable setting the first timeout, in seconds of CPU time
ENV_VAR = "PGCONFORM_HANG_S"
#: the first timeout when ``PGCONFORM_HANG_S`` is not set (seconds of CPU time)
DEFAULT_TIMEOUT_S = 10.0
#: the first timeout, overriding ``PGCONFORM_HANG_S`` when set (the project's own tests)
FIRST_TIMEOUT_S: float | None = None
LATER_TIMEOUT_S = 0.05
#: after the first signal, it fires again every so often (CPU time): a SIGPROF that lands in a
#: garbage collector callback is swallowed there ("Exception ignored"), so one shot is not enough
REPEAT_S = 0.1


class HangLimitError(ValueError):
    """``PGCONFORM_HANG_S`` is not a positive number of seconds (a usage error)."""


def first_timeout_s(environ=None) -> float:
    """The watchdog's full time, in seconds of CPU time: :data:`FIRST_TIMEOUT_S` if set, else
    ``PGCONFORM_HANG_S``, else :data:`DEFAULT_TIMEOUT_S`; a value that is not a positive finite
    number raises :class:`HangLimitError` (the plugin makes it a usage error before the run)."""
    if FIRST_TIMEOUT_S is not None:
        return FIRST_TIMEOUT_S
    text = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise HangLimitError(f"{ENV_VAR}={text!r}: the watchdog's time must be a positive number "
                             "of seconds (of CPU time)")
    return value


def _on_alarm(signum, frame):
    raise Hang()


def timeout_s(hung_before: bool = False) -> float:
    """The watchdog's time for a rule: shorter once the same machine (one implementation, arch
    and scenario) has hung, so that shrinking a hang stays quick; other items keep the full
    time."""
    first = first_timeout_s()
    return min(LATER_TIMEOUT_S, first) if hung_before else first


def _only_in(code, full: float):
    """A handler that raises only while ``code`` runs (is on the stack), until the body has used
    ``full`` seconds of CPU time; after that, anywhere."""
    deadline = time.process_time() + full

    def on_alarm(signum, frame):
        f = frame
        while f is not None and f.f_code is not code:
            f = f.f_back
        if f is not None or time.process_time() >= deadline:
            _on_alarm(signum, frame)

    return on_alarm


@contextlib.contextmanager
def watchdog(seconds: float | None = None, only_in=None, full: float | None = None):
    """Interrupt the body with :class:`Hang` after it has used ``seconds`` of the process's CPU
    time (default :func:`timeout_s`); with ``only_in`` (a code object), only while that code
    runs, until the body has used ``full`` seconds (default :func:`first_timeout_s`)."""
    if not hasattr(signal, "setitimer") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _on_alarm if only_in is None else _only_in(
        only_in, first_timeout_s() if full is None else full)
    previous = signal.signal(signal.SIGPROF, handler)
    signal.setitimer(signal.ITIMER_PROF, seconds if seconds is not None else timeout_s(),
                     REPEAT_S)
    try:
        yield
    finally:
        while True:  # a signal due just as the body ends must not leave the timer armed
            try:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.signal(signal.SIGPROF, previous)
                break
            except Hang:
                continue


def hang_verdict(h: Hang, m, limit: float) -> ImplementationErrored:
    """The ``impl.hang`` verdict for a :class:`Hang` that interrupted simulated machine ``m``
    after ``limit`` seconds of CPU time: where it was (the innermost frame of the implementation,
    else the innermost frame).  Its ``hang_place`` (the task and the function) is what a replay
    must hang in again to confirm it; its ``hang_code`` the code object of that function."""
    codes = m.implementation_code if m is not None else None
    where, place, tb = None, None, h.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == __file__:  # the signal handler's own frames
            break
        if where is None or not codes or code in codes:
            where = f"{code.co_name} ({os.path.basename(code.co_filename)}:{tb.tb_lineno})"
            place = code
        tb = tb.tb_next
    task = m.current if m is not None else None
    who = f"{task.name}: " if task is not None else ""
    v = ImplementationErrored(
        "impl.hang", f"{who}ran for more than {limit:g} s of CPU time without yielding an effect, "
        f"in {where}: an endless loop that never returns to the simulator", task=task)
    v.hang_code = place
    v.hang_place = (task.name if task is not None else None,
                    place.co_filename if place else None, place.co_name if place else None)
    if m is not None:
        m.failed = True
        v.machine = m
    return v
