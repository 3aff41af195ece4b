"""The watchdog: code that runs too long without yielding an effect is interrupted and judged.

An implementation that loops while yielding effects is caught by the machine's step bound
(``sched.no-progress``).  One that loops *without* yielding (``while True: pass`` inside a series
function) never returns to the simulator, so the step bound cannot see it: a SIGALRM timer, armed
around each rule of a conformance machine, raises :class:`~pgconform.sim.errors.Hang` into it,
and the machine reports ``impl.hang`` instead of hanging the suite.

A machine's first hang waits :data:`FIRST_TIMEOUT_S`; its later ones :data:`LATER_TIMEOUT_S`,
so that Hypothesis shrinking a hang (which calls the hanging code many times) stays quick; other
machines (items) keep the full time.  A rule
of the reference takes milliseconds.  ``PGCONFORM_HANG_S`` sets the first timeout.  Without
SIGALRM (Windows) or off the main thread, the watchdog does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from pgconform.sim.errors import Hang, ImplementationErrored

FIRST_TIMEOUT_S = float(os.environ.get("PGCONFORM_HANG_S", "10"))
LATER_TIMEOUT_S = 0.25
#: after the first alarm, it fires again every so often: a SIGALRM that lands in a garbage
#: collector callback is swallowed there ("Exception ignored"), so one shot is not enough
REPEAT_S = 0.1


def _on_alarm(signum, frame):
    raise Hang()


def timeout_s(hung_before: bool = False) -> float:
    """The watchdog's time for a rule: shorter once the same machine (one implementation, arch
    and scenario) has hung, so that shrinking a hang stays quick; other items keep the full
    time."""
    return min(LATER_TIMEOUT_S, FIRST_TIMEOUT_S) if hung_before else FIRST_TIMEOUT_S


@contextlib.contextmanager
def watchdog(seconds: float | None = None):
    """Interrupt the body with :class:`Hang` after ``seconds`` (default :func:`timeout_s`)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds if seconds is not None else timeout_s(),
                     REPEAT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def hang_verdict(h: Hang, k, limit: float) -> ImplementationErrored:
    """The ``impl.hang`` verdict for a :class:`Hang` that interrupted kernel ``k``'s machine
    after ``limit`` seconds: where it was (the innermost frame of the implementation, else the
    innermost frame)."""
    codes = k.m.implementation_code if k is not None else None
    where, tb = None, h.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if where is None or not codes or code in codes:
            where = f"{code.co_name} ({os.path.basename(code.co_filename)}:{tb.tb_lineno})"
        tb = tb.tb_next
    task = k.m.current if k is not None else None
    who = f"{task.name}: " if task is not None else ""
    v = ImplementationErrored(
        "impl.hang", f"{who}ran for more than {limit:g} s without yielding an effect, in {where}: an endless loop that never returns to the "
        "simulator", task=task)
    if k is not None:
        k.m.failed = True
        v.machine = k.m
    return v
