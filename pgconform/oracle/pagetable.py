"""Oracles that fire at the effect that breaks them: writes to page tables, PMD transitions (link,
detach), and hand-off of a table to call_rcu or to the allocator; subscribed to the kernel model's
events (kernel/hooks.py) by :func:`pgconform.oracle.install`.  They observe; the only state they
update is the table lifecycle marker (``state``, ``linked_at``, ``unlinked_from``,
``unlinked_step``, ``dormant_uffd_wp``, ``detach_readers``: fields of the table kept for them and
written only here), and the private content that follows a table linked at another PMD
(:func:`move_anon_shadow`)."""

from __future__ import annotations

import attrs

from pgconform.kernel.objects import (
    PTE_MARKER_UFFD_WP,
    VM_UFFD_WP,
    PteMarker,
    TablePmd,
    TornPmd,
    pte_present,
)
from pgconform.sim.names import plumbing

#: lifecycle of a PTE table page: allocated by pte_alloc_one and ctor'd,
#: linked into a PMD, detached (PMD cleared), deferred (waiting for a grace period), freed.
ALLOCATED, LINKED, DETACHED, DEFERRED = "allocated", "linked", "detached", "deferred"


@attrs.define(slots=True, eq=False)
class TableLife:
    """A PTE table's lifecycle as the oracles track it from the PMD stores and call_rcu (the
    table's opaque ``oracle`` slot)."""

    state: str = ALLOCATED
    linked_at: tuple | None = None  # (pmd table, index) while LINKED
    #: (pmd table, index) it was last linked at, while unlinked: the private content of its
    #: anonymous pages follows it if it is linked elsewhere (mremap's move_normal_pmd())
    unlinked_from: tuple | None = None
    #: the trace position (``len(m.trace)``) when it was last unlinked: a lockless walker that
    #: confirmed the PMD before then saw it linked (GUP-fast's linearization point)
    unlinked_step: int = -1
    #: set when the table was unlinked from a range no VMA registered for uffd-wp covers: its
    #: uffd-wp markers, left over from an earlier registration, are dormant (the fault path
    #: clears them: pte_marker_handle_uffd_wp()), so freeing them loses nothing
    dormant_uffd_wp: bool = False
    #: RCU readers present when the table was unlinked under a live VMA (pte_free_defer(), 6.6):
    #: its storage may not be freed or reused before each of them has left that section
    detach_readers: list | None = None


_ALLOCATED = TableLife()  # the lifecycle of a table no PMD store has seen yet (never written)


def life(table) -> TableLife:
    """The lifecycle of ``table`` (read-only)."""
    return table.oracle or _ALLOCATED


def _life(table) -> TableLife:
    """The lifecycle of ``table``, to update."""
    lf = table.oracle
    if lf is None:
        lf = table.oracle = TableLife()
    return lf


def check_pte_store(m, t, table, idx, value) -> None:
    """Store hook of PTE tables: the writer holds the table's ptl and the table is still linked."""
    lf = table.oracle
    if lf is None or lf.state != LINKED:
        m.violation("pt.write-detached",
                    f"{t.name} writes {value!r} into entry {idx} of {table!r}, which is "
                    f"{life(table).state} "
                    "(no longer linked from any PMD): the entry is lost with the table", t, table)
    if table.ptl.owner is not t:
        m.violation("pt.write-unlocked",
                    f"{t.name} writes {value!r} into entry {idx} of {table!r} without holding its "
                    f"ptl {table.ptl!r}", t, table)


