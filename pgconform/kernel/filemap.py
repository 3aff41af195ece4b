"""The page cache and folio helpers (mm/filemap.c, mm/shmem.c, include/linux/mm.h; Linux 6.6).

Reference counts and map counts are atomics in the kernel; the model updates them inside the step
of the neighbouring effect (they commute), so they cost no interleaving point of their own.
"""

from __future__ import annotations

import attrs

from pgconform.sim.effects import Effect


@attrs.frozen(slots=True)
class PageCacheGet(Effect):
    """filemap_get_entry() + folio_try_get(): the folio at ``index`` with a reference taken, or
    None.

    A folio whose refcount is frozen (folio_ref_freeze() by collapse_file()) cannot be got: the
    lookup retries until the entry is replaced or unfrozen, so the effect waits."""

    file: object
    index: int
    shows_result = True
    preempt_point = True

    def blocked(self, m, t):
        folio = self.file.pages.get(self.index)
        if folio is not None and folio.frozen is not None:
            return (folio.frozen,)
        return None

    def execute(self, m, t):
        folio = self.file.pages.get(self.index)
        if folio is not None:
            folio.refcount += 1
        return folio

    def objects(self):
        return (self.file,)

    def __str__(self):
        return f"filemap_get_entry({self.file!r}, {self.index})"


def folio_get(folio) -> None:
    folio.refcount += 1


def folio_put(k, folio, nr: int = 1) -> None:
    """folio_put(): drop references; the folio is freed when the last goes."""
    folio.refcount -= nr
    if folio.refcount == 0:
        folio.freed = True
    elif folio.refcount < 0:
        k.hooks.folio_refcount_negative(k, folio)


def mm_counter_file(folio) -> str:
    return "MM_SHMEMPAGES"


def mm_counter(folio) -> str:
    """include/linux/mm.h: mm_counter() (6.6)."""
    return "MM_ANONPAGES" if folio.anon else mm_counter_file(folio)
