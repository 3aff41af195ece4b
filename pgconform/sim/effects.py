"""Effects: what a task does to shared state, one atomic step each.

A kernel function of the model is a generator that yields an effect whenever it touches shared
state (``value = yield Load(table, i)``).  The machine runs one effect at a time, so the
interleaving granularity is exactly the effects.  Each effect class says whether it can run now
(``blocked``: None, or the object it waits for) and what running it does (``execute``); the
oracles that must fire *at* an effect (use-after-free, double call_rcu, lock discipline) are
checked there.  Effects are frozen values: the trace keeps them as they were.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import attrs

from pgconform.sim.physmem import Page
from pgconform.sim.sync import RcuHead, RwSemaphore, SleepLock, Spinlock


class Effect:
    """Base: an effect never blocks and does not sleep unless it says so."""

    __slots__ = ()
    sleeps = False
    #: whether the trace shows what the effect returned (values read, trylock outcomes)
    shows_result = False
    #: whether another CPU acting right after this effect can change the outcome (a value read, a
    #: lock released, a section left): the points at which schedule policies preempt
    preempt_point = False
    #: a check run when a task reaches this effect (whether or not it can run yet): misuse that
    #: is a bug as soon as it is attempted (taking a lock one holds)
    on_pending = None

    def blocked(self, m, t):
        return None

    def execute(self, m, t):  # pragma: no cover - every effect overrides
        raise NotImplementedError

    def objects(self) -> tuple:
        """The shared objects this effect touches (for trimming diagrams)."""
        return ()


def _type_name(tp) -> str:
    args = typing.get_args(tp)
    if args:
        return " | ".join(_type_name(a) for a in args)
    return getattr(tp, "__name__", None) or str(tp)


def malformed(eff) -> str | None:
    """What is wrong with an effect one of whose fields holds a value of the wrong type for it
    (``Lock("x")``, ``Unlock(None)``), or None.  The cold path: asked only after an effect
    raised, to tell a malformed effect from a well-formed one breaking on bad state."""
    cls = type(eff)
    if not attrs.has(cls):
        return None
    try:
        attrs.resolve_types(cls)
    except Exception:  # noqa: BLE001 - a type the module cannot name: nothing to check against
        return None
    for f in attrs.fields(cls):
        tp = f.type
        if tp is None or tp is Any:
            continue
        value = getattr(eff, f.name)
        try:
            ok = isinstance(value, tp)
        except TypeError:  # a typing construct isinstance() cannot check
            continue
        if not ok:
            return (f"its {f.name} is {value!r} ({type(value).__name__}), not "
                    f"{_type_name(tp)}")
    return None


def effect_text(eff) -> str:
    """An effect as the trace shows it; a malformed effect, whose ``__str__`` breaks on its
    values, as its fields (``Lock(lock='x', subclass=0)``)."""
    try:
        return str(eff)
    except Exception:  # noqa: BLE001 - the cold path of a verdict on a malformed effect
        return repr(eff)


# --------------------------------------------------------------------------------------------
# memory


@attrs.frozen(slots=True)
class Load(Effect):
    """READ_ONCE of entry ``idx`` of a page (a PTE or PMD table)."""

    preempt_point = True

    shows_result = True

    page: Page
    idx: int

    def execute(self, m, t):
        page = self.page
        if page.freed:
            m.use_after_free(t, page, f"read of entry {self.idx}")
        return page.entries[self.idx]

    def objects(self):
        return (self.page,)

    def __str__(self):
        return f"READ {self.page!r}[{self.idx}]"


@attrs.frozen(slots=True)
class Store(Effect):
    """WRITE_ONCE of entry ``idx`` of a page; the page's ``check_store`` hook runs the oracles."""

    page: Page
    idx: int
    value: Any

    def execute(self, m, t):
        page = self.page
        if page.freed:
            m.use_after_free(t, page, f"write of entry {self.idx}")
        check = page.check_store
        if check is not None:
            check(m, t, page, self.idx, self.value)
        entries = page.entries
        old = entries[self.idx]
        entries[self.idx] = self.value
        return old  # for the trace (the diagram shows what a write replaced); callers ignore it

    def objects(self):
        return (self.page,)

    def __str__(self):
        return f"WRITE {self.page!r}[{self.idx}] = {self.value!r}"


# --------------------------------------------------------------------------------------------
# locks


