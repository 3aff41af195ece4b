"""The deterministic simulated machine: tasks, the step, locks, RCU grace periods, IRQs and IPIs.

A task is a Python generator (a kernel code path) bound to a lane (``CPU0``, ``CPU1``, ... or
``RCU`` for callbacks).  Its ``pending`` effect is what it will do next; :meth:`Machine.step` runs
that one effect atomically and resumes the generator up to its next effect.  Which task steps next
is decided outside, by a schedule policy through the scheduler interface (:meth:`Machine.drive`,
:mod:`pgconform.sim.scheduler`) or one decision at a time (:meth:`Machine.step`,
:meth:`Machine.run_callback`), so the machine itself makes no choices and the same schedule always
produces the same trace.

RCU is consolidated RCU: a task is a reader while it is inside rcu_read_lock(), has interrupts
disabled, or holds a spinlock (preemption disabled).  ``call_rcu`` snapshots the readers active at
the call; the callback becomes *ready* once each of them has left that section, and running a ready
callback is a separate schedulable event, so schedules can delay it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from pgconform.sim.effects import (
    DownRead,
    DownReadTrylock,
    DownWrite,
    DownWriteTrylock,
    Effect,
    Lock,
    Trylock,
    effect_text,
    malformed,
)
from pgconform.sim.errors import ImplementationErrored, Violation
from pgconform.sim.policies.round_robin import RoundRobin
from pgconform.sim.scheduler import Scheduler
from pgconform.sim.sync import RcuHead, RwSemaphore, Spinlock

#: the effects that take a lock: where Machine.run_to_sync() stops
SYNC_EFFECTS = frozenset({Lock, Trylock, DownRead, DownWrite, DownReadTrylock, DownWriteTrylock})

DEFAULT_STEP_BOUND = 5_000


class Task:
    """One kernel code path running on a lane.  Plain slots: this object is on the hot path."""

    __slots__ = (
        "done",
        "fatal_signal",
        "gen",
        "held",
        "irq",
        "irq_seq",
        "label",
        "lane",
        "mm",
        "name",
        "origin",
        "pending",
        "rcu",
        "reader_seq",
        "result",
        "softirq",
        "spin",
        "steps",
        "wait",
    )

    def __init__(self, name: str, lane: str, gen, label: str, softirq: bool = False):
        self.name = name
        self.lane = lane
        self.gen = gen
        self.label = label
        self.pending: Effect | None = None
        self.done = False
        self.result = None
        self.rcu = 0          # rcu_read_lock() nesting
        self.irq = 0          # local_irq_save() nesting
        self.spin = 0         # spinlocks held (preemption disabled)
        self.reader_seq = 0   # bumped each time the task enters an RCU reader section
        self.irq_seq = 0      # bumped each time the task disables interrupts
        self.held: list = []  # [(lock, subclass)] in acquisition order
        self.wait = None      # snapshot a grace-period or IPI wait is waiting on
        self.steps = 0
        self.softirq = softirq
        self.mm = None        # the mm this CPU runs (mm_cpumask membership), for user context
        #: the step at which a known no-progress sent the task a fatal signal (None: none sent)
        self.fatal_signal = None
        #: for an RCU callback: the call path that queued it (its work is that code's, deferred)
        self.origin: tuple = ()

    def is_reader(self) -> bool:
        return bool(self.rcu or self.irq or self.spin)

    def atomic(self) -> bool:
        return bool(self.rcu or self.irq or self.spin or self.softirq)

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False)
class Callback:
    """A queued RCU callback: ``fn(*args)`` once the readers in ``snapshot`` have all left."""

    head: RcuHead
    fn: Callable
    args: tuple
    snapshot: list
    queued_by: str
    #: the call path of the call_rcu() (after the queuing task's own origin)
    origin: tuple = ()


def call_path(gen) -> tuple:
    """The chain of kernel functions a task is in, outermost first (CPython's ``gi_yieldfrom``)."""
    names = []
    while gen is not None:
        names.append(gen.gi_code.co_name)
        gen = gen.gi_yieldfrom
    return tuple(names)


class Machine:
    """The engine.  Owns tasks, callbacks, the lockdep graph and the trace; no page-table
    knowledge."""

    def __init__(self, step_bound: int = DEFAULT_STEP_BOUND, record_paths: bool = True,
                 finisher: Callable[[], Scheduler] = RoundRobin):
        self.tasks: list[Task] = []
        self.callbacks: list[Callback] = []
        self.trace: list[tuple] = []
        self.lock_order: dict[tuple, set] = {}
        self.step_bound = step_bound
        self.record_paths = record_paths
        self.ntasks = 0
        self.failed = False
        #: violations the implementation declares it commits (Implementation.known_violations):
        #: ``clause``, or ``clause@function`` (only when ``function`` is on the culprit's call path)
        self.tolerated: Mapping[str, str] = {}
        self.tolerated_hits: dict[str, int] = {}
        #: tolerated key -> clauses tolerated for the rest of the run once it was hit (the known
        #: bug's later symptoms: a lost PTE's rss count at exit)
        self.consequences: Mapping[str, tuple] = {}
        self.tolerating: set = set()
        #: the task whose code is running (helpers called from kernel code may need it)
        self.current: Task | None = None
        #: code objects of the implementation under test (None: treat every exception as its own)
        self.implementation_code: set | None = None
        #: makes the policy that finishes a run (:meth:`finish`): a fair one, so that an
        #: operation that does not end under it is livelocked or deadlocked
        self.finisher = finisher

    # ---------------------------------------------------------------- tasks

    def spawn(self, lane: str, gen, label: str, softirq: bool = False, origin: tuple = ()) -> Task:
        """Start ``gen`` on ``lane``: runs its code up to the first effect."""
        self.ntasks += 1
        t = Task(f"{lane}:{label}", lane, gen, label, softirq)
        t.origin = origin
        self.tasks.append(t)
        self.trace.append((t, (label,), None, "start"))
        try:
            self._advance(t, None)
        except Violation as v:
            self._fail(v, t)
        return t

    def _advance(self, t: Task, value) -> None:
        self.current = t
        try:
            eff = t.gen.send(value)
        except StopIteration as stop:
            t.done = True
            t.pending = None
            t.result = stop.value
            self._task_end(t)
            return
        except Violation as v:
            self._fail(v, t)
        except Exception as e:  # noqa: BLE001 - any exception of kernel code gets a verdict
            self._fail(self._exception_verdict(t, e), t)
        if not isinstance(eff, Effect):
            self._fail(self._errored(t, "impl.bad-yield", f"yielded {eff!r} "
                                     f"({type(eff).__name__}), which is not a simulator effect"), t)
        t.pending = eff
        try:  # zero-cost unless it raises: an effect built of wrong values breaks here first
            if eff.on_pending is not None:
                eff.on_pending(self, t)
            sleeps = eff.sleeps
        except Violation:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed effect (Lock("x")) gets a verdict
            self._fail(self._exception_verdict(t, e, eff), t)
        if sleeps and (t.rcu or t.irq or t.spin or t.softirq):
            self.violation("sched.sleep-in-atomic",
                           f"{t.name} may sleep in {eff} while in atomic context "
                           f"({self._atomic_why(t)})", t, None)

    @staticmethod
    def _atomic_why(t: Task) -> str:
        why = []
        if t.spin:
            why.append("holding " + ", ".join(repr(lk) for lk, _ in t.held
                                              if isinstance(lk, Spinlock)))
        if t.irq:
            why.append("interrupts disabled")
        if t.rcu:
            why.append("inside rcu_read_lock()")
        if t.softirq:
            why.append("in an RCU callback (softirq)")
        return "; ".join(why)

    def _task_end(self, t: Task) -> None:
        if t.held:
            self.violation("lock.held-at-exit", f"{t.name} ends still holding "
                           f"{', '.join(repr(lk) for lk, _ in t.held)}", t)
        if t.rcu:
            self.violation("rcu.held-at-exit", f"{t.name} ends inside {t.rcu} rcu_read_lock() "
                           "section(s): a missing pte_unmap()/rcu_read_unlock()", t)
        if t.irq:
            self.violation("irq.held-at-exit", f"{t.name} ends with interrupts disabled", t)

    def blocker(self, t: Task):
        """What ``t``'s pending effect waits for, or None if it can run now."""
        return t.pending.blocked(self, t)

    def runnable(self) -> list[Task]:
        return [t for t in self.tasks if not t.done and t.pending.blocked(self, t) is None]

    def active(self) -> list[Task]:
        return [t for t in self.tasks if not t.done]

    def step(self, t: Task) -> None:
        """Run ``t``'s pending effect (it must not be blocked) and resume ``t`` to its next
        effect."""
        eff = t.pending
        t.steps += 1
        if t.steps > self.step_bound:
            self._no_progress(t)
        path = call_path(t.gen) if self.record_paths else ()
        try:
            res = eff.execute(self, t)
        except Violation as v:
            self.trace.append((t, path, eff, "!"))
            self._fail(v, t)
        except Exception as e:  # noqa: BLE001 - any exception of kernel code gets a verdict
            # an effect built from the implementation's values, or its own Atomic function
            verdict = self._exception_verdict(t, e, eff)
            self.trace.append((t, path, eff, "!"))
            self._fail(verdict, t)
        self.trace.append((t, path, eff, res))
        try:
            self._advance(t, res)
        except Violation as v:
            self._fail(v, t)

    def run(self, t: Task, n: int) -> int:
        """Step ``t`` up to ``n`` times, stopping early when it blocks or finishes."""
        done = 0
        while done < n and not t.done and t.pending.blocked(self, t) is None:
            self.step(t)
            done += 1
        return done

    def run_to_sync(self, t: Task, k: int, limit: int) -> int:
        """Step ``t`` until its pending effect is the ``k``-th lock acquisition from now (not
        taken), stopping early when it blocks or finishes; at most ``limit`` steps.  Race windows
        in this protocol end where a lock is taken (a lockless check, then pml or ptl), so a
        preemption just there is worth more than one at a random step."""
        done = 0
        while done < limit and not t.done and t.pending.blocked(self, t) is None:
            if type(t.pending) in SYNC_EFFECTS:
                k -= 1
                if k <= 0:
                    break
            self.step(t)
            done += 1
        return done

    # ---------------------------------------------------------------- verdicts

    def violation(self, clause: str, message: str, t: Task | None = None, obj=None,
                  what: str | None = None):
        """Raise a violation of ``clause``, unless it is a known one (then count it).  ``what``
        names what the violation is about where an oracle can tell (the kind of PTE marker a
        freed table held), for known-violation keys ``clause[what]``."""
        if self.tolerated:  # a known violation of the implementation: count it
            key = self._tolerated_as(clause, t or self.current, what)
            if key is not None:
                self.tolerated_hits[key] = self.tolerated_hits.get(key, 0) + 1
                return
        raise Violation(clause, message, task=t, obj=obj)

    def _tolerated_as(self, clause: str, t: Task | None, what: str | None = None) -> str | None:
        """The known-violation key a violation of ``clause`` (about ``what``) by ``t`` matches, if
        any, the most precise first: ``clause[what]@function`` (a kernel function on the task's
        call path, or for an RCU callback on the path that queued it), ``clause@function``,
        ``clause[what]``, ``clause``; the last two also as consequences of a known violation that
        happened in the run (``tolerating``)."""
        tolerated = self.tolerated
        path = t.origin + call_path(t.gen) if t is not None else ()
        names = (f"{clause}[{what}]", clause) if what is not None else (clause,)
        key = next((k for name in names for k in (f"{name}@{fn}" for fn in path)
                    if k in tolerated), None)
        if key is None:
            key = next((name for name in names
                        if name in tolerated or name in self.tolerating), None)
            if key is None:
                return None
        self.tolerating.update(self.consequences.get(key, ()))
        return key

    def _no_progress(self, t: Task) -> None:
        """``t`` is past the step bound: sched.no-progress, unless that is a known violation where
        ``t`` is (``sched.no-progress@function``).  Then the hit is counted and the task is sent a
        fatal signal, as whoever waits on the hung process would kill it, so that the run goes on:
        the looping call must end at its next signal check (fatal_signal_pending(), as
        madvise_guard_install() restarting through userspace does) within another step bound,
        or the no-progress stands."""
        if t.fatal_signal is None and self.tolerated:
            key = self._tolerated_as("sched.no-progress", t)
            if key is not None:
                self.tolerated_hits[key] = self.tolerated_hits.get(key, 0) + 1
                t.fatal_signal = t.steps
                return
        if t.fatal_signal is not None and t.steps <= t.fatal_signal + self.step_bound:
            return
        killed = " (nor after a fatal signal)" if t.fatal_signal is not None else ""
        self._fail(Violation("sched.no-progress", f"{t.name} did not finish within "
                             f"{self.step_bound} effects{killed} (livelock or unbounded retry)",
                             task=t), t)

    def use_after_free(self, t: Task, page, what: str):
        self.violation("pt.use-after-free", f"{t.name}: {what} of {page!r}, which was freed "
                       "(a pointer that outlived its page)", t, page)

    def _raised_by_implementation(self, e: BaseException, eff=None) -> bool:
        """Whether ``e`` comes from the implementation under test: its traceback passes through an
        override, or the failing effect is the implementation's own (an Atomic of its function).
        An exception raised by the model alone is a bug of pgconform, not a verdict."""
        codes = self.implementation_code
        if codes is None:
            return True
        fn = getattr(eff, "fn", None)
        if fn is not None and getattr(fn, "__code__", None) in codes:
            return True
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
        return False

    def _yielded_by_implementation(self, t: Task | None) -> bool:
        """Whether the code that yielded ``t``'s pending effect (the innermost generator of its
        call chain) is the implementation's."""
        codes = self.implementation_code
        if codes is None:
            return True
        if t is None or t.gen.gi_frame is None:
            return False
        gen = t.gen
        while gen.gi_yieldfrom is not None and hasattr(gen.gi_yieldfrom, "gi_code"):
            gen = gen.gi_yieldfrom
        return gen.gi_code in codes

    def _exception_verdict(self, t: Task | None, e: Exception, eff=None) -> ImplementationErrored:
        """The verdict on an exception escaping kernel code: ``impl.bad-yield`` if the effect
        that raised was malformed (a field of the wrong type: ``Lock("x")``) and the
        implementation's code yielded it; ``impl.raised`` if the implementation raised it;
        ``impl.bad-value`` if the model raised it while an implementation is plugged in (a value
        it returned or stored that the kernel could not hold); re-raised as a bug of pgconform
        when the reference alone is running."""
        if eff is not None:
            bad = malformed(eff)
            if bad is not None and self._yielded_by_implementation(t):
                return self._errored(t, "impl.bad-yield", f"yielded {eff!r}, a malformed effect: "
                                     f"{bad} ({type(e).__name__}: {e})")
        where = f"{effect_text(eff)} raised " if eff is not None else ""
        if self._raised_by_implementation(e, eff):
            return self._errored(t, "impl.raised", f"{where}{type(e).__name__}: {e}")
        if not self.implementation_code:
            raise e
        tb = e.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        return self._errored(
            t, "impl.bad-value", f"the model raised {type(e).__name__}: {e} in {code.co_name} "
            f"({code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}), working on values the "
            "implementation returned or stored (if the implementation is right, this is a "
            "pgconform bug: please report it with the replay string)")

    def _errored(self, t: Task | None, clause: str, message: str) -> ImplementationErrored:
        if t is None:
            return ImplementationErrored(clause, message)
        path = " > ".join(call_path(t.gen)) if t.gen.gi_frame is not None else t.label
        return ImplementationErrored(clause, f"{t.name} in {path or t.label}: {message}", task=t)

    def _fail(self, v: Violation, t: Task | None):
        self.failed = True
        if v.machine is None:
            v.machine = self  # the diagram is rendered from it if the violation is printed
        raise v

    def check(self, fn: Callable[[], None]) -> None:
        """Run an oracle outside a step; a Violation it raises gets the diagram attached."""
        try:
            fn()
        except Violation as v:
            self._fail(v, None)
        except Exception as e:  # noqa: BLE001 - an oracle breaking on the implementation's values
            self._fail(self._exception_verdict(None, e), None)

    # ---------------------------------------------------------------- locks and lockdep

    def acquire(self, t: Task, lock, subclass: int, trylock: bool) -> None:
        if not lock.alive:
            self.violation("pt.ptlock-use-after-free", f"{t.name} takes {lock!r}, whose memory was "
                           "freed with its page table", t, lock)
        if lock.cls is not None and not trylock:
            self._lockdep(t, (lock.cls, subclass), lock)
        if isinstance(lock, RwSemaphore):
            lock.writer = t
        else:
            lock.owner = t
            if isinstance(lock, Spinlock):
                if not t.is_reader():
                    t.reader_seq += 1
                t.spin += 1
        t.held.append((lock, subclass))

    def acquire_read(self, t: Task, sem: RwSemaphore, lockdep: bool = True) -> None:
        if lockdep:
            self._lockdep(t, (sem.cls, 0), sem)
        sem.readers.append(t)
        t.held.append((sem, 0))

    def release(self, t: Task, lock) -> None:
        owner = lock.writer if isinstance(lock, RwSemaphore) else lock.owner
        if owner is not t:
            self.violation("lock.unlock-unheld", f"{t.name} unlocks {lock!r}, which "
                           f"{'is not held' if owner is None else f'is held by {owner.name}'}",
                           t, lock)
        if isinstance(lock, RwSemaphore):
            lock.writer = None
        else:
            lock.owner = None
            if isinstance(lock, Spinlock):
                t.spin -= 1
        self._drop_held(t, lock)

    def release_read(self, t: Task, sem: RwSemaphore) -> None:
        if t not in sem.readers:
            self.violation("lock.unlock-unheld", f"{t.name} up_read()s {sem!r}, which it does not "
                           "hold for read", t, sem)
        sem.readers.remove(t)
        self._drop_held(t, sem)

    @staticmethod
    def _drop_held(t: Task, lock) -> None:
        held = t.held
        for i in range(len(held) - 1, -1, -1):
            if held[i][0] is lock:
                del held[i]
                return

    def _lockdep(self, t: Task, key: tuple, lock) -> None:
        order = self.lock_order
        for other, sub in t.held:
            if other.cls is None:
                continue
            hkey = (other.cls, sub)
            if hkey == key:
                self.violation("lock.recursive-class",
                               f"{t.name} takes {lock!r} (class {key[0]}, subclass {key[1]}) while "
                               f"holding {other!r} of the same class and subclass: lockdep's "
                               "'possible recursive locking' (missing spin_lock_nested?)", t, lock)
            succ = order.get(hkey)
            if succ is None:
                succ = order[hkey] = set()
            if key not in succ:
                succ.add(key)
                if self._reaches(key, hkey):
                    self.violation("lock.order-inversion",
                                   f"{t.name} takes {lock!r} ({key[0]}/{key[1]}) while holding "
                                   f"{other!r} ({hkey[0]}/{hkey[1]}), but the opposite order was "
                                   "seen before: a possible circular locking dependency", t, lock)

    def _reaches(self, src: tuple, dst: tuple) -> bool:
        seen = {src}
        stack = [src]
        order = self.lock_order
        while stack:
            for nxt in order.get(stack.pop(), ()):
                if nxt == dst:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    # ---------------------------------------------------------------- RCU, IRQs

    def reader_snapshot(self, exclude: Task | None = None) -> list:
        return [(t, t.reader_seq) for t in self.tasks
                if t is not exclude and not t.done and (t.rcu or t.irq or t.spin)]

    def irq_snapshot(self, exclude: Task | None = None, mm=None) -> list:
        """The tasks with interrupts disabled (of those running ``mm``, if given)."""
        return [(t, t.irq_seq) for t in self.tasks if t is not exclude and not t.done and t.irq
                and (mm is None or t.mm is mm)]

    @staticmethod
    def still_waiting(snapshot: list, kind: str):
        """The tasks of ``snapshot`` still in the section they were in, or None if all have left."""
        if kind == "reader":
            left = [t for t, seq in snapshot
                    if not t.done and t.reader_seq == seq and (t.rcu or t.irq or t.spin)]
        else:
            left = [t for t, seq in snapshot if not t.done and t.irq_seq == seq and t.irq]
        return tuple(left) or None

    def call_rcu(self, t: Task, head: RcuHead, fn: Callable, args: tuple) -> None:
        if head.pending:
            self.violation("rcu.double-call_rcu",
                           f"{t.name} queues {head!r} with call_rcu() while it is still queued: "
                           "the callback list is corrupted and a callback is lost or run twice",
                           t, head)
        hook = getattr(head.owner, "on_call_rcu", None)
        if hook is not None:
            hook(self, t)
        head.pending = True
        self.callbacks.append(Callback(head, fn, args, self.reader_snapshot(), t.name,
                                       t.origin + call_path(t.gen)))

    def ready_callbacks(self) -> list[Callback]:
        ready = []
        for cb in self.callbacks:
            if self.still_waiting(cb.snapshot, "reader") is not None:
                continue  # window: a grace period delays an RCU callback (a free)
            ready.append(cb)
        return ready

    def run_callback(self, cb: Callback, budget: int | None = None) -> Task:
        """Invoke a ready callback on the RCU lane (softirq context) and run it while it can."""
        self.callbacks.remove(cb)
        cb.head.pending = False
        name = getattr(cb.fn, "__name__", "rcu_callback")
        t = self.spawn("RCU", cb.fn(*cb.args), name, softirq=True, origin=cb.origin)
        self.run(t, budget if budget is not None else self.step_bound)
        return t

    # ---------------------------------------------------------------- finishing a run

    def wait_for_graph(self) -> dict:
        """For each blocked task, the tasks it waits for (lock owners, readers, IRQ-off CPUs)."""
        graph = {}
        for t in self.active():
            what = t.pending.blocked(self, t)
            if what is None:
                continue
            if isinstance(what, tuple):
                graph[t] = list(what)
            elif isinstance(what, RwSemaphore):
                graph[t] = ([what.writer] if what.writer else []) + list(what.readers)
            else:
                graph[t] = [what.owner] if getattr(what, "owner", None) else []
        return graph

    def check_deadlock(self) -> None:
        """Raise a deadlock violation if tasks remain but none can run and no callback is ready."""
        if self.runnable() or not self.active():
            return
        if self.callbacks and self.ready_callbacks():
            return
        graph = self.wait_for_graph()
        cycle = _find_cycle(graph)
        waits = "; ".join(f"{t.name} waits in {t.pending} for "
                          f"{', '.join(o.name for o in ws) or '?'}"
                          for t, ws in graph.items())
        desc = (" -> ".join(x.name for x in cycle) + " (cycle)") if cycle else "no runnable task"
        self._fail(Violation("sched.deadlock", f"deadlock: {desc}. {waits}"), None)

    def drive(self, scheduler: Scheduler, budget: int | None = None) -> int:
        """Run what ``scheduler`` picks, one decision at a time, until it picks nothing or
        ``budget`` decisions were taken (None: no limit); the number taken."""
        pick, step, run_callback = scheduler.pick, self.step, self.run_callback
        limit = float("inf") if budget is None else budget
        taken = 0
        while taken < limit:
            nxt = pick(self)
            if nxt is None:
                break
            if nxt.__class__ is Task:
                step(nxt)
            else:
                run_callback(nxt)
            taken += 1
        return taken

    def finish(self) -> None:
        """Run every task to completion, then every RCU callback (rcu_barrier), under a policy
        of :attr:`finisher` (by default round-robin: fair)."""
        self.drive(self.finisher())


def trace_rows(trace) -> list[str]:
    """A simulated machine's trace as comparable text (lane, call path, effect, result)."""
    return [f"{t.lane} {'>'.join(path)} {effect_text(eff)} {res!r}" for t, path, eff, res in trace]


def _find_cycle(graph: dict) -> list:
    for start in graph:
        path, seen, node = [], set(), start
        while node in graph and node not in seen:
            seen.add(node)
            path.append(node)
            nxt = graph[node]
            if not nxt:
                break
            node = nxt[0]
        if node in seen:
            return path[path.index(node):] + [node]
    return []
