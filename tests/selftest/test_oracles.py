"""Every oracle fires, through the real kernel model, on a broken implementation or kernel action.

Each test builds a small world, starts operations on CPUs and drives one deterministic schedule by
hand; the broken implementation (a series function overridden in this file) must raise the clause,
and the reference must come through the very same schedule clean, end-of-run checks included.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import pgconform
from pgconform.harness.scenario import Op, VmaSpec, WorldSpec, build_world, start_op
from pgconform.implementation import Implementation
from pgconform.kernel.mmu_notifier import (
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
)
from pgconform.kernel.pgalloc import mm_dec_nr_ptes
from pgconform.oracle.clauses import CLAUSES
from pgconform.oracle.state import check_end_state
from pgconform.reference import IMPLEMENTATION as REFERENCE
from pgconform.reference.khugepaged import SCAN_SUCCEED
from pgconform.sim.effects import CallRcu, DownRead, Load, Lock, Store, Unlock, UpRead
from pgconform.sim.errors import ImplementationErrored, Violation
from pgconform.sim.sync import Spinlock
from pgconform.zoo import a0p_no_rcu_read_lock, a15_no_pmd_same
from tests.selftest.helpers import (
    SHARED,
    assert_clause,
    finish,
    in_function,
    in_path,
    pending_lock_in,
    pending_pte_table_load,
    run_to_end,
    step_until,
)

#: the same mapping private and registered with userfaultfd (MISSING), page 0 read-faulted in.
PRIVATE_UFFD = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False, uffd_missing=True),),
                         prefault=((0, 4, False),))
#: private, page 0 read and page 1 written (COW): the PTE table holds an anonymous page.
PRIVATE_COW = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0, shared=False),),
                        prefault=((0, 4, False), (0, 5, True)))

#: the same shared mapping with nothing faulted in (no PTE table yet).
SHARED_COLD = WorldSpec(vmas=(VmaSpec(0, 4, 8, 0),))

KHUGEPAGED = Op("khugepaged", 0, 4)
READ_5 = Op("read", 0, 5)
DONTNEED_PMD1 = Op("dontneed", 0, 4, 4)
UFFD_COPY_5 = Op("uffd_copy", 0, 5, 7)


def broken(name, **overrides) -> Implementation:
    return Implementation(name=name, overrides=overrides)


# ------------------------------------------------------------------------------------------------
# driving a schedule by hand


# ------------------------------------------------------------------------------------------------
# schedules


def collapse_alone(impl, world=SHARED):
    """khugepaged collapses PMD 1 with nothing racing it."""
    k = build_world(world, impl)
    start_op(k, "CPU1", KHUGEPAGED)
    finish(k)
    return k


def fault_paused_after_pmd_snapshot(impl):
    """A read fault at 5 snapshots the PMD in __pte_offset_map() (via pte_offset_map_nolock())
    and stops before its first read of the table; khugepaged collapses the range and retracts
    the table; the RCU callbacks that are ready run; then the fault goes on."""
    k = build_world(SHARED, impl)
    m = k.m
    fault = start_op(k, "CPU0", READ_5)
    collapse = start_op(k, "CPU1", KHUGEPAGED)
    step_until(m, fault, pending_pte_table_load)
    # inside __pte_offset_map()'s read-side section (unless the implementation has none)
    assert fault.rcu == (0 if "no-rcu" in impl.name else 1)
    run_to_end(m, collapse)
    assert collapse.result == SCAN_SUCCEED
    for cb in m.ready_callbacks():
        m.run_callback(cb)
    finish(k)
    return k


def zap_paused_before_ptl(impl):
    """MADV_DONTNEED of PMD 1 reaches pte_offset_map_lock() and stops right before spin_lock(ptl)
    of the table its snapshot named; khugepaged retracts that table; then the zap goes on."""
    k = build_world(SHARED, impl)
    m = k.m
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    collapse = start_op(k, "CPU1", KHUGEPAGED)
    step_until(m, zap, pending_lock_in("pte_offset_map_lock"))
    run_to_end(m, collapse)
    for cb in m.ready_callbacks():
        m.run_callback(cb)
    finish(k)
    return k


def uffd_copy_against_retract(impl):
    """retract_page_tables() holds pml and ptl and has rechecked anon_vma (none yet); UFFDIO_COPY
    into the same private VMA then attaches an anon_vma, snapshots the PMD and waits for the ptl
    in pte_offset_map_lock(); the retract clears the PMD and drops the locks; the copy goes on."""
    k = build_world(PRIVATE_UFFD, impl)
    m = k.m
    collapse = start_op(k, "CPU1", KHUGEPAGED)
    copy = start_op(k, "CPU0", UFFD_COPY_5)
    step_until(m, collapse, in_function("pmdp_collapse_flush"))
    m.run(copy, m.step_bound)
    assert isinstance(m.blocker(copy), Spinlock), "the copy must wait for the retract's ptl"
    assert in_path(copy, "pte_offset_map_lock")
    finish(k)
    return k


def read_fault_alone(impl, world=SHARED):
    """A read fault at address 5 with nothing racing it."""
    k = build_world(world, impl)
    start_op(k, "CPU0", READ_5)
    finish(k)
    return k


def zap_against_retract_locks(impl):
    """khugepaged's retract takes pml and waits for nothing yet; MADV_DONTNEED of the range maps
    the table and locks it in pte_offset_map_lock(); then both go on."""
    k = build_world(SHARED, impl)
    m = k.m
    collapse = start_op(k, "CPU1", KHUGEPAGED)
    zap = start_op(k, "CPU0", DONTNEED_PMD1)
    step_until(m, collapse, pending_lock_in("retract_page_tables", subclass=1))
    m.run(zap, m.step_bound)
    m.check_deadlock()
    finish(k)
    return k


# ------------------------------------------------------------------------------------------------
# broken series functions


def pte_free_defer_immediate(k, mm, table):
    """6.5's immediate pte_free() under 6.6's reduced locking."""
    yield from k.ops.pte_free(k, mm, table)


def pte_free_defer_and_free(k, mm, table):
    """Queues the RCU free and frees at once as well."""
    yield CallRcu(table.rcu_head, k.ops.pte_free_now, (k, table.rcu_head))
    yield from k.ops.pte_free(k, mm, table)


def pte_free_defer_nothing(k, mm, table):
    """Forgets the table."""
    return
    yield


def pte_free_defer_twice(k, mm, table):
    """Reuses the page's one rcu_head for a second callback (say, to free a separately allocated
    ptlock): the head is queued twice."""
    yield CallRcu(table.rcu_head, k.ops.pte_free_now, (k, table.rcu_head))
    yield CallRcu(table.rcu_head, k.ops.pte_free_now, (k, table.rcu_head))


# map, lock the snapshot's ptl and return, without the pmd_same() recheck: the zoo's A15
pte_offset_map_lock_no_recheck = a15_no_pmd_same.pte_offset_map_lock


def pte_offset_map_lock_no_lock(k, mm, pmdp, addr):
    """Returns the ptl without taking it (and so without the recheck under it)."""
    pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
    if pte is None:
        return None, None
    ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
    return pte, ptl


def pte_unmap_unlock_no_unlock(k, pte, ptl):
    """Pairs with pte_offset_map_lock_no_lock(): nothing to unlock."""
    yield from k.ops.pte_unmap(k, pte)


def pte_offset_map_lock_recheck_under_pml(k, mm, pmdp, addr):
    """Takes the ptl, then rechecks the PMD under pmd_lock (nested): ptl before pml, the reverse
    of retract_page_tables()'s order."""
    while True:
        pte, pmdval = yield from k.ops.__pte_offset_map(k, pmdp, addr)
        if pte is None:
            return None, None
        ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
        yield Lock(ptl)
        pml = yield from k.ops.pmd_lockptr(k, mm, pmdp)
        yield Lock(pml, 1)
        same = pmdval == (yield Load(pmdp.table, pmdp.idx))
        yield Unlock(pml)
        if same:
            return pte, ptl
        yield from k.ops.pte_unmap_unlock(k, pte, ptl)