@attrs.frozen(slots=True)
class Lock(Effect):
    """spin_lock / spin_lock_nested(subclass) / folio_lock (a SleepLock, which may sleep)."""

    lock: Spinlock | SleepLock
    subclass: int = 0

    @property
    def sleeps(self):
        return self.lock.sleeps

    def blocked(self, m, t):
        return None if self.lock.owner is None else self.lock

    def on_pending(self, m, t):
        if self.lock.owner is t:
            m.violation("lock.recursive", f"{t.name} takes {self.lock!r}, which it already holds "
                        "(self-deadlock)", t, self.lock)

    def execute(self, m, t):
        m.acquire(t, self.lock, self.subclass, trylock=False)
        return self.lock

    def objects(self):
        return (self.lock,)

    def __str__(self):
        fn = "folio_lock" if self.lock.sleeps else "spin_lock"
        if self.subclass:
            return f"{fn}_nested({self.lock!r}, {self.subclass})"
        return f"{fn}({self.lock!r})"


@attrs.frozen(slots=True)
class Trylock(Effect):
    """spin_trylock / folio_trylock: True and held, or False."""

    preempt_point = True

    shows_result = True

    lock: Spinlock | SleepLock

    def execute(self, m, t):
        if self.lock.owner is not None:
            return False
        m.acquire(t, self.lock, 0, trylock=True)
        return True

    def objects(self):
        return (self.lock,)

    def __str__(self):
        return f"trylock({self.lock!r})"


@attrs.frozen(slots=True)
class Unlock(Effect):
    """spin_unlock / folio_unlock."""

    preempt_point = True

    lock: Spinlock | SleepLock

    def execute(self, m, t):
        m.release(t, self.lock)

    def objects(self):
        return (self.lock,)

    def __str__(self):
        return f"{'folio_unlock' if self.lock.sleeps else 'spin_unlock'}({self.lock!r})"


@attrs.frozen(slots=True)
class SpinIsLocked(Effect):
    """spin_is_locked(): whether anyone holds ``lock`` (what assert_spin_locked() tests; it does not
    ask who).  Returns a bool; the caller decides what a False means."""

    preempt_point = True

    shows_result = True

    lock: Spinlock

    def execute(self, m, t):
        return self.lock.owner is not None

    def objects(self):
        return (self.lock,)

    def __str__(self):
        return f"spin_is_locked({self.lock!r})"


@attrs.frozen(slots=True)
class DownRead(Effect):
    """down_read (mmap_read_lock, i_mmap_lock_read): may sleep."""

    sem: RwSemaphore
    sleeps = True

    def blocked(self, m, t):
        return None if self.sem.writer is None else self.sem

    def on_pending(self, m, t):
        if self.sem.writer is t:
            m.violation("lock.recursive",
                        f"{t.name} read-locks {self.sem!r} while write-holding it", t, self.sem)

    def execute(self, m, t):
        m.acquire_read(t, self.sem)

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"down_read({self.sem!r})"


@attrs.frozen(slots=True)
class DownWrite(Effect):
    """down_write (mmap_write_lock, i_mmap_lock_write): may sleep."""

    sem: RwSemaphore
    sleeps = True

    def blocked(self, m, t):
        sem = self.sem
        return None if sem.writer is None and not sem.readers else sem

    def on_pending(self, m, t):
        sem = self.sem
        if sem.writer is t or t in sem.readers:
            m.violation("lock.recursive", f"{t.name} write-locks {sem!r} while holding it", t, sem)

    def execute(self, m, t):
        m.acquire(t, self.sem, 0, trylock=False)

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"down_write({self.sem!r})"


@attrs.frozen(slots=True)
class DownWriteTrylock(Effect):
    """down_write_trylock (mmap_write_trylock): True and held, or False."""

    preempt_point = True

    shows_result = True

    sem: RwSemaphore

    def execute(self, m, t):
        if self.sem.writer is not None or self.sem.readers:
            return False
        m.acquire(t, self.sem, 0, trylock=True)
        return True

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"down_write_trylock({self.sem!r})"


@attrs.frozen(slots=True)
class DownReadTrylock(Effect):
    """down_read_trylock (mmap_read_trylock): True and held, or False."""

    preempt_point = True

    shows_result = True

    sem: RwSemaphore

    def execute(self, m, t):
        if self.sem.writer is not None:
            return False
        m.acquire_read(t, self.sem, lockdep=False)
        return True

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"down_read_trylock({self.sem!r})"


@attrs.frozen(slots=True)
class UpRead(Effect):
    preempt_point = True
    sem: RwSemaphore

    def execute(self, m, t):
        m.release_read(t, self.sem)

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"up_read({self.sem!r})"


@attrs.frozen(slots=True)
class UpWrite(Effect):
    preempt_point = True
    sem: RwSemaphore

    def execute(self, m, t):
        m.release(t, self.sem)

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"up_write({self.sem!r})"


