"""mmu_notifier invalidate ranges (include/linux/mmu_notifier.h, mm/mmu_notifier.c; Linux 6.6).

A range start may sleep (blockable notifiers), so it is never called under a spinlock.  The mm keeps
the ranges in progress: a secondary MMU must not use translations in them, and the PMD oracle
requires one around every clear of a PMD that points at a page table."""

from __future__ import annotations

from pgconform.sim.effects import Atomic


def _start(m, t, mm, start, end):
    mm.notifier_ranges.append((start, end))


def _end(m, t, mm, start, end):
    mm.notifier_ranges.remove((start, end))


def mmu_notifier_invalidate_range_start(k, mm, start, end):
    """mm/mmu_notifier.c: __mmu_notifier_invalidate_range_start() (6.6)."""
    yield Atomic(f"mmu_notifier_invalidate_range_start({mm!r}, {start}, {end})", _start,
                 (mm, start, end), sleeps=True, touches=(mm,))


def mmu_notifier_invalidate_range_end(k, mm, start, end):
    """mm/mmu_notifier.c: __mmu_notifier_invalidate_range_end() (6.6)."""
    yield Atomic(f"mmu_notifier_invalidate_range_end({mm!r}, {start}, {end})", _end,
                 (mm, start, end), sleeps=True, touches=(mm,))
