"""x86-32 PAE: PMDs read locklessly as two halves.  A reader outside mm_cpumask (the rmap walk of
folio_referenced()) reads the low half of a table entry; khugepaged retracts that table; a fault
links a new table whose low half is equal; the reader's retry loop then accepts a torn value.
pmdp_get_lockless_sync() (an IPI that waits for IRQ-off readers, sent under pml) prevents it."""

from __future__ import annotations

import pytest

from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.kernel.objects import TornPmd
from pgconform.kernel.pagewalk import show_smaps
from pgconform.kernel.pgtable import PAE_LOW_FRAMES, pae_compose, pae_split
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.sim.effects import IpiSync, Load
from pgconform.sim.errors import Violation
from pgconform.zoo import a10_pae_no_sync
from tests.selftest.helpers import finish, step_until

#: mm0 maps the file privately at [0, 8): PMD 0 and PMD 1 have tables (pages 0 and 4 read in);
#: after the collapse, a write fault (COW) links a new PTE table where the THP could be mapped;
#: a second VMA at [8, 12) gives a fault a fresh PMD to take a frame in
WORLD = WorldSpec(vmas=(VmaSpec(0, 0, 8, 0, shared=False), VmaSpec(0, 8, 4, 0, shared=False)),
                  prefault=((0, 0, False), (0, 4, False)))


def pending_half_load_irqs_off(t):
    """About to read a PMD half inside __pte_offset_map()'s IRQ-off section."""
    return type(t.pending) is Load and t.pending.page.kind == "pmd-halves" and t.irq


def torn_read_schedule(impl):
    k = build_world(WORLD, impl, arch="x86_pae")
    m = k.m
    old = k.pmd_table(k.mms[0].pmd_table.entries[1])
    # /proc/PID/smaps of mm0 read by another process: PMD 1, under mm0's mmap_lock for read
    reader = m.spawn("CPU0", show_smaps(k, k.mms[0], 4, 8), "cat /proc/mm0/smaps")
    step_until(m, reader, pending_half_load_irqs_off)
    m.step(reader)  # low half of the entry for ``old``
    collapse = start_op(k, "CPU1", Op("khugepaged", 0, 4))
    m.run(collapse, m.step_bound)
    m.step(reader)  # high half: the entry is clear (or still old, if the retract waits)
    # a fault elsewhere first, if needed, so that the next new frame has the same low bits
    if len(k.mem.frames) % PAE_LOW_FRAMES != old.pfn % PAE_LOW_FRAMES:
        # a table for PMD 2 (it waits for pml while the reference's retract waits for its IPI)
        m.run(start_op(k, "CPU2", Op("read", 0, 8)), m.step_bound)
    refill = start_op(k, "CPU3", Op("write", 0, 5))
    m.run(refill, m.step_bound)
    m.run(reader, m.step_bound)
    finish(k)
    return k, collapse


def test_torn_read_without_the_sync_is_caught():
    with pytest.raises(Violation) as excinfo:
        torn_read_schedule(a10_pae_no_sync.MUTANT)
    assert excinfo.value.clause == "pt.torn-pmd", str(excinfo.value)
    assert "smaps_pte_range" in excinfo.value.diagram


def test_the_sync_waits_for_the_reader():
    k, collapse = torn_read_schedule(REFERENCE)
    assert not k.m.failed
    assert any(type(e) is IpiSync and t is collapse for t, _, e, _ in k.m.trace)


def test_halves_compose_back_and_detect_mixes():
    for value in (None, k_table(2), k_table(5)):
        assert pae_compose(*pae_split(value)) == (value, False)
    lo, _ = pae_split(k_table(2))
    _, hi = pae_split(None)
    value, torn = pae_compose(lo, hi)
    assert torn and type(value) is TornPmd and value.pfn == 2 % PAE_LOW_FRAMES


def k_table(pfn):
    from pgconform.kernel.objects import TablePmd

    return TablePmd(pfn)
