"""pgconform: a conformance suite for the lockless page-table protocol of Linux.

The package wires its layers together here, where every import of any of its modules passes
first: the engine's verdicts (:class:`pgconform.sim.errors.Violation`) are put into words by the
report (:mod:`pgconform.report.verdict`: the clause statement, the race diagram, the replay
command), so that the engine imports nothing above it.  The report is imported when the first
verdict is put into words, so that importing the registry or the plugin imports no model.
"""

from pgconform.sim.errors import Presenter as _Presenter
from pgconform.sim.errors import Violation as _Violation


class _ReportPresenter(_Presenter):
    """The report's presenter, imported on first use."""

    def __getattribute__(self, name):
        from pgconform.report.verdict import PRESENTER

        _Violation.presenter = PRESENTER
        return getattr(PRESENTER, name)


_Violation.presenter = _ReportPresenter()
