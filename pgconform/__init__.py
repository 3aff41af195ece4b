"""pgconform: a conformance suite for the lockless page-table protocol of Linux.

The package wires its layers together here, where every import of any of its modules passes
first: the engine's verdicts (:class:`pgconform.sim.errors.Violation`) are put into words by the
report (:mod:`pgconform.report.verdict`: the clause statement, the race diagram, the replay
command), so that the engine imports nothing above it.
"""

from pgconform.report.verdict import PRESENTER as _PRESENTER
from pgconform.sim.errors import Violation as _Violation

_Violation.presenter = _PRESENTER