def judge_pte_lockptr(fn, overridden: bool):
    """``fn`` (the table's pte_lockptr(), the reference's or an implementation's) judged around
    each call once the oracles are installed (:func:`pgconform.oracle.install`), so that no override
    can switch the judgement off: the pmd value it is given names a page table (with split PTE
    ptlocks: a none, huge or torn value makes pmd_page() garbage, and so the lock: a ptl from a
    re-read ``*pmd`` after the table went, as patches 03 and 04 removed: zoo mutant A14), and, for
    an implementation's
    pte_lockptr(), the lock it returns is that table's ptl (mm->page_table_lock without split PTE
    ptlocks).  The reference's result is that lock by construction: it gets the argument check
    only, made as the call is (no generator of its own on the hot path)."""

    def check_pmdval(k, pmdval):
        if k.arch.split_pte_ptlocks and type(pmdval) is not TablePmd:
            t = k.m.current
            k.m.violation("pt.lock-mismatch", f"{t.name}: pte_lockptr() of {pmdval!r}, which "
                          "names no page table: pmd_page() of it is garbage, and so is the lock",
                          t, None)
            return False  # tolerated (a known violation): nothing more to judge
        return True

    if not overridden:
        @plumbing
        def judged_call(k, mm, pmdval):
            check_pmdval(k, pmdval)
            return fn(k, mm, pmdval)
    else:
        @plumbing
        def judged_call(k, mm, pmdval):
            table_value = check_pmdval(k, pmdval)
            ptl = yield from fn(k, mm, pmdval)
            if not table_value:
                return ptl
            if k.arch.split_pte_ptlocks:
                table = k.pmd_table(pmdval)
                if ptl is not table.ptl:
                    t = k.m.current
                    k.m.violation("pt.lock-mismatch", f"{t.name}: pte_lockptr() of {pmdval!r} "
                                  f"returns {ptl!r}, not the ptl of the page table it names, "
                                  f"{table!r} ({table.ptl!r})", t, table)
            elif ptl is not mm.page_table_lock:
                t = k.m.current
                k.m.violation("pt.lock-mismatch", f"{t.name}: pte_lockptr() of {pmdval!r} returns "
                              f"{ptl!r}; without split PTE ptlocks every page table of {mm!r} is "
                              f"locked by mm->page_table_lock ({mm.page_table_lock!r})", t, None)
            return ptl

    judged_call.__wrapped__ = getattr(fn, "__wrapped__", fn)  # whose code it is (kernel.world)
    return judged_call


#: series functions judged around every call, whoever defines them: name -> the wrapper's maker,
#: called with the function and whether it is an implementation's (installed by
#: pgconform.oracle.install over the reference and the overrides alike)
SERIES_JUDGES = {"pte_lockptr": judge_pte_lockptr}


def pmd_range_reachable(k, mm, idx) -> bool:
    """Whether a VMA that a walker can still find covers part of PMD ``idx`` of ``mm``: one in the
    mm (found under mmap_lock or the VMA lock) or in a file's i_mmap (found by rmap walkers and
    retract_page_tables() under i_mmap_rwsem).  free_pgtables() clears PMDs with neither pmd_lock
    nor an mmu_notifier range (mm/memory.c free_pgd_range(), 6.6): that is correct only because it
    first
    detached the VMAs from the mm and unlinked them from i_mmap, so the PMD-store clauses bind
    PMDs that are still reachable this way."""
    size = k.geo.ptrs_per_pte
    lo, hi = idx * size, idx * size + size
    if mm_walkable(mm) and any(v.start < hi and lo < v.end for v in mm.vmas):
        return True
    return any(v.mm is mm and v.start < hi and lo < v.end for f in k.files for v in f.i_mmap)


def mm_walkable(mm) -> bool:
    """Whether walkers can reach ``mm``'s VMAs through the mm: not once exit_mmap() owns it
    (mm_users 0, so mmget_not_zero() fails; mmap_lock held for write, so earlier readers left).
    exit_mmap() frees page tables below VMAs it never detaches (kernel/mmap.py)."""
    return mm.users > 0 or mm.mmap_lock.writer is None


