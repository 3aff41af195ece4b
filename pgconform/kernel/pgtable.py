"""The page-table accessors every modelled path goes through (include/linux/pgtable.h and the
arch's asm/pgtable.h, Linux 6.6): PMD stores and clears, and how a caller maps a PTE table without
locking it in the kernel version it runs in.

``set_pmd`` is how the model stores a PMD entry: one word on 64-bit architectures; on x86-32 PAE
two 32-bit stores in the order arch/x86/include/asm/pgtable-3level.h (6.6) uses, so a lockless
reader can observe the halves of two different values.  TLB flushes are in
:mod:`pgconform.kernel.tlbflush`, the pt_list operations in :mod:`pgconform.kernel.list`,
mm_find_pmd() in :mod:`pgconform.kernel.rmap`.
"""

from __future__ import annotations

import attrs

from pgconform.kernel.objects import Half, HugePmd, TablePmd, TornPmd
from pgconform.sim.effects import Effect, Store

#: PAE: how many page frames share one value of the low half.  Physical frame numbers above it
#: differ only in the high half from a frame below, which is what makes a torn read possible.
PAE_LOW_FRAMES = 2


def pae_split(value) -> tuple[Half, Half]:
    """The (low, high) halves of a PMD value.  The low word carries the present and PSE bits and
    the low frame bits; a huge PMD's low word can never equal a table's (PSE differs)."""
    if value is None:
        return Half(0, None), Half(0, None)
    if type(value) is TablePmd:
        return (Half(1 + value.pfn % PAE_LOW_FRAMES, value),
                Half(value.pfn // PAE_LOW_FRAMES, value))
    if type(value) is HugePmd:
        return Half(("PSE", id(value.folio), value.write), value), Half(0, value)
    raise TypeError(f"not a PMD value: {value!r}")


def pae_compose(lo: Half, hi: Half):
    """The value a CPU sees in (low, high): pmd_none() looks at the low word only on 32-bit.
    Returns ``(value, torn)``: torn when the pair is neither value its halves came from; the value
    is then a :class:`TornPmd`."""
    if lo.bits == 0:
        return None, False
    if isinstance(lo.bits, tuple):  # a huge PMD's low word
        if hi.bits == 0:
            return lo.whole, False
        return TornPmd(None, lo, hi), True
    value = TablePmd(hi.bits * PAE_LOW_FRAMES + lo.bits - 1)
    if value == lo.whole or value == hi.whole:
        return value, False
    return TornPmd(value.pfn, lo, hi), True


@attrs.frozen(slots=True)
class Store64(Effect):
    """A single-copy-atomic 64-bit store of a PAE PMD entry (cmpxchg8b): both halves at once."""

    pmdtable: object
    idx: int
    value: object

    def execute(self, m, t):
        halves = self.pmdtable.halves
        if self.pmdtable.freed:
            m.use_after_free(t, self.pmdtable, f"write of entry {self.idx}")
        lo, hi = pae_split(self.value)
        halves.check_store(m, t, halves, 2 * self.idx, (lo, hi))
        halves.entries[2 * self.idx] = lo
        halves.entries[2 * self.idx + 1] = hi

    def objects(self):
        return (self.pmdtable,)

    def __str__(self):
        return f"WRITE64 {self.pmdtable!r}[{self.idx}] = {self.value!r}"


def set_pmd(k, pmdp, value):
    """Store a PMD entry (set_pmd/pmd_populate/set_pmd_at/pmdp_huge_get_and_clear).

    On x86 PAE these are single 64-bit atomic writes (native_set_pmd(), native_pmdp_get_and_clear()
    use cmpxchg8b in arch/x86/include/asm/pgtable-3level.h, 6.6): a lockless reader still reads the
    two halves separately, so it can combine halves of two values written one after the other."""
    if not k.arch.pmd_low_high:
        yield Store(pmdp.table, pmdp.idx, value)
    else:
        yield Store64(pmdp.table, pmdp.idx, value)


def pmd_clear(k, pmdp):
    """pmd_clear(): on PAE native_pmd_clear() writes the low half (present bit) first, then the
    high half, as two 32-bit stores."""
    if not k.arch.pmd_low_high:
        yield Store(pmdp.table, pmdp.idx, None)
        return
    halves = pmdp.table.halves
    lo, hi = pae_split(None)
    yield Store(halves, 2 * pmdp.idx, lo)
    yield Store(halves, 2 * pmdp.idx + 1, hi)


def pte_map_ro_as(k, mm, pmdp, addr):
    """How a caller that only reads under the ptl maps a table without locking it, by version:
    pte_offset_map_nolock() (6.5-6.12), pte_offset_map_ro_nolock() (6.13+).  ``(pte, ptl)``."""
    if k.version.rw_nolock:
        return (yield from k.ops.pte_offset_map_ro_nolock(k, mm, pmdp, addr))
    return (yield from k.ops.pte_offset_map_nolock(k, mm, pmdp, addr))


def pte_map_rw_as(k, mm, pmdp, addr):
    """How a caller that writes under the ptl maps a table without locking it, by version:
    pte_offset_map_nolock() (6.5-6.12: no snapshot, pmdval None), pte_offset_map_rw_nolock()
    (6.13+: the pmd snapshot, for the caller's pmd_same() recheck).  ``(pte, pmdval, ptl)``."""
    if k.version.rw_nolock:
        return (yield from k.ops.pte_offset_map_rw_nolock(k, mm, pmdp, addr))
    pte, ptl = yield from k.ops.pte_offset_map_nolock(k, mm, pmdp, addr)
    return pte, None, ptl
