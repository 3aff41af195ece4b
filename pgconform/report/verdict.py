"""A verdict in words: the presenter the engine's violations print with
(:class:`pgconform.sim.errors.Presenter`, installed by ``pgconform/__init__.py``).

The engine carries a violation's data (its clause, message, object, the machine it was raised in
and the run that replays it); this says it: the clause's statement from the catalogue
(:mod:`pgconform.oracle.clauses`), the race diagram (:mod:`pgconform.report.trace`) and the
command that replays the run (:mod:`pgconform.harness.runs`).
"""

from __future__ import annotations

from pgconform.harness.runs import encode
from pgconform.oracle.clauses import CLAUSES
from pgconform.report.trace import render
from pgconform.sim.errors import Presenter


class VerdictPresenter(Presenter):
    def statement(self, clause: str) -> str | None:
        return CLAUSES.get(clause)

    def diagram(self, violation) -> str:
        return render(violation.machine, violation)

    def replay(self, run) -> str:
        return f"replay: python -m pgconform replay {encode(run)}"


PRESENTER = VerdictPresenter()
