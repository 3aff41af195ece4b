"""The conformance machines: Hypothesis rule-based state machines closed over the implementation
judged and an architecture configuration.

Initialisation draws a world, focuses the run on one (mm, PMD range) and starts an operation there
(usually one that frees page tables).  Rules start more operations on idle CPUs, run everything
under a PCT schedule (lane priorities and change points: one decision settles hundreds of
effects), advance one CPU by a few effects, run a ready RCU callback, or finish the run and race
the same operations again from the same world under a new schedule; after every rule the machine
checks for a deadlock.  Teardown finishes every operation fairly (round-robin), runs every
callback (rcu_barrier) and checks the end state.  Oracles that fire at an effect raise from inside
the rule, with the race diagram of the run so far.
"""

from __future__ import annotations

import contextlib
import functools
from typing import ClassVar

from hypothesis import Phase, note, settings
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pgconform.harness import runs
from pgconform.harness.operations import FREERS, OP_KINDS, freers_for, op_kinds_for, vaddr
from pgconform.harness.scenario import build_world, start_op
from pgconform.implementation import Implementation
from pgconform.kernel.version import VERSIONS
from pgconform.oracle.state import check_end_state
from pgconform.sim.errors import Hang, Violation
from pgconform.sim.machine import Machine
from pgconform.sim.policies.pct import run_pct
from pgconform.sim.watchdog import hang_verdict, timeout_s, watchdog
from pgconform.strategies.operations import make_op, op_draws
from pgconform.strategies.schedules import (
    ADVANCE_DRAWS,
    ADVANCE_TO_LOCK_DRAWS,
    INIT_DRAWS,
    LANES,
    NCPUS,
    RCU_CALLBACK_DRAWS,
    SCHEDULE_DRAWS,
)
from pgconform.strategies.worlds import SHAPES, hot_places, worlds

__all__ = ["FREERS", "LANES", "NCPUS", "PCT_BUDGET", "SCENARIOS", "ConformanceMachine",
           "make_machine"]

#: steps one schedule rule may take (enough for every operation of the model to finish)
PCT_BUDGET = 400


#: the scenarios every architecture is judged in: the shape of the world the race happens in
SCENARIOS = tuple(SHAPES)


def _note(text: str) -> None:
    """Hypothesis's note() inside a test; nothing in a replay outside one."""
    with contextlib.suppress(InvalidArgument):
        note(text)


def judged(fn):
    """Wrap a rule: log the call (the replay string is the log), run it under the watchdog (an
    implementation looping without effects is a verdict, not a hung suite), and give a violation
    the lines that say what was judged and how to replay it."""
    name = fn.__name__

    @functools.wraps(fn)
    def rule_call(self, **kwargs):
        self.log.append((name, kwargs))
        return self._judge(fn, kwargs)

    return rule_call


