"""Verdict exceptions raised by the simulated machine and by the oracles."""

from __future__ import annotations


class Violation(AssertionError):
    """A protocol violation: ``clause`` is the stable clause id (see :mod:`pgconform.oracle.clauses`).

    The machine attaches the race diagram (``diagram``) before the exception leaves it, and the
    conformance machine the lines saying what was judged and how to replay it (``context``), so
    whoever catches it (Hypothesis, a test) prints the violation together with the interleaving.
    """

    #: "failed" (wrong behaviour) or "errored" (the implementation misbehaved as code)
    outcome = "failed"

    def __init__(self, clause: str, message: str, *, task=None, obj=None):
        super().__init__(f"[{clause}] {message}")
        self.clause = clause
        self.message = message
        self.task = task
        self.obj = obj
        self.diagram = ""
        self.context: list[str] = []

    def headline(self) -> str:
        """The violation, the clause's statement and the object it concerns."""
        from pgconform.oracle.clauses import CLAUSES

        lines = [f"[{self.clause}] {self.message}"]
        statement = CLAUSES.get(self.clause)
        if statement:
            lines.append(f"  clause {self.clause}: {statement}")
        if self.obj is not None:
            lines.append(f"  object: {self.obj!r}")
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.headline()]
        if self.diagram:
            parts.append(self.diagram)
        if self.context:
            parts.append("\n".join(self.context))
        return "\n\n".join(parts)


class ImplementationErrored(Violation):
    """The implementation under test raised, returned garbage, hung, or otherwise misbehaved as
    code.  Kept apart from a wrong-behaviour :class:`Violation` so reports can tell "failed" from
    "errored"."""

    outcome = "errored"


class Hang(BaseException):
    """Raised by the watchdog into code that ran too long without yielding an effect.  A
    BaseException, so that an implementation's ``except Exception`` cannot swallow it."""
