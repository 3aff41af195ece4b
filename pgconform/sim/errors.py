"""Verdict exceptions raised by the simulated machine and by the oracles."""

from __future__ import annotations

import sys


class Presenter:
    """How a verdict is put into words beyond its own message: the statement of its clause, the
    race diagram of the run it was raised in, the command that replays that run.  The engine
    knows none of them (the clause catalogue, the renderer and the replay strings are the layers
    above it): the package that holds the engine installs its presenter as its ``presenter``
    attribute (``pgconform/__init__.py``), or one is set as :attr:`Violation.presenter`.  This one
    says nothing more."""

    def statement(self, clause: str) -> str | None:
        """The one-line statement of ``clause``, if it has one."""
        return None

    def diagram(self, violation: Violation) -> str:
        """The race diagram of ``violation.machine``'s trace for ``violation``."""
        return ""

    def replay(self, run) -> str:
        """The line saying how to replay ``run`` (what :attr:`Violation.run` holds)."""
        return ""


class Violation(AssertionError):
    """A protocol violation: ``clause`` is the stable clause id (see
    :mod:`pgconform.oracle.clauses`).

    The machine attaches itself (``machine``) before the exception leaves it, and the conformance
    machine the run that replays it (``run``) and what was judged (``judged``), so whoever prints
    it (Hypothesis, a test) prints the violation with the race diagram (``diagram``) and the lines
    saying what was judged and how to replay it (``context``), in the words of the installed
    :attr:`presenter`.  Both are rendered when first asked for: Hypothesis raises thousands of
    violations while it shrinks and prints one.
    """

    #: "failed" (wrong behaviour) or "errored" (the implementation misbehaved as code)
    outcome = "failed"
    #: puts verdicts into words (None: the top package's ``presenter``, else :class:`Presenter`)
    presenter: Presenter | None = None

    def __init__(self, clause: str, message: str, *, task=None, obj=None):
        super().__init__(f"[{clause}] {message}")
        self.clause = clause
        self.message = message
        self.task = task
        self.obj = obj
        self._diagram: str | None = None
        self._context: list[str] | None = None
        self.machine = None  # the simulated machine it was raised in
        self.run = None      # the run that replays it (a conformance machine's or a sweep's)
        self.judged = ""     # what was judged: implementation, arch, scenario

    @property
    def diagram(self) -> str:
        if self._diagram is None:
            if self.machine is None:
                return ""
            self._diagram = self._presenter().diagram(self)
        return self._diagram

    @diagram.setter
    def diagram(self, text: str) -> None:
        self._diagram = text

    @property
    def context(self) -> list[str]:
        if self._context is None:
            if self.run is None:
                return []
            self._context = [self.judged, self._presenter().replay(self.run)]
        return self._context

    @context.setter
    def context(self, lines: list[str]) -> None:
        self._context = lines

    def _presenter(self) -> Presenter:
        if self.presenter is not None:
            return self.presenter
        top = sys.modules.get(__name__.partition(".")[0])
        return getattr(top, "presenter", None) or _SILENT

    def headline(self) -> str:
        """The violation, the clause's statement and the object it concerns."""
        lines = [f"[{self.clause}] {self.message}"]
        statement = self._presenter().statement(self.clause)
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


_SILENT = Presenter()


class ImplementationErrored(Violation):
    """The implementation under test raised, returned garbage, hung, or otherwise misbehaved as
    code.  Kept apart from a wrong-behaviour :class:`Violation` so reports can tell "failed" from
    "errored"."""

    outcome = "errored"


class Hang(BaseException):
    """Raised by the watchdog into code that ran too long (in CPU time) without yielding an
    effect.  A BaseException, so that an implementation's ``except Exception`` cannot swallow
    it."""
