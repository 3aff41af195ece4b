"""The kernel context ``k`` every modelled function receives, and the builders of a world.

``k.ops`` is the function table of the implementation under test (reference plus overrides),
``k.implementation`` that implementation (pgconform.implementation.Implementation),
``k.version`` the kernel version around it (kernel/version.py), ``k.arch`` the architecture
configuration in that version, ``k.geo`` the geometry, ``k.m`` the simulated machine and
``k.mem`` its physical memory.  ``k.tables`` and ``k.folios`` list everything ever allocated, so the
end-of-run oracles can account for all of it.
"""

from __future__ import annotations

from pgconform.kernel.arch.base import HALVES, ArchConfig
from pgconform.kernel.arch.x86 import X86_64
from pgconform.kernel.config import Geometry, plain_reads_form
from pgconform.kernel.hooks import Hooks
from pgconform.kernel.objects import (
    VM_SHARED,
    VM_WRITE,
    AnonVma,
    File,
    Folio,
    Half,
    Mm,
    PmdTable,
    PtePtr,
    PteTable,
    PtPage,
    TablePmd,
    Vma,
)
from pgconform.kernel.pgtable import pae_compose
from pgconform.kernel.version import V6_6, KernelVersion
from pgconform.sim.machine import Machine
from pgconform.sim.physmem import Page, PhysMem
from pgconform.sim.sync import RcuHead, RwSemaphore, SleepLock, Spinlock


def implementation_code(implementation, arch: ArchConfig) -> set:
    """The code objects of the functions ``implementation`` plugs in on ``arch`` (its overrides):
    the code the machine attributes an exception or a malformed effect to
    (Machine.implementation_code).  None (the reference alone): no code."""
    if implementation is None:
        return set()
    return {fn.__code__ for fn in implementation.overrides_on(arch.name).values()
            if hasattr(fn, "__code__")}


