"""Replay of a recorded schedule: a list of decisions (which task steps, by its index among the
run's tasks, or :data:`CALLBACK`: the first ready RCU callback runs), then the default decisions
(the current task runs on while it can; when it blocks or ends, the first runnable task, else a
ready callback).  From a fresh world a deterministic machine replays the decisions exactly; a
decision that does not apply is :class:`Diverged`.

A sweep failure's replay string holds such a list (``pgconform/harness/sweep.py``), and every
schedule of the exhaustive explorer is one (:mod:`.exhaustive`: a prefix of decisions, then the
defaults, recording where another decision was possible).
"""

from __future__ import annotations

from pgconform.sim.scheduler import Scheduler

#: the decision that runs the first ready RCU callback
CALLBACK = -1


class Diverged(Exception):
    """A prefix of decisions that does not apply: at ``pos`` it names a task that is not
    runnable (or a callback when none is ready), or the run ended before the prefix did.  From a
    fresh world a deterministic machine replays a prefix exactly, so in the exploration this is
    the implementation's nondeterminism; in a replay string, a string that no longer applies."""

    def __init__(self, pos: int, choice: int | None, runnable: list, ready: bool):
        self.pos, self.choice, self.runnable, self.ready = pos, choice, runnable, ready
        can = ", ".join(f"task {i}" for i in runnable) or "no task"
        if ready:
            can += " or an RCU callback"
        if choice is None:
            what = f"the run ended after {pos} decisions, before the recorded ones did"
        else:
            named = "an RCU callback" if choice == CALLBACK else f"task {choice}"
            what = f"decision {pos + 1} runs {named}, but only {can} could run there"
        super().__init__(what)


class Replay(Scheduler):
    """Follow ``decisions`` over ``tasks``, then the default decisions; :attr:`decisions` is
    every decision taken, :attr:`preemptions` how many of them switched away from a task that
    could go on."""

    def __init__(self, tasks: list, decisions: tuple = ()):
        self.tasks = tasks
        self.prefix = tuple(decisions)
        self.decisions: list[int] = []
        self.preemptions = 0
        self._cur: int | None = None

    def choices(self, pos: int, default: int, runnable: list[int], ready: bool) -> None:
        """Called at each decision with the default one and what could run instead (for the
        explorer to record its branches)."""

    def pick(self, m):
        tasks = self.tasks
        decisions = self.decisions
        runnable = [i for i, t in enumerate(tasks)
                    if not t.done and t.pending.blocked(m, t) is None]
        ready = bool(m.callbacks) and bool(m.ready_callbacks())
        if not runnable and not ready:
            if any(not t.done for t in tasks):
                m.check_deadlock()
            if len(decisions) < len(self.prefix):
                raise Diverged(len(decisions), None, runnable, ready)
            return None
        pos = len(decisions)
        cur = self._cur
        default = cur if cur in runnable else (runnable[0] if runnable else CALLBACK)
        self.choices(pos, default, runnable, ready)
        choice = self.prefix[pos] if pos < len(self.prefix) else default
        if choice != default and choice not in runnable and (choice != CALLBACK or not ready):
            raise Diverged(pos, choice, runnable, ready)
        if choice != default and cur in runnable:
            self.preemptions += 1
        decisions.append(choice)
        if choice == CALLBACK:
            return m.ready_callbacks()[0]
        self._cur = choice
        return tasks[choice]
