"""Unit tests of the simulated machine (:mod:`pgconform.sim`), driven by hand-written generator
tasks.

Each task is a tiny kernel code path that yields effects; the tests step it by hand
(``m.step``/``m.run``/``m.finish``) and assert the clause id of the verdict the machine gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from pgconform.report.trace import render
from pgconform.sim.effects import (
    Atomic,
    CallRcu,
    DownRead,
    DownWrite,
    IpiSync,
    IrqDisable,
    IrqEnable,
    Lock,
    RcuReadLock,
    RcuReadUnlock,
    SynchronizeRcu,
    Trylock,
    Unlock,
    UpRead,
    UpWrite,
)
from pgconform.sim.errors import ImplementationErrored, Violation
from pgconform.sim.machine import Machine
from pgconform.sim.policies.pct import run_pct
from pgconform.sim.sync import RcuHead, RwSemaphore, SleepLock, Spinlock

# ------------------------------------------------------------------------------------------------
# tiny tasks


def locker(*locks, subclass=0):
    """Take ``locks`` in order (all with ``subclass``), then release them in reverse."""
    for lk in locks:
        yield Lock(lk, subclass)
    for lk in reversed(locks):
        yield Unlock(lk)


def nested(outer, inner, subclass):
    yield Lock(outer)
    yield Lock(inner, subclass)
    yield Unlock(inner)
    yield Unlock(outer)


def rcu_reader():
    yield RcuReadLock()
    yield RcuReadUnlock()


def irq_off_section():
    yield IrqDisable()
    yield IrqEnable()


def only(*effects):
    """A task that yields exactly ``effects``."""
    # not ``yield from effects``: the machine walks a task's gi_yieldfrom chain of generators
    for eff in effects:  # noqa: UP028
        yield eff


def _noop(m, t):
    return None


def callback(log, tag="cb"):
    """An RCU callback: records that it ran."""
    yield Atomic(f"{tag} runs", lambda m, t: log.append(tag))


def spin_forever():
    """A task that never ends: cpu_relax() forever."""
    while True:
        yield Atomic("cpu_relax()", _noop)


def step_n(m, t, n):
    for _ in range(n):
        m.step(t)


# ------------------------------------------------------------------------------------------------
# locks


def test_spinlock_blocks_second_taker_until_released():
    m = Machine()
    lk = Spinlock("L", cls="L")
    a = m.spawn("CPU0", locker(lk), "a")
    b = m.spawn("CPU1", locker(lk), "b")
    m.step(a)  # a takes L
    assert lk.owner is a
    assert m.blocker(b) is lk
    assert b not in m.runnable()
    assert m.run(b, 10) == 0  # b cannot take a step
    m.step(a)  # a releases L
    assert a.done and lk.owner is None
    assert m.blocker(b) is None
    assert m.run(b, 10) == 2
    assert b.done
    m.finish()


def test_spinlock_holder_is_atomic_and_an_rcu_reader():
    m = Machine()
    lk = Spinlock("L", cls="L")
    a = m.spawn("CPU0", locker(lk), "a")
    m.step(a)
    assert a.spin == 1 and a.is_reader() and a.atomic()
    m.step(a)
    assert a.spin == 0 and not a.is_reader()


def test_trylock_fails_on_held_lock_and_succeeds_on_free_one():
    m = Machine()
    lk = Spinlock("L", cls="L")
    results = []

    def trier():
        got = yield Trylock(lk)
        results.append(got)
        if got:
            yield Unlock(lk)

    a = m.spawn("CPU0", locker(lk), "a")
    m.step(a)
    b = m.spawn("CPU1", trier(), "b")
    m.run(b, 5)
    assert results == [False] and b.done
    m.finish()
    c = m.spawn("CPU1", trier(), "c")
    m.run(c, 5)
    assert results == [False, True] and c.done and lk.owner is None


def test_lockdep_same_class_nesting_with_subclass_is_fine():
    m = Machine()
    a, b = Spinlock("A", cls="ptlock"), Spinlock("B", cls="ptlock")
    t = m.spawn("CPU0", nested(a, b, 1), "t")
    m.finish()
    assert t.done and not t.held


def test_lockdep_order_inversion_without_deadlock():
    """A->B by one task, later B->A by another: no deadlock happens, lockdep still objects."""
    m = Machine()
    a, b = Spinlock("A", cls="A"), Spinlock("B", cls="B")
    t1 = m.spawn("CPU0", locker(a, b), "ab")
    m.run(t1, 10)
    assert t1.done
    t2 = m.spawn("CPU1", locker(b, a), "ba")
    m.step(t2)  # takes B
    with pytest.raises(Violation) as excinfo:
        m.step(t2)  # takes A while holding B
    assert excinfo.value.clause == "lock.order-inversion"
    assert excinfo.value.task is t2


def test_lockdep_order_inversion_through_a_chain():
    """A->B and B->C recorded; C->A closes the cycle."""
    m = Machine()
    a, b, c = (Spinlock(n, cls=n) for n in "ABC")
    m.finish()
    for i, (x, y) in enumerate(((a, b), (b, c))):
        m.spawn("CPU0", locker(x, y), f"t{i}")
        m.finish()
    t = m.spawn("CPU1", locker(c, a), "ca")
    m.step(t)
    with pytest.raises(Violation) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "lock.order-inversion"


def test_rwsem_readers_share_and_writer_waits():
    m = Machine()
    sem = RwSemaphore("S", cls="S")
    r1 = m.spawn("CPU0", only(DownRead(sem), UpRead(sem)), "r1")
    r2 = m.spawn("CPU1", only(DownRead(sem), UpRead(sem)), "r2")
    w = m.spawn("CPU2", only(DownWrite(sem), UpWrite(sem)), "w")
    m.step(r1)
    m.step(r2)
    assert sem.readers == [r1, r2]
    assert m.blocker(w) is sem
    m.step(r1)
    assert m.blocker(w) is sem
    m.step(r2)
    assert m.blocker(w) is None
    m.finish()


def test_unlock_of_lock_held_by_another_task():
    m = Machine()
    lk = Spinlock("L", cls="L")
    a = m.spawn("CPU0", locker(lk), "a")
    m.step(a)
    b = m.spawn("CPU1", only(Unlock(lk)), "b")
    with pytest.raises(Violation) as excinfo:
        m.step(b)
    assert excinfo.value.clause == "lock.unlock-unheld"
    assert "held by CPU0:a" in excinfo.value.message


# ------------------------------------------------------------------------------------------------
# one task misusing a primitive: the step that reaches the misuse raises the verdict


def _objects():
    """The objects the one-task cases name, fresh for each case."""
    return {"L": Spinlock("L", cls="L"), "F": SleepLock("F"), "S": RwSemaphore("S", cls="S"),
            "A": Spinlock("A", cls="ptlock"), "B": Spinlock("B", cls="ptlock"),
            "head": RcuHead("obj")}


class OneTask(NamedTuple):
    """A task yielding ``effects(objects)``: after ``steps`` steps (and ``before(objects)``
    holding), its next step raises ``error`` of ``clause`` about the task, and about
    ``objects[obj]`` if named, its message containing ``message`` if given."""

    effects: Callable[[dict], tuple]
    clause: str
    steps: int = 0
    obj: str | None = None
    message: str | None = None
    error: type[Violation] = Violation
    before: Callable[[dict], bool] | None = None


_ENTER_ATOMIC = {
    "spinlock": lambda o: Lock(o["L"]),
    "rcu_read_lock": lambda o: RcuReadLock(),
    "irqs-off": lambda o: IrqDisable(),
}
_SLEEPERS = {
    "down_read": lambda o: DownRead(o["S"]),
    "folio_lock": lambda o: Lock(o["F"]),
    "synchronize_rcu": lambda o: SynchronizeRcu(),
}


def _non_effect_yield(o):
    return (Atomic("step", _noop), 42)


ONE_TASK = {
    # lockdep
    "same-class-nesting-without-subclass": OneTask(
        lambda o: (Lock(o["A"]), Lock(o["B"], 0), Unlock(o["B"]), Unlock(o["A"])),
        "lock.recursive-class", steps=1, obj="B"),
    # the misuse is reported as soon as the task reaches the effect
    "recursive-self-lock": OneTask(lambda o: (Lock(o["L"]), Lock(o["L"])), "lock.recursive",
                                   obj="L"),
    "recursive-read-after-write-of-rwsem": OneTask(
        lambda o: (DownWrite(o["S"]), DownRead(o["S"])), "lock.recursive"),
    "unlock-of-unheld-lock": OneTask(lambda o: (Unlock(o["L"]),), "lock.unlock-unheld"),
    "up_read-of-unheld-rwsem": OneTask(lambda o: (UpRead(o["S"]),), "lock.unlock-unheld"),
    # state at task exit
    "ends-inside-spinlock": OneTask(lambda o: (Lock(o["L"]),), "lock.held-at-exit"),
    "ends-inside-sleeplock": OneTask(lambda o: (Lock(o["F"]),), "lock.held-at-exit"),
    "ends-inside-rwsem": OneTask(lambda o: (DownRead(o["S"]),), "lock.held-at-exit"),
    "ends-inside-rcu": OneTask(lambda o: (RcuReadLock(),), "rcu.held-at-exit"),
    "ends-inside-irqs-off": OneTask(lambda o: (IrqDisable(),), "irq.held-at-exit"),
    # unbalanced sections
    "rcu_read_unlock-without-lock": OneTask(lambda o: (RcuReadUnlock(),), "rcu.unbalanced"),
    "irq-restore-without-save": OneTask(lambda o: (IrqEnable(),), "irq.unbalanced"),
    # sleeping in atomic context (entering the atomic section makes the sleeping effect pending)
    **{f"sleep-in-atomic-{enter}-{sleep}": OneTask(
        lambda o, e=e, z=z: (e(o), z(o)), "sched.sleep-in-atomic")
       for enter, e in _ENTER_ATOMIC.items() for sleep, z in _SLEEPERS.items()},
    # RCU, IPIs
    "double-call_rcu": OneTask(
        lambda o: (CallRcu(o["head"], callback, ([],)), CallRcu(o["head"], callback, ([],))),
        "rcu.double-call_rcu", steps=1, obj="head", before=lambda o: o["head"].pending),
    "ipi-sync-with-own-irqs-off": OneTask(lambda o: (IrqDisable(), IpiSync(), IrqEnable()),
                                          "irq.ipi-with-irqs-off"),
    # the implementation as code
    "non-effect-yield": OneTask(_non_effect_yield, "impl.bad-yield", message="42",
                                error=ImplementationErrored),
}


@pytest.mark.parametrize("case", list(ONE_TASK.values()), ids=list(ONE_TASK))
def test_one_task_misuse(case):
    m = Machine()
    objects = _objects()
    t = m.spawn("CPU0", only(*case.effects(objects)), "t")
    for _ in range(case.steps):
        m.step(t)
    if case.before is not None:
        assert case.before(objects)
    with pytest.raises(case.error) as excinfo:
        m.step(t)
    v = excinfo.value
    assert v.clause == case.clause, str(v)
    assert v.task is t
    if case.obj is not None:
        assert v.obj is objects[case.obj]
    if case.message is not None:
        assert case.message in v.message


# ------------------------------------------------------------------------------------------------
# balanced sections


def test_nested_rcu_sections_balance():
    m = Machine()
    t = m.spawn("CPU0", only(RcuReadLock(), RcuReadLock(), RcuReadUnlock(), RcuReadUnlock()), "t")
    m.finish()
    assert t.done and t.rcu == 0


# ------------------------------------------------------------------------------------------------
# sleeping in atomic context


def test_sleep_outside_atomic_is_fine():
    m = Machine()
    sem = RwSemaphore("S", cls="S")
    t = m.spawn("CPU0", only(RcuReadLock(), RcuReadUnlock(), DownRead(sem), UpRead(sem),
                             SynchronizeRcu()), "t")
    m.finish()
    assert t.done


def test_sleep_in_rcu_callback():
    m = Machine()
    sem = RwSemaphore("S", cls="S")

    def sleepy_cb():
        yield DownRead(sem)
        yield UpRead(sem)

    t = m.spawn("CPU0", only(CallRcu(RcuHead("obj"), sleepy_cb)), "t")
    m.step(t)
    with pytest.raises(Violation) as excinfo:
        m.run_callback(m.ready_callbacks()[0])
    assert excinfo.value.clause == "sched.sleep-in-atomic"
    assert "softirq" in excinfo.value.message


# ------------------------------------------------------------------------------------------------
# RCU


def test_call_rcu_waits_for_preexisting_reader_only():
    m = Machine()
    log: list = []
    r = m.spawn("CPU0", rcu_reader(), "reader")
    m.step(r)  # reader enters its section
    w = m.spawn("CPU1", only(CallRcu(RcuHead("obj"), callback, (log,))), "writer")
    m.step(w)
    assert w.done
    assert m.ready_callbacks() == []
    late = m.spawn("CPU2", rcu_reader(), "late")
    m.step(late)  # a reader that started after the call
    assert m.ready_callbacks() == []
    m.step(r)  # the pre-existing reader leaves
    ready = m.ready_callbacks()
    assert len(ready) == 1, "a reader that started after call_rcu must not delay the callback"
    assert late.rcu == 1
    cb_task = m.run_callback(ready[0])
    assert cb_task.done and cb_task.lane == "RCU" and log == ["cb"]
    assert m.callbacks == []
    m.finish()


def test_call_rcu_reader_that_reenters_does_not_delay():
    """A reader that leaves and enters a new section is not the reader the callback waits for."""
    m = Machine()
    log: list = []
    r = m.spawn("CPU0", only(RcuReadLock(), RcuReadUnlock(), RcuReadLock(), RcuReadUnlock()), "r")
    m.step(r)
    m.spawn("CPU1", only(CallRcu(RcuHead("obj"), callback, (log,))), "w")
    m.step(m.tasks[-1])
    step_n(m, r, 2)  # leaves, enters again
    assert r.rcu == 1
    assert len(m.ready_callbacks()) == 1


@pytest.mark.parametrize(
    "section",
    [irq_off_section, lambda: locker(Spinlock("L", cls="L"))],
    ids=["irqs-off", "spinlock"],
)
def test_irq_off_and_spinlock_sections_are_rcu_readers(section):
    m = Machine()
    log: list = []
    r = m.spawn("CPU0", section(), "reader")
    m.step(r)
    w = m.spawn("CPU1", only(CallRcu(RcuHead("obj"), callback, (log,))), "writer")
    m.step(w)
    assert m.ready_callbacks() == []
    m.step(r)
    assert len(m.ready_callbacks()) == 1
    m.finish()
    assert log == ["cb"]


def test_call_rcu_again_after_callback_ran_is_fine():
    m = Machine()
    head = RcuHead("obj")
    log: list = []
    t = m.spawn("CPU0", only(CallRcu(head, callback, (log,)), CallRcu(head, callback, (log,))), "t")
    m.step(t)
    m.run_callback(m.ready_callbacks()[0])
    assert not head.pending
    m.step(t)
    m.finish()
    assert log == ["cb", "cb"]


def test_call_rcu_hook_of_owner_runs_at_the_call():
    calls = []

    class Owner:
        def on_call_rcu(self, m, t):
            calls.append(t.name)

    m = Machine()
    t = m.spawn("CPU0", only(CallRcu(RcuHead(Owner()), callback, ([],))), "t")
    m.step(t)
    assert calls == ["CPU0:t"]


def test_synchronize_rcu_waits_for_preexisting_reader():
    m = Machine()
    r = m.spawn("CPU0", rcu_reader(), "reader")
    m.step(r)
    s = m.spawn("CPU1", only(SynchronizeRcu()), "sync")
    assert m.blocker(s) == (r,)
    assert m.run(s, 5) == 0
    late = m.spawn("CPU2", rcu_reader(), "late")
    m.step(late)
    m.step(r)  # the pre-existing reader leaves; the late one is still inside
    assert m.blocker(s) is None
    m.step(s)
    assert s.done
    m.finish()


def test_synchronize_rcu_without_readers_does_not_block():
    m = Machine()
    s = m.spawn("CPU0", only(SynchronizeRcu()), "sync")
    assert m.run(s, 5) == 1 and s.done


# ------------------------------------------------------------------------------------------------
# IRQs and IPIs


def test_ipi_sync_waits_for_irqs_off_cpu():
    m = Machine()
    off = m.spawn("CPU0", irq_off_section(), "irqs-off")
    m.step(off)
    ipi = m.spawn("CPU1", only(IpiSync()), "ipi")
    assert m.blocker(ipi) == (off,)
    assert m.run(ipi, 5) == 0
    m.step(off)  # re-enables interrupts, takes the IPI
    assert m.blocker(ipi) is None
    m.step(ipi)
    assert ipi.done


def test_ipi_sync_does_not_wait_for_rcu_reader():
    m = Machine()
    r = m.spawn("CPU0", rcu_reader(), "reader")
    m.step(r)
    ipi = m.spawn("CPU1", only(IpiSync()), "ipi")
    assert m.run(ipi, 5) == 1 and ipi.done
    m.finish()


# ------------------------------------------------------------------------------------------------
# deadlock, progress


def _abba(m):
    a, b = Spinlock("A", cls="A"), Spinlock("B", cls="B")
    t1 = m.spawn("CPU0", locker(a, b), "ab")
    t2 = m.spawn("CPU1", locker(b, a), "ba")
    return t1, t2


def test_abba_deadlock_check_deadlock():
    m = Machine()
    t1, t2 = _abba(m)
    m.step(t1)  # t1 holds A
    m.step(t2)  # t2 holds B
    assert m.runnable() == []
    assert m.wait_for_graph() == {t1: [t2], t2: [t1]}
    with pytest.raises(Violation) as excinfo:
        m.check_deadlock()
    v = excinfo.value
    assert v.clause == "sched.deadlock"
    assert "CPU0:ab -> CPU1:ba -> CPU0:ab (cycle)" in v.message
    assert "CPU0:ab waits in spin_lock(B) for CPU1:ba" in v.message
    assert "CPU0" in v.diagram and "CPU1" in v.diagram


def test_abba_deadlock_finish():
    m = Machine()
    _abba(m)
    with pytest.raises(Violation) as excinfo:
        m.finish()  # round-robin: each takes its first lock, then both wait
    assert excinfo.value.clause == "sched.deadlock"
    assert "(cycle)" in excinfo.value.message


def test_check_deadlock_quiet_while_something_can_run():
    m = Machine()
    a, b = Spinlock("A", cls="A"), Spinlock("B", cls="B")
    t1 = m.spawn("CPU0", locker(a, b), "ab1")
    t2 = m.spawn("CPU1", locker(a, b), "ab2")
    m.step(t1)
    assert m.blocker(t2) is a
    m.check_deadlock()  # t2 waits, but t1 can run
    m.finish()
    m.check_deadlock()  # nothing left
    assert t1.done and t2.done


def test_no_progress():
    m = Machine(step_bound=20)
    t = m.spawn("CPU0", spin_forever(), "spinner")
    with pytest.raises(Violation) as excinfo:
        m.run(t, 100)
    assert excinfo.value.clause == "sched.no-progress"
    assert t.steps == 21


def test_no_progress_under_finish():
    m = Machine(step_bound=10)
    m.spawn("CPU0", spin_forever(), "spinner")
    with pytest.raises(Violation) as excinfo:
        m.finish()
    assert excinfo.value.clause == "sched.no-progress"


# ------------------------------------------------------------------------------------------------
# the implementation as code


def _impl_raises():
    yield Atomic("step", _noop)
    raise ValueError("boom")


def _model_raises():
    yield Atomic("step", _noop)
    raise KeyError("model bug")


def _impl_calls_model():
    yield from _model_raises()


def test_exception_in_implementation_is_errored():
    m = Machine()
    m.implementation_code = {_impl_raises.__code__}
    t = m.spawn("CPU0", _impl_raises(), "impl")
    with pytest.raises(ImplementationErrored) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "impl.raised"
    assert "ValueError: boom" in excinfo.value.message
    assert m.failed


def test_exception_below_implementation_frame_is_errored():
    """The model raising under an implementation frame: the implementation misused it."""
    m = Machine()
    m.implementation_code = {_impl_calls_model.__code__}
    t = m.spawn("CPU0", _impl_calls_model(), "impl")
    with pytest.raises(ImplementationErrored) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "impl.raised"


def test_exception_from_model_code_under_the_reference_propagates():
    """Only the reference running (no implementation code): the model's exception is a bug of
    pgconform and must surface as such, not as a verdict."""
    m = Machine()
    m.implementation_code = set()
    t = m.spawn("CPU0", _model_raises(), "model")
    with pytest.raises(KeyError) as excinfo:
        m.step(t)
    assert not isinstance(excinfo.value, Violation)
    assert excinfo.value.args == ("model bug",)


def test_exception_from_model_code_with_an_implementation_plugged_is_bad_value():
    """An implementation plugged in: the model breaking on its values is a verdict on it
    (errored, saying where the model broke), never a crash of the harness."""
    m = Machine()
    m.implementation_code = {_impl_raises.__code__}
    t = m.spawn("CPU0", _model_raises(), "model")
    with pytest.raises(ImplementationErrored) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "impl.bad-value"
    assert "KeyError" in excinfo.value.message and "_model_raises" in excinfo.value.message
    assert excinfo.value.outcome == "errored"


def test_without_implementation_code_every_exception_is_errored():
    m = Machine()
    assert m.implementation_code is None
    t = m.spawn("CPU0", _model_raises(), "model")
    with pytest.raises(ImplementationErrored) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "impl.raised"


def test_non_effect_first_yield_fails_at_spawn():
    def bad():
        yield None

    m = Machine()
    with pytest.raises(ImplementationErrored) as excinfo:
        m.spawn("CPU0", bad(), "bad")
    assert excinfo.value.clause == "impl.bad-yield"


# ------------------------------------------------------------------------------------------------
# determinism, PCT, diagrams


def _racy_world(m):
    """Two CPUs sharing a lock and an RCU callback: enough for the trace to depend on order."""
    lk = Spinlock("L", cls="L")
    head = RcuHead("obj")
    log: list = []

    def cpu0():
        yield RcuReadLock()
        yield Lock(lk)
        yield Atomic("x = 1", _noop)
        yield Unlock(lk)
        yield RcuReadUnlock()

    def cpu1():
        yield Lock(lk)
        yield Atomic("x = 2", _noop)
        yield Unlock(lk)
        yield CallRcu(head, callback, (log,))

    return m.spawn("CPU0", cpu0(), "cpu0"), m.spawn("CPU1", cpu1(), "cpu1")


SCHEDULE = ("CPU0", "CPU1", "CPU0", "CPU0", "CPU1", "CPU1", "CPU1", "CPU1", "CPU0", "CPU0")


def _run_schedule(schedule):
    m = Machine()
    tasks = {t.lane: t for t in _racy_world(m)}
    for lane in schedule:
        t = tasks[lane]
        if not t.done and m.blocker(t) is None:
            m.step(t)
    m.finish()
    return m


def test_same_schedule_same_trace():
    first = render(_run_schedule(SCHEDULE))
    second = render(_run_schedule(SCHEDULE))
    assert first == second
    assert "RCU" in first and "cb runs" in first


def test_different_schedule_different_trace():
    other = ("CPU1",) * 4 + ("CPU0",) * 5
    assert render(_run_schedule(SCHEDULE)) != render(_run_schedule(other))


def _pct_world(m, log):
    def worker(name):
        for i in range(3):
            yield Atomic(f"{name}{i}", lambda m, t, s=f"{name}{i}": log.append(s))

    m.spawn("CPU0", worker("a"), "a")
    m.spawn("CPU1", worker("b"), "b")


def _pct_run(priorities, change_points):
    m = Machine()
    log: list = []
    _pct_world(m, log)
    steps = run_pct(m, priorities, change_points, budget=100)
    return m, log, steps


def test_pct_runs_highest_priority_first():
    m, log, steps = _pct_run({"CPU0": 2, "CPU1": 1}, ())
    assert log == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert steps == 6
    _, log, _ = _pct_run({"CPU0": 1, "CPU1": 2}, ())
    assert log == ["b0", "b1", "b2", "a0", "a1", "a2"]


def test_pct_change_point_demotes_the_lane():
    m, log, steps = _pct_run({"CPU0": 2, "CPU1": 1}, (1,))
    # preemption point 1 is CPU0's second effect: CPU0 drops below CPU1 there
    assert log == ["a0", "a1", "b0", "b1", "b2", "a2"]
    assert steps == 6
    assert all(t.done for t in m.tasks)


def test_pct_two_change_points():
    _, log, _ = _pct_run({"CPU0": 2, "CPU1": 1}, (0, 2))
    # point 0 (a0) demotes CPU0; point 2 (b1) demotes CPU1 below it
    assert log == ["a0", "b0", "b1", "a1", "a2", "b2"]


def test_pct_is_deterministic():
    runs = [_pct_run({"CPU0": 1, "CPU1": 3, "RCU": 2}, (1, 3)) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    assert render(runs[0][0]) == render(runs[1][0])


def test_pct_budget_and_rcu_lane():
    m = Machine()
    log: list = []
    r = m.spawn("CPU0", rcu_reader(), "reader")
    m.step(r)
    m.spawn("CPU1", only(CallRcu(RcuHead("obj"), callback, (log,)), Atomic("after", _noop)), "w")
    # RCU highest, but its callback is not ready until the reader leaves
    steps = run_pct(m, {"RCU": 3, "CPU1": 2, "CPU0": 1}, (), budget=1)
    assert steps == 1 and log == []
    run_pct(m, {"RCU": 3, "CPU1": 2, "CPU0": 1}, (), budget=100)
    assert log == ["cb"] and not m.callbacks


def test_violation_diagram_marks_the_violating_effect():
    m = Machine()
    lk = Spinlock("L", cls="L")
    a = m.spawn("CPU0", locker(lk), "holder")
    m.step(a)
    b = m.spawn("CPU1", only(Unlock(lk)), "intruder")
    with pytest.raises(Violation) as excinfo:
        m.step(b)
    v = excinfo.value
    assert v.clause == "lock.unlock-unheld"
    lines = v.diagram.splitlines()
    assert lines[0].split() == ["CPU0", "|", "CPU1"]
    assert "-- holder --" in v.diagram and "-- intruder --" in v.diagram
    marked = [ln for ln in lines if "***" in ln]
    assert len(marked) == 1 and "*** spin_unlock(L)" in marked[0]
    # the marked effect is in the CPU1 column
    assert marked[0].index("***") > lines[0].index("CPU1") - 1
    assert lines[-1].startswith("violation: [lock.unlock-unheld]")
    assert str(v).startswith("[lock.unlock-unheld]") and v.diagram in str(v)


def test_violation_diagram_exact_text():
    m = Machine()
    lk = Spinlock("L", cls="L")
    a = m.spawn("CPU0", locker(lk), "holder")
    m.step(a)
    b = m.spawn("CPU1", only(Unlock(lk)), "intruder")
    with pytest.raises(Violation) as excinfo:
        m.step(b)
    expected = (
        "     CPU0                                         | CPU1\n"
        "--------------------------------------------------------\n"
        "   1 -- holder --                                 |\n"
        "   2 locker                                       |\n"
        "     spin_lock(L)                                 |\n"
        "   3                                              | -- intruder --\n"
        "   4                                              | only\n"
        "                                                  | *** spin_unlock(L)\n"
        "\n"
        "violation: [lock.unlock-unheld] CPU1:intruder unlocks L, which is held by CPU0:holder"
    )
    assert excinfo.value.diagram == expected


def test_diagram_rows_show_results_of_reads():
    m = Machine()
    lk = Spinlock("L", cls="L")
    m.spawn("CPU0", only(Trylock(lk), Unlock(lk)), "t")
    m.finish()
    assert "trylock(L) -> True" in render(m)


# ------------------------------------------------------------------------------------------------
# known gaps of the engine (reported; these flip to XPASS, and so fail, once pgconform is fixed)


def test_violation_raised_while_blocked_has_diagram():
    m = Machine()
    lk = Spinlock("L", cls="L")
    t = m.spawn("CPU0", only(Lock(lk), Lock(lk)), "t")
    # the misuse is reported as soon as the task reaches the effect
    with pytest.raises(Violation) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "lock.recursive"
    assert m.failed and "CPU0" in excinfo.value.diagram


def test_no_progress_has_diagram():
    m = Machine(step_bound=5)
    t = m.spawn("CPU0", spin_forever(), "spinner")
    with pytest.raises(Violation) as excinfo:
        m.run(t, 100)
    assert m.failed and "cpu_relax()" in excinfo.value.diagram


def _impl_atomic_fn(m, t):
    raise ValueError("raised inside an effect")


def _impl_yields_raising_atomic():
    yield Atomic("impl action", _impl_atomic_fn)


def test_exception_in_effect_of_implementation_is_errored():
    m = Machine()
    m.implementation_code = {_impl_yields_raising_atomic.__code__, _impl_atomic_fn.__code__}
    t = m.spawn("CPU0", _impl_yields_raising_atomic(), "impl")
    with pytest.raises(ImplementationErrored) as excinfo:
        m.step(t)
    assert excinfo.value.clause == "impl.raised"