def make_retract(*, notify=True, take_pml=True, clear_pmd=True, dec_nr_ptes=True,
                 check_anon=True, relink=False):
    """retract_page_tables() as in the reference (mm/khugepaged.c, 6.6), with one step switchable
    off per keyword; with every keyword at its default it behaves as the reference.  ``relink``
    puts the old PMD value back (under pmd_lock) after deferring the table, as a botched "undo"
    would."""

    def retract_page_tables(k, mapping, pgoff):
        geo = k.geo
        yield DownRead(mapping.i_mmap_rwsem)
        for vma in list(mapping.i_mmap):
            if check_anon and vma.anon_vma is not None:
                continue
            addr = vma.start + (pgoff - vma.pgoff)
            if addr % geo.hpage_pmd_nr or addr < vma.start or vma.end < addr + geo.hpage_pmd_nr:
                continue
            mm = vma.mm
            result, pmdp = yield from k.ops.find_pmd_or_thp_or_none(k, mm, addr)
            if result != SCAN_SUCCEED:
                continue
            end = addr + geo.hpage_pmd_nr
            if notify:
                yield from mmu_notifier_invalidate_range_start(k, mm, addr, end)
            pml = (yield from k.ops.pmd_lock(k, mm, pmdp)) if take_pml else None
            pmdval = yield Load(pmdp.table, pmdp.idx)
            ptl = yield from k.ops.pte_lockptr(k, mm, pmdval)
            yield Lock(ptl, 1 if take_pml else 0)
            skipped = check_anon and vma.anon_vma is not None
            if not skipped and clear_pmd:
                yield from k.ops.pmdp_collapse_flush(k, vma, addr, pmdp)
                yield from k.ops.pmdp_get_lockless_sync(k)
            yield Unlock(ptl)
            if pml is not None:
                yield Unlock(pml)
            if notify:
                yield from mmu_notifier_invalidate_range_end(k, mm, addr, end)
            if not skipped:
                if dec_nr_ptes:
                    yield from mm_dec_nr_ptes(k, mm)
                yield from k.ops.pte_free_defer(k, mm, k.pmd_pgtable(pmdval))
                if relink:
                    pml = yield from k.ops.pmd_lock(k, mm, pmdp)
                    yield Store(pmdp.table, pmdp.idx, pmdval)
                    yield Unlock(pml)
        yield UpRead(mapping.i_mmap_rwsem)

    return retract_page_tables


