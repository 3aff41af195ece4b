"""Verdict exceptions raised by the simulated machine and by the oracles."""

from __future__ import annotations


class Violation(AssertionError):
    """A protocol violation: ``clause`` is the stable clause id (see :mod:`pgconform.oracle.clauses`).

    The machine attaches the race diagram (``trace``) before the exception leaves it, so whoever
    catches it (Hypothesis, a test) prints the violation together with the interleaving.
    """

    def __init__(self, clause: str, message: str, *, task=None, obj=None):
        super().__init__(f"[{clause}] {message}")
        self.clause = clause
        self.message = message
        self.task = task
        self.obj = obj
        self.diagram = ""

    def __str__(self) -> str:
        head = f"[{self.clause}] {self.message}"
        return f"{head}\n\n{self.diagram}" if self.diagram else head


class ImplementationErrored(Violation):
    """The implementation under test raised, returned garbage, or otherwise misbehaved as code.

    Kept apart from a wrong-behaviour :class:`Violation` so reports can tell "failed" from "errored".
    """
