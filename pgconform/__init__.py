"""pgconform: a conformance suite for the lockless page-table protocol of Linux.

The package wires its layers here, importing nothing until it is used (the pytest plug-in loads
the package in every pytest run of the environment): the engine's verdicts
(:class:`pgconform.sim.errors.Violation`) are put into words by :data:`presenter`, which is the
report's (:mod:`pgconform.report.verdict`: the clause statement, the race diagram, the replay
command), so that the engine imports nothing above it.
"""


class _Presenter:
    """The report's presenter, imported at its first use."""

    def statement(self, clause):
        from pgconform.report.verdict import PRESENTER

        return PRESENTER.statement(clause)

    def diagram(self, violation):
        from pgconform.report.verdict import PRESENTER

        return PRESENTER.diagram(violation)

    def replay(self, run):
        from pgconform.report.verdict import PRESENTER

        return PRESENTER.replay(run)


#: how the engine's verdicts are put into words (read by pgconform.sim.errors)
presenter = _Presenter()