def retract(name, **knobs) -> Implementation:
    return broken(name, retract_page_tables=make_retract(**knobs))


# ------------------------------------------------------------------------------------------------
# the reference comes through every schedule


@pytest.mark.parametrize("scenario", [
    collapse_alone,
    lambda impl: collapse_alone(impl, PRIVATE_COW),
    fault_paused_after_pmd_snapshot,
    zap_paused_before_ptl,
    uffd_copy_against_retract,
    read_fault_alone,
    lambda impl: read_fault_alone(impl, SHARED_COLD),
    zap_against_retract_locks,
], ids=["collapse", "collapse-private-cow", "fault-vs-collapse", "zap-vs-collapse",
        "uffd-copy-vs-retract", "read-fault", "read-fault-cold", "zap-vs-retract-locks"])
@pytest.mark.parametrize("impl", [REFERENCE, retract("retract-as-reference")],
                         ids=["reference", "retract-copy"])
def test_reference_passes_every_schedule(scenario, impl):
    k = scenario(impl)
    assert not k.m.failed
    assert not k.m.active() and not k.m.callbacks


def test_collapse_retracts_and_frees_the_table():
    """The schedules do what they say: the table is retracted and freed after a grace period."""
    k = collapse_alone(REFERENCE)
    (table,) = k.tables
    assert table.freed and not table.ptl.alive
    assert k.mms[0].nr_ptes == 0


def test_uffd_copy_schedule_retries_into_a_new_table():
    k = uffd_copy_against_retract(REFERENCE)
    old, new = k.tables
    assert old.freed and not new.freed and new.entries[1] is not None


# ------------------------------------------------------------------------------------------------
# page-table lifetime


#: an immediate free together with a walker outside any read-side section (A0 + A0'): the free
#: cannot know the walker holds the table, so only the walker's next access shows the bug
FREE_IMMEDIATE_NO_RCU = broken("free-immediate-no-rcu", pte_free_defer=pte_free_defer_immediate,
                               __pte_offset_map=a0p_no_rcu_read_lock.__pte_offset_map,
                               pte_unmap=a0p_no_rcu_read_lock.pte_unmap)


def test_use_after_free():
    v = assert_clause(fault_paused_after_pmd_snapshot, FREE_IMMEDIATE_NO_RCU, "pt.use-after-free")
    assert "handle_pte_fault" in v.diagram and "*** READ pte_table@" in v.diagram


def test_ptlock_use_after_free():
    v = assert_clause(zap_paused_before_ptl, FREE_IMMEDIATE_NO_RCU, "pt.ptlock-use-after-free")
    assert "*** spin_lock(ptl(pte_table@" in v.diagram