def pmd_range_excluded(k, t, mm, idx) -> bool:
    """Whether task ``t`` excludes, by sleeping locks, every other writer and software walker of
    PMD ``idx`` of ``mm`` except GUP-fast: it holds the mm's mmap_lock for write (faults, madvise,
    uffd, mremap, page walks) and, for write, the i_mmap_rwsem of the file of every VMA covering
    the range (rmap walkers, truncate, retract).  That is how 6.5's collapse_and_free_pmd()
    cleared the PMD without pmd_lock (mm/khugepaged.c, 6.5; its anon_vma lock, taken when the
    VMA has one, is not modelled)."""
    if mm.mmap_lock.writer is not t:
        return False
    size = k.geo.ptrs_per_pte
    lo, hi = idx * size, idx * size + size
    return all(v.file is None or v.file.i_mmap_rwsem.writer is t
               for v in mm.vmas if v.start < hi and lo < v.end)


def make_pmd_store_check(k):
    """Store hook of PMD tables, bound to the kernel ``k`` (to resolve frame numbers)."""

    def check_pmd_store(m, t, pmdtable, idx, value) -> None:
        if pmdtable.ptl.owner is not t and pmd_range_reachable(k, pmdtable.mm, idx) \
                and not pmd_range_excluded(k, t, pmdtable.mm, idx):
            m.violation("pt.pmd-write-unlocked",
                        f"{t.name} writes {value!r} into {pmdtable!r}[{idx}] without holding "
                        f"pmd_lock {pmdtable.ptl!r}", t, pmdtable)
        old = pmdtable.entries[idx]
        if old == value:
            return
        if type(old) is TablePmd:
            table = k.pmd_table(old)
            lf = _life(table)
            mm = pmdtable.mm
            haddr = idx * k.geo.ptrs_per_pte
            if not any(s <= haddr and haddr + k.geo.ptrs_per_pte <= e
                       for s, e in mm.notifier_ranges) and pmd_range_reachable(k, mm, idx):
                m.violation("mmu.pmd-clear-unnotified",
                            f"{t.name} clears {pmdtable!r}[{idx}] (-> {table!r}) outside any "
                            "mmu_notifier invalidate range: a secondary MMU may keep walking the "
                            "table after it is freed", t, table)
            lf.state = DETACHED
            lf.linked_at = None
            lf.unlinked_from = (pmdtable, idx)
            lf.unlinked_step = len(m.trace)
            lf.dormant_uffd_wp = not any(
                VM_UFFD_WP in v.flags and v.start < haddr + k.geo.ptrs_per_pte and haddr < v.end
                for v in mm.vmas)
            if mm.find_vma(haddr) is not None and mm_walkable(mm):
                # lockless walkers (pte_offset_map*, GUP-fast) may hold it: they are RCU readers
                lf.detach_readers = m.reader_snapshot(exclude=t)
                if pmd_range_excluded(k, t, mm, idx):
                    # 6.5: with mmap_lock and i_mmap_rwsem held for write only GUP-fast (IRQs
                    # off, running this mm) can still be walking the table
                    lf.detach_readers = [(r, r.reader_seq)
                                            for r, _ in m.irq_snapshot(exclude=t, mm=mm)]
        if type(value) is TablePmd:
            table = k.pmd_table(value)
            if table is None or table.freed or table.released or \
                    life(table).state not in (ALLOCATED, DETACHED):
                state = ("freed" if table is None or table.freed or table.released
                         else life(table).state)
                m.violation("pt.populate-dead",
                            f"{t.name} links {table!r} ({state}) into {pmdtable!r}[{idx}]",
                            t, table)
            lf = _life(table)
            lf.state = LINKED
            lf.linked_at = (pmdtable, idx)
            lf.detach_readers = None
            moved_from, lf.unlinked_from = lf.unlinked_from, None
            if moved_from is not None and moved_from != (pmdtable, idx):
                move_anon_shadow(k, moved_from, (pmdtable, idx))

    return check_pmd_store


def move_anon_shadow(k, old, new) -> None:
    """A table unlinked from PMD ``old`` is linked at PMD ``new`` (both ``(pmd table, index)``):
    the private content of the anonymous pages it maps (the data oracle's shadow, what a read of
    their addresses must return) moves with it.  Kept here, by the PMD store that links the table,
    so that an implementation moving a table (move_normal_pmd()) need not keep the model's books."""
    size = k.geo.ptrs_per_pte
    (old_table, old_idx), (new_table, new_idx) = old, new
    shadow = k.oracles.data.shadow
    for i in range(size):
        value = shadow.pop((old_table.mm, old_idx * size + i), None)
        if value is not None:
            shadow[(new_table.mm, new_idx * size + i)] = value