class ConformanceMachine(RuleBasedStateMachine):
    """Base class; :func:`make_machine` binds ``implementation``, ``arch`` and ``scenario`` and
    adds the initialisation rule drawing the scenario's worlds."""

    implementation: Implementation
    #: how the implementation was chosen (a registered name or module:attr): the replay string
    #: names it
    spec: str = "reference"
    arch: str = "x86_64"
    scenario: str = "mixed"
    op_kinds: tuple = OP_KINDS
    #: clause -> (line, reason): the known-failures file's entries for this arch and scenario
    xfails: ClassVar[dict] = {}
    #: whether a rule of this machine class hung (the watchdog then waits less: see watchdog)
    hung: ClassVar[bool] = False
    #: the code object of the function it hung in (only there is the shorter time applied)
    hung_in: ClassVar[object] = None

    def __init__(self):
        super().__init__()
        self.k = None
        #: the simulated machine of the run, from before its world is built (a hang while
        #: building it still says in which task and function)
        self.sim = None
        self.world = None
        self.kinds = self.op_kinds
        self.log: list[tuple[str, dict]] = []
        runs.last_machine = (type(self), self.log)
        #: (lane, operation) started by the rule running now, until its step is printed
        #: (_repr_step)
        self.started_now: list = []

    def _build(self):
        """The world of this run, with the clauses of the known-failures file tolerated (counted
        in :data:`pgconform.harness.runs.tolerated_hits`, not raised) besides the implementation's
        own known violations."""
        self.sim = Machine()
        return build_world(self.world, self.implementation, self.arch, self.sim,
                           warm=self.warm,
                           tolerated={c: why for c, (_, why) in self.xfails.items()},
                           hits=runs.tolerated_hits)

    def _judge(self, fn, kwargs):
        cls = type(self)
        limit = timeout_s(cls.hung)
        try:
            with watchdog(limit, only_in=cls.hung_in if cls.hung else None):
                return fn(self, **kwargs)
        except Violation as v:
            raise self._failed(v) from None
        except Hang as h:
            v = hang_verdict(h, self.sim, limit)
            if not cls.hung:
                cls.hung, cls.hung_in = True, v.hang_code
            raise self._failed(v) from None

    def _failed(self, v: Violation) -> Violation:
        """Record the failure (for the plugin's report and trace picture) and give it what it
        says about what was judged and the run that replays it."""
        v.run = runs.Run(self.spec, self.arch, self.scenario, tuple(self.log))
        v.judged = (f"implementation: {self.spec} on {self.arch}, scenario {self.scenario} "
                    f"({v.outcome}: {v.clause})")
        runs.last_failure = runs.Failure(v.run, v, v.machine)
        return v

    def _init_world(self, world, kinds, hot, warm, primary, freer, partner=None, stage=0):
        """Build the world; focus the run on one (mm, PMD range), fault some of it in, and start a
        first operation, usually one that frees page tables (the protocol under test).  With a
        ``stage``, run it to just before its ``stage``-th lock and start a ``partner`` operation
        there: a race needs two operations, and its window mostly ends where the first takes a
        lock (pml, ptl) after a lockless check."""
        self.world = world
        # swarm testing: ``kinds`` is a bitmask of the operation kinds this run uses
        self.kinds = tuple(k for i, k in enumerate(OP_KINDS) if kinds >> i & 1 and
                           k in self.op_kinds) or self.op_kinds
        places = hot_places(world)
        # hot_places() lists collapsible ranges first: prefer them
        self.hot = places[hot % len(places) if hot >= 6 else hot % 2 % len(places)]
        self.warm = [(self.hot[0], self.hot[1] + w % 4, w >= 4) for w in warm]
        self.k = self._build()
        self.started = []
        reclaim = freers_for(self.k.version)[len(FREERS):]
        if freer == 2 and reclaim:
            # 6.14+: MADV_DONTNEED of the whole hot PMD range frees its table too
            primary = dict(primary, kind=reclaim[0].name, where=0, arg=reclaim[0].freer_arg)
        elif freer < 3:
            primary = dict(primary, kind=FREERS[freer % len(FREERS)])
        first = self._start(make_op(world, self.hot, self.op_kinds, **primary))
        if stage and partner is not None:
            self.k.m.run_to_sync(first, stage, PCT_BUDGET)
            self._start(make_op(world, self.hot, self.kinds, **partner))

    def _start(self, op):
        lane = self._idle_lane()
        self.started.append((lane, op))
        self.started_now.append((lane, op))
        _note(f"{lane}: {op}")  # the operation as run (the draws above pass through the swarm)
        return start_op(self.k, lane, op)

    def _idle_lane(self):
        busy = {t.lane for t in self.k.m.active()}
        for i in range(NCPUS):
            if f"CPU{i}" not in busy:
                return f"CPU{i}"
        return None

    @precondition(lambda self: self.k is not None and self._idle_lane() is not None)
    @rule(**op_draws)
    @judged
    def start(self, kind, mm, where, arg):
        """Start an operation on the first idle CPU (``where`` picks the address, mostly in the
        run's hot PMD range).  A failing program prints the step as the operation it started
        (:meth:`_repr_step`)."""
        self._start(make_op(self.world, self.hot, self.kinds, kind, mm, where, arg))

    def _repr_step(self, rule, data, result) -> str:
        """Hypothesis's line for a step of the failing program (it calls this once the rule has
        run), in kernel terms where the rule started operations: a start step as the operation
        it started, ``state.start(op='khugepaged', mm=0, addr=0x4000, arg=1)`` (the kind the
        run's swarm ran, the mm index, the user virtual address in hex), instead of the raw
        draws (``where=17``, an index into the run's places), which stay what the strategies
        draw and the replay strings record; the initialisation step followed by a comment line
        per operation it started (its ``primary`` and ``partner`` are raw draws too).  (A hook
        of Hypothesis's RuleBasedStateMachine, not in its documented API:
        tests/selftest/test_failure_output.py checks the printed program.)"""
        started, self.started_now = self.started_now, []
        if rule.function.__name__ == "start" and len(started) == 1:
            return f"state.start({self._op_args(started[0][1])})"
        line = super()._repr_step(rule, data, result)
        return "\n".join([line, *(f"# {lane}: {self._op_args(op)}" for lane, op in started)])

    def _op_args(self, op) -> str:
        # -1, "the newest mm", is the one start_op() picked when the rule ran
        return (f"op={op.kind!r}, mm={op.mm % len(self.k.mms)}, addr={vaddr(op.addr)}, "
                f"arg={op.arg}")

    @precondition(lambda self: self.k is not None and bool(self.k.m.runnable()))
    @rule(**ADVANCE_DRAWS)
    @judged
    def advance(self, pick, n):
        runnable = self.k.m.runnable()
        self.k.m.run(runnable[pick % len(runnable)], n)

    @precondition(lambda self: self.k is not None and bool(self.k.m.runnable()))
    @rule(**ADVANCE_TO_LOCK_DRAWS)
    @judged
    def advance_to_lock(self, pick, n):
        """Advance one CPU to just before the ``n``-th lock it takes from now: the end of a race
        window (a lockless check, then pml or ptl), where a preemption matters most."""
        runnable = self.k.m.runnable()
        self.k.m.run_to_sync(runnable[pick % len(runnable)], n, PCT_BUDGET)

    @precondition(lambda self: self.k is not None and (len(self.k.m.active()) >= 2
                                                       or bool(self.k.m.callbacks)))
    @rule(**SCHEDULE_DRAWS)
    @judged
    def schedule(self, order, change, at_locks):
        """Run everything under PCT: lane priorities ``order`` (first runs first) and preemptions
        at the ``change``-th preemption points (``at_locks``: just before the ``change``-th lock
        acquisitions)."""
        prio = {lane: len(order) - i for i, lane in enumerate(order)}
        run_pct(self.k.m, prio, change, PCT_BUDGET, at_locks)

    @precondition(lambda self: self.k is not None and len(self.started) >= 2)
    @rule()
    @judged
    def rerun(self):
        """Finish this run (and check it), then race the same operations again from the same
        world: one good world and set of operations gets several schedules."""
        self._finish()
        self.k = self._build()
        for lane, op in self.started:
            start_op(self.k, lane, op)

    @precondition(lambda self: self.k is not None and bool(self.k.m.ready_callbacks()))
    @rule(**RCU_CALLBACK_DRAWS)
    @judged
    def rcu_callback(self, pick):
        ready = self.k.m.ready_callbacks()
        self.k.m.run_callback(ready[pick % len(ready)])

    @invariant()
    def no_deadlock(self):
        if self.k is not None:
            self._judge(lambda self: self.k.m.check_deadlock(), {})

    def _finish(self):
        self.k.m.finish()
        self.k.m.check(lambda: check_end_state(self.k))

    def teardown(self):
        if self.k is not None and not self.k.m.failed:
            self._judge(ConformanceMachine._finish, {})