class Kernel:
    def __init__(self, ops, arch: ArchConfig = X86_64, geo: Geometry | None = None,
                 machine: Machine | None = None, version: KernelVersion = V6_6,
                 implementation=None):
        #: the function table the model calls through (the implementation over the reference)
        self.ops = ops
        #: the Implementation ``ops`` was built from (None: a table of the reference's alone)
        self.implementation = implementation
        self.arch = arch
        #: the kernel version of the environment (callers, other actors): kernel/version.py
        self.version = version
        #: "fused" or "split": how two plain reads of a page-table entry are compiled
        #: (kernel/config.py PLAIN_READS_FORMS, kernel/mprotect.py change_pmd_range())
        self.plain_reads = plain_reads_form()
        self.geo = geo or Geometry()
        self.m = machine or Machine()
        self.m.implementation_code = implementation_code(implementation, arch)
        self.mem = PhysMem()
        self.mms: list[Mm] = []
        self.files: list[File] = []
        self.tables: list[PteTable] = []
        self.pt_pages: list[PtPage] = []
        self.folios: list[Folio] = []
        self.anon_vmas = 0
        #: the oracle call sites (kernel/hooks.py); the oracles subscribe before anything is built
        self.hooks = Hooks()
        #: opaque to the model: the oracles' own state, set by pgconform.oracle.install()
        self.oracles = None

    # ------------------------------------------------------------------ builders

    def new_mm(self, name: str) -> Mm:
        mm = Mm(name, RwSemaphore(f"{name}.mmap_lock", cls="mmap_lock"),
                Spinlock(f"{name}.page_table_lock", cls="page_table_lock"))
        nr = self.geo.ptrs_per_pmd

        def make(pfn, gen):
            ptl = (Spinlock(f"pmd_ptl({name})", cls="ptlock") if self.arch.split_pmd_ptlocks
                   else mm.page_table_lock)
            return PmdTable(pfn, gen, "pmd", [None] * nr,
                            check_store=self.hooks.store_hook("pmd_store"), ptl=ptl, mm=mm)

        mm.pmd_table = self.mem.alloc(make)
        if self.arch.layout == HALVES:
            mm.context["lock"] = Spinlock(f"{name}.context.lock", cls="s390_context_lock")
            mm.context["pgtable_list"] = []
        if self.arch.pmd_low_high:
            # the two 32-bit halves of every PMD entry, as the CPU reads and writes them
            halves = Page(-1, 0, "pmd-halves", [Half(0)] * (2 * nr))
            halves.check_store = self._pae_halves_store(mm.pmd_table)
            mm.pmd_table.halves = halves
        self.mms.append(mm)
        return mm

    def _pae_halves_store(self, pmdtable):
        """Store hook of a PAE PMD table's 32-bit halves: keeps ``pmdtable.entries`` equal to the
        value the halves make up, announcing a torn value and each change of the whole value (the
        PMD store event, as a 64-bit store would)."""
        hooks = self.hooks

        def on_half_store(m, t, halves, i, half) -> None:
            slot = i // 2
            if type(half) is tuple:  # a 64-bit store of both halves
                lo, hi = half
            elif i % 2 == 0:
                lo, hi = half, halves.entries[i + 1]
            else:
                lo, hi = halves.entries[i - 1], half
            value, torn = pae_compose(lo, hi)
            if torn:
                hooks.pmd_torn_store(m, t, pmdtable, slot, lo, hi)
            if value != pmdtable.entries[slot]:
                hooks.pmd_store(m, t, pmdtable, slot, value)
                pmdtable.entries[slot] = value

        return on_half_store

    def new_file(self, name: str, size: int) -> File:
        f = File(name, size, RwSemaphore(f"{name}.i_mmap_rwsem", cls="i_mmap_rwsem"),
                 content=[100 * (len(self.files) + 1) + i for i in range(size)],
                 i_pages_lock=Spinlock(f"{name}.i_pages", cls="i_pages"))
        self.files.append(f)
        return f

    def new_folio(self, name: str, nr: int, index: int = 0, mapping=None, anon: bool = False,
                  data=None, locked_by=None) -> Folio:
        folio = Folio(name, nr, index, mapping, anon, SleepLock(name),
                      data=list(data) if data is not None else [0] * nr)
        if locked_by is not None:
            folio.lock.owner = locked_by
            locked_by.held.append((folio.lock, 0))
        self.folios.append(folio)
        return folio

    def add_to_page_cache(self, f: File, index: int, nr: int = 1) -> Folio:
        """Populate the page cache (world set-up): one folio of ``nr`` pages at ``index``."""
        folio = self.new_folio(f"{f.name}:{index}" + (f"-{index + nr - 1}" if nr > 1 else ""),
                               nr, index, f, data=f.content[index:index + nr])
        folio.refcount = 1
        for i in range(nr):
            f.pages[index + i] = folio
        return folio

    def new_vma(self, mm: Mm, start: int, end: int, f: File | None, pgoff: int,
                shared: bool = True, flags=()) -> Vma:
        """A VMA of ``f`` (linked into its i_mmap), or with ``f`` None an anonymous private one
        (mmap(MAP_PRIVATE | MAP_ANONYMOUS): no i_mmap, never shared)."""
        name = f"{mm.name}.vma[{start}:{end}]"
        vma = Vma(name, mm, start, end, pgoff, f,
                  frozenset(flags) | {VM_WRITE} | ({VM_SHARED} if shared and f else set()))
        mm.vmas.append(vma)
        if f is not None:
            f.i_mmap.append(vma)
        return vma

    def new_anon_vma(self) -> AnonVma:
        self.anon_vmas += 1
        return AnonVma(f"anon_vma#{self.anon_vmas}")

    # ------------------------------------------------------------------ page-table pages

    # Model-level storage operations, used by the arch allocators (pgconform.reference.arch).  They
    # keep the objects the oracles watch: which table lives where, released, freed.

    def _ptlock(self, mm: Mm, owner) -> Spinlock:
        """pagetable_pte_ctor() -> ptlock_init(): the page's split ptlock, or
        mm->page_table_lock."""
        if self.arch.split_pte_ptlocks:
            return Spinlock(f"ptl({owner!r})", cls="ptlock")
        return mm.page_table_lock

    def new_pte_table(self, mm: Mm) -> PteTable:
        """A page holding one PTE table (pagetable_alloc() + pagetable_pte_ctor()): zeroed, with its
        ptlock initialised."""
        nr = self.geo.ptrs_per_pte
        pte_store = self.hooks.store_hook("pte_store")
        table_call_rcu = self.hooks.table_call_rcu

        def make(pfn, gen):
            table = PteTable(pfn, gen, "pte", [None] * nr, check_store=pte_store, mm=mm)
            table.ptl = self._ptlock(mm, table)
            table.rcu_head = RcuHead(table)
            table.on_call_rcu = lambda m, t: table_call_rcu(m, t, table)
            return table

        table = self.mem.alloc(make)
        self.tables.append(table)
        return table

    def free_pte_table(self, m, t, table: PteTable) -> None:
        """pagetable_pte_dtor() + pagetable_free() of a whole-page table: the table is released and
        its storage (with the ptlock) freed."""
        self.hooks.table_release(m, t, table, "pte_free")
        table.released = True
        self.hooks.storage_free(m, t, table, [table])
        if self.arch.split_pte_ptlocks:
            table.ptl.alive = False
        self.mem.free(table)

    def pte_table_dtor(self, m, t, table: PteTable, how: str) -> None:
        """pagetable_pte_dtor() of a whole-page table whose page is freed later (the mmu_gather
        paths: x86 ___pte_free_tlb(), arm64 __pte_free_tlb(), 6.6): the table is given back now;
        with ALLOC_SPLIT_PTLOCKS its separately allocated ptlock is kfree'd now (ptlock_free()), an
        embedded one goes with the page in :meth:`free_pte_page`."""
        self.hooks.table_release(m, t, table, how)
        table.released = True
        if self.arch.split_pte_ptlocks and self.arch.alloc_split_ptlocks:
            table.ptl.alive = False

    def free_pte_page(self, m, t, table: PteTable) -> None:
        """pagetable_free()/free_page() of a whole-page table whose destructor already ran."""
        self.hooks.pt_page_free(m, t, table)
        self.hooks.storage_free(m, t, table, [table])
        if self.arch.split_pte_ptlocks:
            table.ptl.alive = False
        self.mem.free(table)

    def new_pt_page(self, mm: Mm) -> PtPage:
        """A page to carve ``arch.tables_per_page`` PTE tables from, ctor'd (its split ptlock)."""
        page_call_rcu = self.hooks.page_call_rcu

        def make(pfn, gen):
            page = PtPage(pfn, gen, "pt_page", mm=mm, hooks=self.hooks,
                          slots=[None] * self.arch.tables_per_page)
            page.ptl = self._ptlock(mm, page)
            page.rcu_head = RcuHead(page)
            page.on_call_rcu = lambda m, t: page_call_rcu(m, t, page)
            return page

        page = self.mem.alloc(make)
        self.pt_pages.append(page)
        return page

    def hand_out(self, m, t, page: PtPage, slot: int) -> PteTable:
        """Table ``slot`` of ``page`` becomes a new, empty PTE table.  Whatever table had that
        storage before is gone for good (a pointer still holding it is a use-after-free)."""
        old = page.slots[slot]
        if old is not None:
            self.hooks.table_handout(m, t, old)
            old.freed = True
        table = PteTable(page.pfn, page.gen, "pte", [None] * self.geo.ptrs_per_pte,
                         check_store=self.hooks.store_hook("pte_store"), mm=page.mm,
                         page=page, slot=slot,
                         ptl=page.ptl)
        page.slots[slot] = table
        self.tables.append(table)
        return table

    def release_table(self, m, t, table: PteTable, how: str) -> None:
        """A table packed in a shared page is given back (its storage stays with the page)."""
        self.hooks.table_release(m, t, table, how)
        table.released = True

    def free_pt_page(self, m, t, page: PtPage) -> None:
        """pagetable_pte_dtor() + pagetable_free() of a shared page: every table in it goes, with
        the page's ptlock."""
        self.hooks.pt_page_free(m, t, page)
        tables = page.tables()
        self.hooks.storage_free(m, t, page, tables)
        for table in tables:
            table.freed = True
        if self.arch.split_pte_ptlocks:
            page.ptl.alive = False
        self.mem.free(page)

    # ------------------------------------------------------------------ PMD values

    def pmd_table(self, pmdval) -> PteTable | None:
        """The PTE table a table PMD value names (pmd_page_vaddr()): the frame's table, or the
        table at that position of a shared page."""
        if type(pmdval) is not TablePmd:
            self.hooks.pmd_not_table(self.m, self.m.current, pmdval)
        occ = self.mem.frames[pmdval.pfn]
        if type(occ) is PtPage:
            return occ.slots[pmdval.frag]
        return occ

    def pmd_pgtable(self, pmdval):
        """pmd_pgtable(): pgtable_t of the table a PMD value names: the page (generic) or the
        table's address (pte_t *, unsigned long *: sparc64, powerpc, s390)."""
        table = self.pmd_table(pmdval)
        return table if self.arch.pgtable_is_page else PtePtr(table, 0)