def check_torn_store(m, t, pmdtable, slot, lo, hi) -> None:
    """A store of one 32-bit half of a PAE PMD entry leaves it holding the halves of two different
    values (the model's store hook of the halves, kernel/world.py, announces it)."""
    m.violation("pt.torn-pmd",
                f"{t.name} leaves {pmdtable!r}[{slot}] holding low half {lo!r} of "
                f"{lo.whole!r} with high half {hi!r} of {hi.whole!r}: a lockless reader "
                "can take that mix for a page table", t, pmdtable)


def check_plain_read_race(m, t, pmdp, first, second, where: str) -> None:
    """Two plain reads of a page-table entry that the compiler may merge into one load (no call
    or barrier between them) saw different values: another CPU wrote the entry in between, a
    data race whose outcome is the compiler's choice (kernel/mprotect.py pmd_none_plain_read())."""
    m.violation("pt.plain-read-race",
                f"{t.name}: {where}: two plain reads of {pmdp!r} saw {first!r}, then {second!r} "
                "(another CPU wrote the entry between them: a data race, KCSAN's report; a "
                "compiler that emits one load, as GCC 12.2 on x86-64 does, never sees the "
                "second value there)", t, None)


def check_pmd_not_table(m, t, pmdval) -> None:
    """A PMD value that names no page table is used as one (Kernel.pmd_table(): pmd_page_vaddr()):
    a torn PAE value (pt.torn-pmd), or a none or huge value (pt.not-a-table)."""
    if type(pmdval) is TornPmd:
        check_torn_read(m, t, pmdval)
    else:
        m.violation("pt.not-a-table", f"{t.name if t else 'the run'} uses {pmdval!r} as a page "
                    "table: pmd_page() of it is garbage", t, None)


def check_moved_not_table(m, t, new_pmd, pmdval) -> None:
    """mremap's move_normal_pmd() links pmd_pgtable() of the value it read from the old slot: one
    that names no table (a none PMD retract_page_tables() left) links a garbage table."""
    if type(pmdval) is not TablePmd:
        m.violation("pt.populate-dead",
                    f"{t.name} moves {pmdval!r} as a page table into {new_pmd!r}: "
                    "pmd_populate(pmd_pgtable()) of a PMD that no longer names a table links a "
                    "garbage page table (frame 0) into the new slot (CVE-2024-50066)", t, None)


def check_torn_read(m, t, value) -> None:
    """A value from a lockless two-half read that the entry never held as a whole is used as a
    page table."""
    m.violation("pt.torn-pmd",
                f"{t.name} uses {value!r} as a page table: its low half came from "
                f"{value.lo.whole!r} and its high half from {value.hi.whole!r}, so it names frame "
                f"{value.pfn} (no IPI kept the two reads from straddling a clear and a refill)",
                t, None)


def on_table_call_rcu(m, t, table) -> None:
    """call_rcu of a PTE table's rcu_head: the table is detached and empty."""
    check_table_release(m, t, table, "call_rcu")
    _life(table).state = DEFERRED


def on_page_call_rcu(m, t, page) -> None:
    """call_rcu of a shared page's rcu_head: it overlays pt_list, so the page must be off every
    list (arch/s390/mm/pgalloc.c, 8211dad62798; zoo mutant A3)."""
    if page.on_list is not None:
        m.violation("rcu.head-storage-in-use",
                    f"{t.name} queues {page.rcu_head!r} with call_rcu() while {page!r} is "
                    "still linked on a pgtable_list through the same storage (pt_list): the "
                    "list and the RCU callback list corrupt each other", t, page)


