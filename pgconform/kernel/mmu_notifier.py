"""mmu_notifier invalidate ranges (include/linux/mmu_notifier.h, mm/mmu_notifier.c; Linux 6.6).

A range start may sleep (blockable notifiers), so it is never called under a spinlock.  The mm keeps
the ranges in progress: a secondary MMU must not use translations in them, and the PMD oracle
requires one around every clear of a PMD that points at a page table.

An mm with secondary MMUs (``mm.notifier_subscriptions``, see :mod:`pgconform.kernel.secondary_mmu`)
also runs the interval-tree part of mm/mmu_notifier.c: the start makes the mm's invalidate_seq odd
and calls each overlapping subscriber's ``invalidate`` op (which may sleep on the driver's lock);
the end of the last active range makes the sequence even again, which wakes
mmu_interval_read_begin().  Without subscribers a start or end stays one step
(mm_has_notifiers() is false)."""

from __future__ import annotations

import attrs

from pgconform.sim.effects import Atomic


@attrs.define(slots=True, eq=False, repr=False)
class MmuNotifierSubscriptions:
    """struct mmu_notifier_subscriptions (mm/mmu_notifier.c, 6.6), interval-tree part only.

    ``invalidate_seq`` is odd while an invalidation overlapping some subscriber is in progress;
    ``active_invalidate_ranges`` counts the ranges between start and end; ``subs`` are the
    interval subscribers (struct mmu_interval_notifier), each with ``start``, ``end``,
    ``invalidate_seq`` and ``invalidate`` (the ops->invalidate generator)."""

    mm: object
    invalidate_seq: int = 2
    active_invalidate_ranges: int = 0
    subs: list = attrs.field(factory=list)

    def __repr__(self) -> str:
        return f"notifier_subscriptions({self.mm!r})"

    def is_invalidating(self) -> bool:
        """mn_itree_is_invalidating()"""
        return bool(self.invalidate_seq & 1)


def _start(m, t, mm, start, end):
    mm.notifier_ranges.append((start, end))


def _end(m, t, mm, start, end):
    mm.notifier_ranges.remove((start, end))


def _itree_inv_start(m, t, mm, subs, start, end):
    """mn_itree_inv_start_range(): one more active range; the sequence goes odd if the range hits a
    subscriber.  Returns the hit subscribers and the sequence they are given (cur_seq)."""
    mm.notifier_ranges.append((start, end))
    subs.active_invalidate_ranges += 1
    hit = [s for s in subs.subs if s.start < end and start < s.end]
    if hit:
        subs.invalidate_seq |= 1
    return hit, subs.invalidate_seq


def _itree_inv_end(m, t, mm, subs, start, end):
    """mn_itree_inv_end(): the last active range ending closes the invalidation (even sequence),
    which is what mmu_interval_read_begin() waits for (wake_up_all(&subscriptions->wq))."""
    mm.notifier_ranges.remove((start, end))
    subs.active_invalidate_ranges -= 1
    if subs.active_invalidate_ranges == 0 and subs.is_invalidating():
        subs.invalidate_seq += 1


def mmu_notifier_invalidate_range_start(k, mm, start, end):
    """mm/mmu_notifier.c: __mmu_notifier_invalidate_range_start() (6.6): mn_itree_invalidate() calls
    ops->invalidate(interval_sub, range, cur_seq) of every subscriber overlapping [start, end)."""
    subs = mm.notifier_subscriptions
    label = f"mmu_notifier_invalidate_range_start({mm!r}, {start}, {end})"
    if subs is None:
        yield Atomic(label, _start, (mm, start, end), sleeps=True, touches=(mm,))
        return
    hit, cur_seq = yield Atomic(label, _itree_inv_start, (mm, subs, start, end), sleeps=True,
                                touches=(mm, subs))
    for sub in hit:
        yield from sub.invalidate(k, sub, start, end, cur_seq)


def mmu_notifier_invalidate_range_end(k, mm, start, end):
    """mm/mmu_notifier.c: __mmu_notifier_invalidate_range_end() (6.6) -> mn_itree_inv_end()."""
    subs = mm.notifier_subscriptions
    label = f"mmu_notifier_invalidate_range_end({mm!r}, {start}, {end})"
    if subs is None:
        yield Atomic(label, _end, (mm, start, end), sleeps=True, touches=(mm,))
        return
    yield Atomic(label, _itree_inv_end, (mm, subs, start, end), sleeps=True, touches=(mm, subs))


def mmu_notifier_release(k, mm):
    """mm/mmu_notifier.c: __mmu_notifier_release() (6.6), called by exit_mmap() before it frees
    the page tables: every subscriber's mappings of the mm go (ops->release; for interval
    subscribers, mn_itree_release() runs ops->invalidate over the whole address space)."""
    subs = mm.notifier_subscriptions
    if subs is None:
        return
    end = k.geo.task_size
    yield from mmu_notifier_invalidate_range_start(k, mm, 0, end)
    yield from mmu_notifier_invalidate_range_end(k, mm, 0, end)
