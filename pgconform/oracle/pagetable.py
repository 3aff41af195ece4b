"""Oracles that fire at the effect that breaks them: writes to page tables, PMD transitions (link,
detach), and hand-off of a table to call_rcu or to the allocator.  They observe; the only state they
update is the table lifecycle marker, which exists for them."""

from __future__ import annotations

from pgconform.kernel.objects import ALLOCATED, DEFERRED, DETACHED, LINKED, TablePmd


def check_pte_store(m, t, table, idx, value) -> None:
    """Store hook of PTE tables: the writer holds the table's ptl and the table is still linked."""
    if table.state != LINKED:
        m.violation("pt.write-detached",
                    f"{t.name} writes {value!r} into entry {idx} of {table!r}, which is {table.state} "
                    "(no longer linked from any PMD): the entry is lost with the table", t, table)
    if table.ptl.owner is not t:
        m.violation("pt.write-unlocked",
                    f"{t.name} writes {value!r} into entry {idx} of {table!r} without holding its "
                    f"ptl {table.ptl!r}", t, table)


def make_pmd_store_check(k):
    """Store hook of PMD tables, bound to the kernel ``k`` (to resolve frame numbers)."""

    def check_pmd_store(m, t, pmdtable, idx, value) -> None:
        if pmdtable.ptl.owner is not t:
            m.violation("pt.pmd-write-unlocked",
                        f"{t.name} writes {value!r} into {pmdtable!r}[{idx}] without holding "
                        f"pmd_lock {pmdtable.ptl!r}", t, pmdtable)
        old = pmdtable.entries[idx]
        if old == value:
            return
        if type(old) is TablePmd:
            table = k.mem.occupant(old.pfn)
            mm = pmdtable.mm
            haddr = idx * k.geo.ptrs_per_pte
            if not any(s <= haddr and haddr + k.geo.ptrs_per_pte <= e for s, e in mm.notifier_ranges):
                m.violation("mmu.pmd-clear-unnotified",
                            f"{t.name} clears {pmdtable!r}[{idx}] (-> {table!r}) outside any "
                            "mmu_notifier invalidate range: a secondary MMU may keep walking the "
                            "table after it is freed", t, table)
            table.state = DETACHED
            table.linked_at = None
        if type(value) is TablePmd:
            table = k.mem.occupant(value.pfn)
            if table is None or table.freed or table.state not in (ALLOCATED, DETACHED):
                state = "freed" if table is None or table.freed else table.state
                m.violation("pt.populate-dead",
                            f"{t.name} links {table!r} ({state}) into {pmdtable!r}[{idx}]",
                            t, table)
            table.state = LINKED
            table.linked_at = (pmdtable, idx)

    return check_pmd_store


def on_table_call_rcu(table):
    """call_rcu hook of a PTE table's rcu_head: the table is detached and empty."""

    def hook(m, t) -> None:
        check_table_release(m, t, table, "call_rcu")
        table.state = DEFERRED

    return hook


def check_table_release(m, t, table, how: str) -> None:
    """A table handed to call_rcu or freed: not freed already, not linked, empty."""
    if table.freed:
        m.violation("pt.double-free", f"{t.name} frees {table!r} ({how}) a second time", t, table)
    if table.state == LINKED:
        m.violation("pt.free-linked", f"{t.name} frees {table!r} ({how}) while a PMD still points at "
                    "it", t, table)
    if not table.is_empty():
        live = {i: e for i, e in enumerate(table.entries) if e is not None}
        m.violation("pt.free-nonempty", f"{t.name} frees {table!r} ({how}) with live entries {live}: "
                    "they are lost with the table", t, table)


def check_no_leaks(k) -> None:
    """End of run: every table is linked or freed."""
    for table in k.tables:
        if not table.freed and table.state != LINKED:
            k.m.violation("pt.leak", f"{table!r} is {table.state} at the end of the run: never "
                          "freed", None, table)
