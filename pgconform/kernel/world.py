"""The kernel context ``k`` every modelled function receives, and the builders of a world.

``k.impl`` is the function table of the implementation under test (reference plus overrides),
``k.arch`` the architecture configuration, ``k.geo`` the geometry, ``k.m`` the simulated machine and
``k.mem`` its physical memory.  ``k.tables`` and ``k.folios`` list everything ever allocated, so the
end-of-run oracles can account for all of it.
"""

from __future__ import annotations

from pgconform.kernel.config import X86_64, ArchConfig, Geometry
from pgconform.kernel.objects import VM_SHARED, AnonVma, File, Folio, Mm, PmdTable, PteTable, Vma
from pgconform.oracle.pagetable import check_pte_store, make_pmd_store_check, on_table_call_rcu
from pgconform.sim.machine import Machine
from pgconform.sim.memory import PhysMem
from pgconform.sim.sync import RcuHead, RwSemaphore, SleepLock, Spinlock


def implementation_code(table) -> set:
    """The code objects of the functions in ``table`` that are not the reference's."""
    from pgconform.reference import REFERENCE_FUNCTIONS

    codes = set()
    for name, fn in vars(table).items():
        if fn is not REFERENCE_FUNCTIONS.get(name):
            code = getattr(fn, "__code__", None)
            if code is not None:
                codes.add(code)
    return codes


class Kernel:
    def __init__(self, impl, arch: ArchConfig = X86_64, geo: Geometry | None = None,
                 machine: Machine | None = None):
        self.impl = impl
        self.arch = arch
        self.geo = geo or Geometry()
        self.m = machine or Machine()
        self.m.implementation_code = implementation_code(impl)
        self.mem = PhysMem()
        self.mms: list[Mm] = []
        self.files: list[File] = []
        self.tables: list[PteTable] = []
        self.folios: list[Folio] = []
        self.anon_vmas = 0
        #: shadow of private (COW) content: (mm, addr) -> value a read must return
        self.anon_shadow: dict = {}
        self._pmd_store_check = make_pmd_store_check(self)

    # ------------------------------------------------------------------ builders

    def new_mm(self, name: str) -> Mm:
        mm = Mm(name, RwSemaphore(f"{name}.mmap_lock", cls="mmap_lock"),
                Spinlock(f"{name}.page_table_lock", cls="page_table_lock"))
        nr = self.geo.ptrs_per_pmd

        def make(pfn, gen):
            ptl = (Spinlock(f"pmd_ptl({name})", cls="ptlock") if self.arch.split_pmd_ptlocks
                   else mm.page_table_lock)
            return PmdTable(pfn, gen, "pmd", [None] * nr, check_store=self._pmd_store_check,
                            ptl=ptl, mm=mm)

        mm.pmd_table = self.mem.alloc(make)
        self.mms.append(mm)
        return mm

    def new_file(self, name: str, size: int) -> File:
        f = File(name, size, RwSemaphore(f"{name}.i_mmap_rwsem", cls="i_mmap_rwsem"),
                 content=[100 * (len(self.files) + 1) + i for i in range(size)])
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

    def new_vma(self, mm: Mm, start: int, end: int, f: File, pgoff: int, shared: bool = True,
                flags=()) -> Vma:
        name = f"{mm.name}.vma[{start}:{end}]"
        vma = Vma(name, mm, start, end, pgoff, f, frozenset(flags) | ({VM_SHARED} if shared else set()))
        mm.vmas.append(vma)
        f.i_mmap.append(vma)
        return vma

    def new_anon_vma(self) -> AnonVma:
        self.anon_vmas += 1
        return AnonVma(f"anon_vma#{self.anon_vmas}")

    # ------------------------------------------------------------------ page-table pages

    def new_pte_table(self, mm: Mm) -> PteTable:
        """pte_alloc_one() + pagetable_pte_ctor(): a zeroed table with its ptlock initialised."""
        nr = self.geo.ptrs_per_pte

        def make(pfn, gen):
            table = PteTable(pfn, gen, "pte", [None] * nr, check_store=check_pte_store, mm=mm)
            table.ptl = (Spinlock(f"ptl({table!r})", cls="ptlock") if self.arch.split_pte_ptlocks
                         else mm.page_table_lock)
            table.rcu_head = RcuHead(table)
            table.on_call_rcu = on_table_call_rcu(table)
            return table

        table = self.mem.alloc(make)
        self.tables.append(table)
        return table

    def free_pte_table(self, m, t, table: PteTable) -> None:
        """pagetable_pte_dtor() + pagetable_free(): the ptlock goes with the page."""
        from pgconform.oracle.pagetable import check_table_release

        check_table_release(m, t, table, "pte_free")
        if self.arch.split_pte_ptlocks:
            table.ptl.alive = False
        self.mem.free(table)