def test_reuse_before_gp():
    """The free itself is the violation when a reader that entered RCU before the unlink is
    still in its section (it may hold the table)."""
    v = assert_clause(fault_paused_after_pmd_snapshot,
                      broken("free-immediate", pte_free_defer=pte_free_defer_immediate),
                      "pt.reuse-before-gp")
    assert "CPU0:load mm0@5" in str(v) and "*** pte_free(pte_table@" in v.diagram


def test_double_free():
    assert_clause(collapse_alone, broken("defer-and-free", pte_free_defer=pte_free_defer_and_free),
                  "pt.double-free")


def test_free_linked():
    assert_clause(collapse_alone, retract("no-pmd-clear", clear_pmd=False), "pt.free-linked")


def test_free_nonempty():
    """Retracting a table that maps an anonymous (COW) page throws the page away with it."""
    v = assert_clause(lambda impl: collapse_alone(impl, PRIVATE_COW),
                      retract("no-anon-vma-check", check_anon=False), "pt.free-nonempty")
    assert "anon(" in v.message


def test_populate_dead():
    v = assert_clause(collapse_alone, retract("relink", relink=True), "pt.populate-dead")
    assert "(deferred)" in v.message


def test_leak():
    assert_clause(collapse_alone, broken("defer-nothing", pte_free_defer=pte_free_defer_nothing),
                  "pt.leak")


def test_write_detached():
    """pte_offset_map_lock() without pmd_same(): UFFDIO_COPY installs into the retracted table."""
    assert_clause(uffd_copy_against_retract,
                  broken("no-pmd-same", pte_offset_map_lock=pte_offset_map_lock_no_recheck),
                  "pt.write-detached")


def test_write_unlocked():
    """A fault that allocates the table and maps page 1 through a pte_offset_map_lock() that does
    not lock (the cold world: the prefault would go through the broken function too)."""
    v = assert_clause(lambda impl: read_fault_alone(impl, SHARED_COLD),
                      broken("no-ptl", pte_offset_map_lock=pte_offset_map_lock_no_lock,
                             pte_unmap_unlock=pte_unmap_unlock_no_unlock),
                      "pt.write-unlocked")
    assert v.task.name == "CPU0:load mm0@5"


def test_pmd_write_unlocked():
    """retract_page_tables() taking only the ptl, not pmd_lock, around pmdp_collapse_flush()."""
    assert_clause(collapse_alone, retract("no-pml", take_pml=False), "pt.pmd-write-unlocked")


# ------------------------------------------------------------------------------------------------
# secondary MMUs, RCU, accounting


def test_pmd_clear_unnotified():
    assert_clause(collapse_alone, retract("no-mmu-notifier", notify=False),
                  "mmu.pmd-clear-unnotified")


def test_double_call_rcu():
    assert_clause(collapse_alone, broken("call-rcu-twice", pte_free_defer=pte_free_defer_twice),
                  "rcu.double-call_rcu")


def test_nr_ptes():
    assert_clause(collapse_alone, retract("no-dec-nr-ptes", dec_nr_ptes=False), "acct.nr_ptes")


def _corrupt_rss(k):
    k.mms[0].rss["MM_SHMEMPAGES"] += 1


def _mapped_folio(k):
    """The file folio of page 0, mapped at address 4 by the world's prefault."""
    folio = k.files[0].pages[0]
    assert folio.mapcount == 1
    return folio


def _corrupt_mapcount(k):
    _mapped_folio(k).mapcount += 1


def _corrupt_refcount(k):
    _mapped_folio(k).refcount += 1


def _corrupt_data(k):
    _mapped_folio(k).data[0] += 1


def _corrupt_page_cache(k):
    """Truncate the mapped page from the page cache without unmapping it."""
    folio = _mapped_folio(k)
    del k.files[0].pages[folio.index]
    folio.mapping = None


def _lose_anon_page(k):
    """An anonymous page the mm wrote at address 6 that no table maps any more."""
    k.oracles.data.shadow[(k.mms[0], 6)] = 42


@pytest.mark.parametrize("corrupt, clause", [
    (_corrupt_rss, "acct.rss"),
    (_corrupt_mapcount, "acct.mapcount"),
    (_corrupt_refcount, "acct.refcount"),
    (_corrupt_data, "data.mismatch"),
    (_corrupt_page_cache, "data.stale-mapping"),
    (_lose_anon_page, "data.mismatch"),
], ids=["rss", "mapcount", "refcount", "data", "page-cache", "anon-lost"])
def test_end_state_oracles(corrupt, clause):
    """The end-of-run oracles, on state corrupted directly after a clean run (no broken
    implementation needed: this checks the oracle, not a schedule).  The world has page 0
    (address 4) mapped by a PTE."""
    k = read_fault_alone(REFERENCE)
    check_end_state(k)
    corrupt(k)
    with pytest.raises(Violation) as excinfo:
        k.m.check(lambda: check_end_state(k))
    assert excinfo.value.clause == clause