def check_list_op(m, t, page, op: str) -> None:
    """A list operation on a page's pt_list: not while its rcu_head (same storage) is queued; a
    list_add only of a page on no list."""
    if page.rcu_head.pending:
        m.violation("rcu.head-storage-in-use",
                    f"{t.name} does {op} on {page!r} while its rcu_head (which overlays pt_list) "
                    "is queued by call_rcu(): the RCU callback list is corrupted", t, page)
    if page.freed:
        m.use_after_free(t, page, op)
    if op.startswith("list_add") and page.on_list is not None:
        m.violation("pt.list-corrupt", f"{t.name} adds {page!r} to a pgtable_list it is already "
                    "on: the list is corrupted", t, page)


def check_free_again(m, t, storage) -> None:
    """The page of a page table (or a shared page of several) is freed: not a second time."""
    if storage.freed:
        m.violation("pt.double-free", f"{t.name} frees {storage!r} a second time", t, storage)


def _walk_pinned(t, k, mm, addr) -> bool:
    """Whether task ``t`` may walk ``mm``'s page tables at ``addr``: it holds mmap_lock for write
    (nothing frees tables under it), or it holds mmap_lock and ``mm`` has a VMA covering ``addr``,
    or it holds the i_mmap_rwsem of a file whose i_mmap has such a VMA (free_pgtables() takes the
    VMA out of i_mmap under that lock before freeing anything below it), or it has interrupts off
    (GUP-fast: table freeing waits for an IPI or a grace period)."""
    sem = mm.mmap_lock
    if sem.writer is t:
        return True
    if t in sem.readers and mm.find_vma(addr) is not None:
        return True
    for f in k.files:
        rw = f.i_mmap_rwsem
        if (rw.writer is t or t in rw.readers) and any(
                v.mm is mm and v.start <= addr < v.end for v in f.i_mmap):
            return True
    return t.irq > 0


def check_mm_find_pmd(m, t, k, mm, addr) -> None:
    """mm_find_pmd() walks down to the PMD of ``addr``: only with what keeps free_pgtables() off."""
    if not _walk_pinned(t, k, mm, addr):
        m.violation("pt.walk-without-vma", f"{t.name} walks {mm!r}'s page tables at {addr} without "
                    "a VMA covering it found under the lock it holds (munmap's free_pgtables() may "
                    "be freeing them)", t, mm)


def check_assert_pte_locked(k, t, mm, addr, pmdp, pte, ptl, locked) -> None:
    """powerpc DEBUG_VM's assert_pte_locked() (kernel/powerpc.py) BUGs when the pmd is not none
    but maps no table (announced after the map, ``locked`` None), or when the ptl ``ptl`` of the
    table is not locked by anyone (announced after assert_spin_locked(), ``locked`` its result)."""
    m = k.m
    if locked is None:
        if pte is None:
            m.violation("pt.assert-pte-locked", f"{t.name}: assert_pte_locked({mm!r}, {addr}): "
                        "the pmd is not none but pte_offset_map_nolock() maps no table "
                        "(BUG_ON(!pte))", t, pmdp.table)
    elif not locked:
        m.violation("pt.assert-pte-locked", f"{t.name}: assert_pte_locked({mm!r}, {addr}): "
                    f"{ptl!r}, the ptl of {pte.table!r}, is not locked by anyone "
                    "(assert_spin_locked)", t, pte.table)


def check_table_release(m, t, table, how: str) -> None:
    """A table handed to call_rcu or given back to its allocator: not already given back, not
    linked, empty."""
    if table.released or table.freed:
        m.violation("pt.double-free", f"{t.name} frees {table!r} ({how}) a second time", t, table)
    lf = life(table)
    if lf.state == LINKED:
        m.violation("pt.free-linked", f"{t.name} frees {table!r} ({how}) while a PMD still points "
                    "at it", t, table)
    if not table.is_empty():
        live = {i: e for i, e in enumerate(table.entries) if e is not None
                and not (lf.dormant_uffd_wp and e == PTE_MARKER_UFFD_WP)}
        if live and not stale_file_ptes_unreachable(t, table, how, live):
            m.violation("pt.free-nonempty", f"{t.name} frees {table!r} ({how}) with live entries "
                        f"{live}: they are lost with the table", t, table, lost_markers(live))


