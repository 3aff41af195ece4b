"""TLB invalidation as the CPU side of the protocol sees it: arch/x86/mm/tlb.c and the generic
flush_tlb_range() of the other architectures (Linux 6.6).  Where x86 interrupts the CPUs running the
mm and waits for them, a lockless walker with interrupts disabled holds the flush back.
"""

from __future__ import annotations

from pgconform.sim.effects import IpiSync


def flush_tlb_range(k, vma, start, end):
    """flush_tlb_range() (arch/x86/mm/tlb.c flush_tlb_mm_range(), 6.6): on x86 an IPI to the other
    CPUs in mm_cpumask, waiting for each (so it waits out their IRQ-disabled sections); other
    architectures invalidate by broadcast and interrupt nobody."""
    if k.arch.tlb_flush_ipi:
        yield IpiSync(vma.mm, f"flush_tlb_range({vma!r}, {start}, {end})  [IPI mm_cpumask, wait]")
