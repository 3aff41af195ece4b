"""The scheduler interface: what every schedule policy implements and the engine calls.

The machine makes no choice of its own (:mod:`pgconform.sim.machine`): before each step,
:meth:`Machine.drive <pgconform.sim.machine.Machine.drive>` asks a :class:`Scheduler` what runs
next, a task (which then takes one step) or a ready RCU callback (which then runs), or nothing (the
run stops there).  The policies are one module each under :mod:`pgconform.sim.policies`; the
engine knows none of them by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgconform.sim.machine import Callback, Machine, Task


class Scheduler:
    """A schedule policy.  One object schedules one stretch of one run (it may keep state
    between its decisions: a round, priorities, the decisions taken so far)."""

    def pick(self, m: Machine) -> Task | Callback | None:
        """What runs next on ``m``: a runnable task of ``m`` (its pending effect must not be
        blocked), a callback of ``m.ready_callbacks()``, or None to stop.  A policy may raise a
        verdict instead (``m.check_deadlock()`` when nothing can run)."""
        raise NotImplementedError