def lost_markers(live) -> str | None:
    """What a non-empty table's free loses, for known-violation keys ``pt.free-nonempty[WHAT]``:
    ``PTE_MARKER_<kind>`` when every live entry is a PTE marker of that one kind, else None."""
    kinds = {e.kind if type(e) is PteMarker else None for e in live.values()}
    if len(kinds) != 1 or None in kinds:
        return None
    return f"PTE_MARKER_{kinds.pop()}"


#: the allocators' immediate frees (pte_free() and the arch's own), as against call_rcu (a
#: deferred table must be empty: lockless readers may still look at it) and the mmu_gather
IMMEDIATE_FREES = ("pte_free", "pte_fragment_free", "page_table_free")


def stale_file_ptes_unreachable(t, table, how, live) -> bool:
    """6.5's collapse_pte_mapped_thp() freed its table with the file PTEs still in it, having only
    removed their rmap (and dropped their references and rss in its step 3): harmless, since it
    holds the mm's mmap_lock and the file's i_mmap_rwsem for write and pte_free()s the table at
    once, so no walker can find the stale entries (mm/khugepaged.c, 6.5).  Allowed only for an
    immediate free by the holder of the mm's mmap_lock for write, and only for present PTEs of
    file pages, whose rmap, references and rss the end-of-run accounting (acct.*) still judges;
    anonymous pages, markers and swap entries in a freed table are always lost."""
    return (how in IMMEDIATE_FREES and table.mm is not None and table.mm.mmap_lock.writer is t
            and all(pte_present(e) and not e.folio.anon for e in live.values()))


def _readers_left(m, t, table):
    readers = life(table).detach_readers
    if readers is None:
        return None
    waiting = m.still_waiting(readers, "reader")
    return tuple(r for r in waiting if r is not t) if waiting else None


def check_storage_free(m, t, storage, tables) -> None:
    """The storage of ``tables`` is freed: each was given back, and no RCU reader that could have
    read its PMD before it was unlinked is still in that read-side section."""
    for table in tables:
        if not table.released:
            m.violation("pt.free-shared-page",
                        f"{t.name} frees {storage!r} while {table!r} in it is still in use "
                        f"({life(table).state})", t, table)
        readers = _readers_left(m, t, table)
        if readers:
            m.violation("pt.reuse-before-gp",
                        f"{t.name} frees {storage!r} holding {table!r} before a grace period: "
                        f"{', '.join(r.name for r in readers)} entered an RCU read-side section "
                        "before the table was unlinked and is still in it", t, table)


def check_table_handout(m, t, old) -> None:
    """The storage of table ``old`` is handed out again as a new table."""
    if not old.released:
        m.violation("pt.double-alloc", f"{t.name} hands out the storage of {old!r} as a new page "
                    f"table while {old!r} is still in use ({life(old).state})", t, old)
    readers = _readers_left(m, t, old)
    if readers:
        m.violation("pt.reuse-before-gp",
                    f"{t.name} hands out the storage of {old!r} again before a grace period: "
                    f"{', '.join(r.name for r in readers)} entered an RCU read-side section "
                    "before the table was unlinked and is still in it", t, old)


def check_no_leaks(k) -> None:
    """End of run: every table is linked or given back; every shared page whose tables were all
    given back is freed (unless it is the mm's current fragment cache)."""
    for table in k.tables:
        if not table.released and life(table).state != LINKED:
            k.m.violation("pt.leak", f"{table!r} is {life(table).state} at the end of the run: "
                          "never freed", None, table)
    for page in k.pt_pages:
        if page.freed or any(not t.released for t in page.tables()):
            continue
        frag = page.mm.context.get("pte_frag")
        if frag is not None and frag[0] is page:
            continue  # fragments not yet handed out: freed by destroy_context() at mm teardown
        k.m.violation("pt.leak", f"{page!r}: every page table in it was freed, but the page never "
                      "was", None, page)