#: rule steps per example: a race needs a handful (start, start, schedule); short examples leave
#: time for more worlds
STEPS_PER_EXAMPLE = 20


def make_machine(implementation: Implementation, arch: str = "x86_64",
                 name: str | None = None, scenario: str = "mixed",
                 spec: str | None = None, xfails=None) -> type[ConformanceMachine]:
    """A machine class judging ``implementation`` (chosen as ``spec``: by default its name) on
    ``arch`` in ``scenario``; its ``TestCase`` inherits the loaded Hypothesis profile, with
    :data:`STEPS_PER_EXAMPLE` rule steps per example."""

    @initialize(world=worlds(scenario), **INIT_DRAWS)
    @judged
    def init_world(self, world, kinds, hot, warm, primary, freer, partner, stage):
        """Build the world; focus the run on one (mm, PMD range), fault some of it in, and start
        a first operation, usually one that frees page tables (the protocol under test), and
        perhaps a partner where the first is about to take a lock."""
        self._init_world(world, kinds, hot, warm, primary, freer, partner, stage)

    cls_name = name or f"Conformance_{arch}_{scenario}"
    cls = type(cls_name, (ConformanceMachine,), {"implementation": implementation, "arch": arch,
                                                 "op_kinds": op_kinds_for(
                                                     VERSIONS[implementation.kernel]),
                                                 "scenario": scenario, "init_world": init_world,
                                                 "spec": spec or implementation.name,
                                                 "xfails": dict(xfails or {})})
    # no explain phase: it re-runs a failure hundreds of times under a tracer to list the lines
    # only failing examples reach (over 90 s for one mutant), and the race diagram says more
    cls.TestCase.settings = settings(stateful_step_count=STEPS_PER_EXAMPLE,
                                     phases=[p for p in settings.default.phases
                                             if p is not Phase.explain])
    return cls
