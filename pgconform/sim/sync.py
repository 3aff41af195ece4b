"""Synchronisation objects of the simulated machine: spinlocks, rw-semaphores, sleeping bit locks
and ``rcu_head``s.  They are plain state; the effects in :mod:`pgconform.sim.effects` act on them.

``cls`` is the lockdep lock class: locks initialised at the same site share a class (every split
ptlock is one class, as ``ptlock_init()`` initialises them all), which is why nesting two of them
needs a subclass (``spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)``).
"""

from __future__ import annotations

import attrs


@attrs.define(slots=True, eq=False, repr=False)
class Spinlock:
    """A spinlock_t.  Holding one disables preemption, so its holder is an RCU reader.

    ``alive`` goes False when the memory holding the lock is freed (a page-table page whose ptlock
    is embedded, or the separately allocated ptlock with ALLOC_SPLIT_PTLOCKS): locking it then is a
    use-after-free.
    """

    name: str
    cls: str = "spinlock"
    owner: object = None
    alive: bool = True
    sleeps = False

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class SleepLock:
    """A sleeping exclusive lock (the folio lock bit): taking it may sleep."""

    name: str
    cls: str | None = None  # bit locks (the folio lock) are not tracked by lockdep
    owner: object = None
    alive: bool = True
    sleeps = True

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class RwSemaphore:
    """A struct rw_semaphore (mmap_lock, i_mmap_rwsem): sleeping, shared or exclusive."""

    name: str
    cls: str = "rwsem"
    writer: object = None
    readers: list = attrs.field(factory=list)
    alive: bool = True
    sleeps = True

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class RcuHead:
    """A struct rcu_head.  ``owner`` is the object whose storage it lives in (a page-table page).

    While ``pending`` (queued by call_rcu and not yet invoked) the storage must not be used for
    anything else: queueing it again is the kernel's debug-objects "double call_rcu" splat, and a
    list operation on the overlaid ``lru``/``pt_list`` corrupts the callback list.
    """

    owner: object
    pending: bool = False

    def __repr__(self) -> str:
        return f"rcu_head({self.owner!r})"