def test_refcount_underflow_is_caught_at_once():
    """folio_put() below zero: the model's own refcount check, with a corrupted start state."""
    k = build_world(SHARED, REFERENCE)
    _mapped_folio(k).refcount = 0  # both the page cache's and the mapping's reference lost
    start_op(k, "CPU0", DONTNEED_PMD1)
    with pytest.raises(Violation) as excinfo:
        finish(k)
    assert excinfo.value.clause == "acct.refcount"
    assert "went negative" in excinfo.value.message


def test_folio_freed_while_in_page_cache():
    k = build_world(SHARED, REFERENCE)
    _mapped_folio(k).refcount = 1  # the page cache's reference lost
    start_op(k, "CPU0", DONTNEED_PMD1)
    with pytest.raises(Violation) as excinfo:
        finish(k)
    assert excinfo.value.clause == "acct.refcount"


# ------------------------------------------------------------------------------------------------
# scheduling, the implementation as code


def test_deadlock():
    """ptl then pml in pte_offset_map_lock() against retract's pml then ptl.  Both are of the one
    ptlock class (subclass 0 then 1 in both orders), so lockdep cannot see it; the run deadlocks."""
    impl = broken("ptl-then-pml", pte_offset_map_lock=pte_offset_map_lock_recheck_under_pml)
    v = assert_clause(zap_against_retract_locks, impl, "sched.deadlock")
    assert "(cycle)" in v.message
    assert "CPU0:madvise(" in v.message and "CPU1:khugepaged(" in v.message
    assert "CPU0" in v.diagram and "CPU1" in v.diagram


def _pmd_lockptr_raises(k, mm, pmdp):
    raise RuntimeError("no pmd lock for you")
    yield


def _pmd_lock_yields_garbage(k, mm, pmdp):
    yield "spin_lock(pml)"


def test_implementation_raising_is_errored():
    with pytest.raises(ImplementationErrored) as excinfo:
        collapse_alone(broken("raises", pmd_lockptr=_pmd_lockptr_raises))
    assert excinfo.value.clause == "impl.raised"
    assert "RuntimeError: no pmd lock for you" in excinfo.value.message


def test_implementation_yielding_garbage_is_errored():
    with pytest.raises(ImplementationErrored) as excinfo:
        collapse_alone(broken("garbage", pmd_lock=_pmd_lock_yields_garbage))
    assert excinfo.value.clause == "impl.bad-yield"


# ------------------------------------------------------------------------------------------------
# the clause table


_VERDICT_CALLS = {"violation", "Violation", "ImplementationErrored", "_errored"}


def _raised_clause_ids() -> dict[str, list[str]]:
    """Every string literal that looks like a clause id among the first two positional arguments
    of a call to violation()/Violation()/ImplementationErrored()/_errored() in pgconform/."""
    root = pathlib.Path(pgconform.__file__).parent
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in _VERDICT_CALLS:
                continue
            for arg in node.args[:2]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                        and "." in arg.value and " " not in arg.value:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    found.setdefault(arg.value, []).append(where)
    return found


def test_every_raised_clause_is_listed():
    raised = _raised_clause_ids()
    # the scan sees the verdicts of every layer (engine, page-table and end-state oracles, model)
    for sample in ("lock.recursive", "sched.deadlock", "impl.raised", "pt.write-detached",
                   "acct.nr_ptes", "data.stale-mapping", "pt.use-after-free"):
        assert sample in raised
    assert len(raised) >= 30
    unknown = {c: w for c, w in raised.items() if c not in CLAUSES}
    assert not unknown, f"clause ids raised but missing from CLAUSES: {unknown}"


def test_clause_ids_are_well_formed():
    for clause, statement in CLAUSES.items():
        area, _, rest = clause.partition(".")
        assert area in {"pt", "mmu", "gup", "rcu", "irq", "lock", "sched", "acct", "data", "impl",
                        "vma"}
        assert rest and " " not in clause
        assert statement.endswith(".")