@attrs.frozen(slots=True)
class DowngradeWrite(Effect):
    """downgrade_write (mmap_write_downgrade): exclusive becomes shared, atomically."""

    preempt_point = True

    sem: RwSemaphore

    def execute(self, m, t):
        m.release(t, self.sem)
        m.acquire_read(t, self.sem, lockdep=False)

    def objects(self):
        return (self.sem,)

    def __str__(self):
        return f"downgrade_write({self.sem!r})"


# --------------------------------------------------------------------------------------------
# RCU, IRQs, IPIs


@attrs.frozen(slots=True)
class RcuReadLock(Effect):
    def execute(self, m, t):
        if not t.is_reader():
            t.reader_seq += 1
        t.rcu += 1

    def __str__(self):
        return "rcu_read_lock()"


@attrs.frozen(slots=True)
class RcuReadUnlock(Effect):
    preempt_point = True
    def execute(self, m, t):
        if t.rcu <= 0:
            m.violation("rcu.unbalanced", f"{t.name} calls rcu_read_unlock() outside any "
                        "rcu_read_lock() section (nesting would go negative)", t)
        t.rcu -= 1

    def __str__(self):
        return "rcu_read_unlock()"


@attrs.frozen(slots=True)
class IrqDisable(Effect):
    """local_irq_save: the CPU takes no interrupts (no IPI) and is an RCU reader (consolidated
    RCU)."""

    def execute(self, m, t):
        if not t.is_reader():
            t.reader_seq += 1
        if not t.irq:
            t.irq_seq += 1
        t.irq += 1

    def __str__(self):
        return "local_irq_save()"


@attrs.frozen(slots=True)
class IrqEnable(Effect):
    """local_irq_restore."""

    preempt_point = True

    def execute(self, m, t):
        if t.irq <= 0:
            m.violation("irq.unbalanced", f"{t.name} restores interrupts it never disabled", t)
        t.irq -= 1

    def __str__(self):
        return "local_irq_restore()"


@attrs.frozen(slots=True)
class CallRcu(Effect):
    """call_rcu(head, fn): ``fn(*args)`` (a generator) runs after every reader active now has
    left."""

    preempt_point = True

    head: RcuHead
    fn: Callable
    args: tuple = ()

    def execute(self, m, t):
        m.call_rcu(t, self.head, self.fn, self.args)

    def objects(self):
        return (self.head, self.head.owner)

    def __str__(self):
        return f"call_rcu({self.head!r}, {getattr(self.fn, '__name__', self.fn)})"


@attrs.frozen(slots=True)
class SynchronizeRcu(Effect):
    """synchronize_rcu(): sleeps until a full grace period has elapsed."""

    sleeps = True

    def blocked(self, m, t):
        if t.wait is None:
            t.wait = m.reader_snapshot(exclude=t)
        waiting = m.still_waiting(t.wait, "reader")
        if waiting is not None:
            return waiting  # window: synchronize_rcu waits for a reader
        return None

    def execute(self, m, t):
        t.wait = None

    def __str__(self):
        return "synchronize_rcu()"


@attrs.frozen(slots=True)
class IpiSync(Effect):
    """smp_call_function(empty, wait=1) as in tlb_remove_table_sync_one(): returns once every CPU
    that had interrupts disabled when it was sent has re-enabled them (and taken the IPI).  With
    ``mm``, only the CPUs in that mm's mm_cpumask are interrupted (a TLB-flush IPI): tasks running
    in the mm's context (``Task.mm``)."""

    mm: Any = None
    label: str = "tlb_remove_table_sync_one()  [IPI all CPUs, wait]"

    def blocked(self, m, t):
        if t.wait is None:
            t.wait = m.irq_snapshot(exclude=t, mm=self.mm)
        waiting = m.still_waiting(t.wait, "irq")
        if waiting is not None:
            return waiting  # window: an IPI waits for a CPU with interrupts off
        return None

    def on_pending(self, m, t):
        if t.irq:
            m.violation("irq.ipi-with-irqs-off", f"{t.name} waits for an IPI with its own "
                        "interrupts disabled (can deadlock against another CPU doing the same)", t)

    def execute(self, m, t):
        t.wait = None

    def __str__(self):
        return self.label


# --------------------------------------------------------------------------------------------
# model-level atomic actions


@attrs.frozen(slots=True)
class Atomic(Effect):
    """A model-level action done in one step: ``fn(m, t, *args)``.  Used for state that the model
    updates atomically (page-cache stores under xa_lock, counters, mmu_notifier calls).
    ``label`` is what the trace shows; ``sleeps`` marks functions that may sleep."""

    preempt_point = True

    shows_result = True

    label: str
    fn: Callable
    args: tuple = ()
    sleeps: bool = False
    touches: tuple = ()

    def execute(self, m, t):
        return self.fn(m, t, *self.args)

    def objects(self):
        return self.touches

    def __str__(self):
        return self.label
