"""Kernel objects of the model: page-table pages and their entries, folios, files, VMAs and mms.

Entry values are frozen and compared by value: a PMD entry names its table by frame number
(``TablePmd.pfn``), so a stale snapshot can equal a new entry when the frame was reused (ABA), as on
real hardware.  Pointers held by tasks (:class:`PtePtr`, :class:`PmdPtr`) hold the page *object*,
so a pointer that outlives its page is caught at its next dereference.
"""

from __future__ import annotations

import attrs

from pgconform.sim.names import name_form
from pgconform.sim.physmem import Page
from pgconform.sim.sync import RcuHead, RwSemaphore, SleepLock, Spinlock

# ------------------------------------------------------------------------------------------------
# entry values


@attrs.frozen(slots=True, repr=False)
class Pte:
    """A present PTE mapping subpage ``idx`` of ``folio``."""

    folio: Folio
    idx: int
    write: bool = False
    young: bool = True
    #: arm VIVT: the L_PTE_MT_* memory-type bits rewritten to shared_pte_mask (uncached) by
    #: do_adjust_pte() when the page has a shared alias in the same mm
    uncached: bool = False
    #: _PAGE_UFFD_WP: write-protected by userfaultfd (pte_mkuffd_wp() also clears the write bit)
    uffd_wp: bool = False

    def __repr__(self) -> str:
        return (f"pte({self.folio!r}+{self.idx}{',W' if self.write else ''}"
                f"{',young' if self.young else ''}{',uncached' if self.uncached else ''}"
                f"{',uffd-wp' if self.uffd_wp else ''})")


@attrs.frozen(slots=True)
class PteMarker:
    """A non-present PTE marker (PTE_MARKER_UFFD_WP, _POISONED, _GUARD)."""

    kind: str


#: the markers of include/linux/swapops.h (6.6) the model installs
PTE_MARKER_UFFD_WP = PteMarker("UFFD_WP")
PTE_MARKER_POISONED = PteMarker("POISONED")
#: PTE_MARKER_GUARD (6.13+; on file-backed VMAs from 6.15): MADV_GUARD_INSTALL's marker, any access
#: to it is SIGSEGV (kernel/madvise_guard.py; only in a kernel version with guard regions)
PTE_MARKER_GUARD = PteMarker("GUARD")


@name_form(r"table@\d+(?:\+\d+)?")
@attrs.frozen(slots=True, repr=False)
class TablePmd:
    """A PMD entry pointing at the PTE table in frame ``pfn`` (table ``frag`` of that page where
    several tables share a page: powerpc fragments, s390 halves)."""

    pfn: int
    frag: int = 0

    def __repr__(self) -> str:
        return f"pmd(table@{self.pfn}{f'+{self.frag}' if self.frag else ''})"


@attrs.frozen(slots=True, repr=False)
class HugePmd:
    """A PMD entry mapping a PMD-sized folio (pmd_trans_huge)."""

    folio: Folio
    write: bool = False

    def __repr__(self) -> str:
        return f"pmd(huge {self.folio!r}{',W' if self.write else ''})"


@attrs.frozen(slots=True, repr=False)
class TornPmd:
    """What a two-half lockless read of a PAE PMD returns when its halves come from two different
    values: to the CPU a present table entry for frame ``pfn`` (None: not even that), which no
    table of this mm is at."""

    pfn: object
    lo: object
    hi: object

    def __repr__(self) -> str:
        return f"pmd(torn: low {self.lo.whole!r}, high {self.hi.whole!r})"


def table_pmd(table) -> TablePmd:
    """The PMD value linking ``table`` (what pmd_populate() writes)."""
    return TablePmd(table.pfn, table.slot)


@attrs.frozen(slots=True, repr=False)
class Half:
    """One 32-bit half of a PAE PMD entry: ``bits`` as the CPU compares it, and (not compared) the
    whole value whose half it is, so a value composed of halves of two writes can be told apart."""

    bits: object
    whole: object = attrs.field(default=None, eq=False)

    def __repr__(self) -> str:
        return f"{self.bits!r}"


def pmd_none(v) -> bool:
    return v is None


def pmd_trans_huge(v) -> bool:
    return type(v) is HugePmd


def pte_none(v) -> bool:
    return v is None


def pte_present(v) -> bool:
    return type(v) is Pte


# ------------------------------------------------------------------------------------------------
# page-table pages

# the PMD value linking it names the table ``table@pfn[+slot]`` (TablePmd; ``table@pfn`` for
# slot 0 of a shared page)
@name_form(r"pte_table@\d+(?:\+\d+)?\.\d+", (r"pte_table@(\d+)(\+\d+)?\.\d+", r"table@\1\2"),
           (r"pte_table@(\d+)\+0\.\d+", r"table@\1"))
@attrs.define(slots=True, eq=False, repr=False)
class PteTable(Page):
    """A PTE page table: entries, its ptlock and (a whole-page table) the rcu_head overlaying
    pt_list.  A table packed in a shared page (``page`` set, table ``slot`` of it) uses the page's
    ptlock and rcu_head.

    ``released`` means given back to the allocator (pte_free and friends); ``freed`` (of
    :class:`Page`) means its storage is gone: freed, or handed out again as another table.  For a
    whole-page table the two happen together; a powerpc fragment is released at once but its
    storage lives until the whole page goes."""

    ptl: Spinlock | None = None
    mm: object = None
    rcu_head: RcuHead | None = None
    on_call_rcu: object = None      # oracle hook: the table handed to call_rcu
    page: PtPage | None = None      # the shared page this table is carved from
    slot: int = 0
    released: bool = False
    #: opaque to the model: the table's lifecycle as the oracles track it (linked, detached,
    #: deferred...: pgconform/oracle/pagetable.py TableLife), kept here for the store hook's speed
    oracle: object = None

    def __repr__(self) -> str:
        if self.page is not None:
            return f"pte_table@{self.pfn}+{self.slot}.{self.gen}"
        return f"pte_table@{self.pfn}.{self.gen}"

    @property
    def storage(self):
        """The page (struct ptdesc) holding this table: virt_to_page()."""
        return self if self.page is None else self.page

    def is_empty(self) -> bool:
        return all(e is None for e in self.entries)


@name_form(r"pt_page@\d+\.\d+", (r"pt_page@(\d+)\.\d+", r"table@\1"))
@attrs.define(slots=True, eq=False, repr=False)
class PtPage(Page):
    """A page (struct ptdesc) carved into several PTE tables: powerpc fragments, s390 2K halves.

    Holds what the kernel keeps per page: the split ptlock (shared by its tables), the rcu_head
    (overlaying pt_list), ``frag_refcount`` (powerpc pt_frag_refcount), ``bits`` (s390: the top
    byte of _refcount, AA/PP and, in the v2 design, HH), ``active`` (PageActive) and whether it is
    linked on an mm's pgtable_list.  ``slots`` are the tables handed out from it, by position."""

    ptl: Spinlock | None = None
    mm: object = None
    rcu_head: RcuHead | None = None
    on_call_rcu: object = None
    slots: list = attrs.field(factory=list)
    frag_refcount: int = 0
    bits: int = 0
    active: bool = False
    on_list: object = None  # the list (a Python list) the page is linked on, through pt_list
    #: the world's oracle call sites (kernel/hooks.py), for the list operations on pt_list
    hooks: object = None

    def __repr__(self) -> str:
        return f"pt_page@{self.pfn}.{self.gen}"

    def tables(self) -> list:
        return [t for t in self.slots if t is not None]


@name_form(r"pmd_table\(\w+\)")
@attrs.define(slots=True, eq=False, repr=False)
class PmdTable(Page):
    """An mm's PMD table (one per mm in this geometry); ``ptl`` is pmd_lockptr()'s lock.

    With 64-bit PMDs on a 32-bit CPU (x86 PAE), ``halves`` is the page of 32-bit words the CPU
    really reads and writes (low half of entry i at 2*i, high half at 2*i+1); ``entries`` then
    holds the value those halves currently make up, for the model's locked readers and oracles."""

    ptl: Spinlock | None = None
    mm: object = None
    halves: Page | None = None

    def __repr__(self) -> str:
        return f"pmd_table({self.mm!r})"


@attrs.frozen(slots=True, repr=False)
class PmdPtr:
    """pmd_t *: slot ``idx`` of ``table``."""

    table: PmdTable
    idx: int

    def __repr__(self) -> str:
        return f"&{self.table!r}[{self.idx}]"


@attrs.frozen(slots=True, repr=False)
class PtePtr:
    """pte_t *: entry ``idx`` of ``table`` (the table the snapshot named, possibly detached)."""

    table: PteTable
    idx: int

    def __add__(self, n: int) -> PtePtr:
        return PtePtr(self.table, self.idx + n)

    def __repr__(self) -> str:
        return f"&{self.table!r}[{self.idx}]"


# ------------------------------------------------------------------------------------------------
# folios, files, VMAs, mms


# a page-cache folio's name, ``file:index[-last]`` (anonymous ones are named by their mm and
# address)
@name_form(r"\b[a-z]+:\d+(?:-\d+)?")
@attrs.define(slots=True, eq=False, repr=False)
class Folio:
    """A folio: ``nr`` pages from file ``index`` (or anonymous).  ``data`` is the content of each
    page.

    refcount counts the page-cache reference (one per folio here), one per mapping (PTE or PMD) and
    transient references held by tasks.  ``frozen`` models folio_ref_freeze(): lookups wait.
    """

    name: str
    nr: int
    index: int = 0
    mapping: object = None
    anon: bool = False
    lock: SleepLock | None = None
    refcount: int = 0
    mapcount: int = 0
    data: list = attrs.field(factory=list)
    frozen: object = None  # the task that froze the refcount, while frozen
    freed: bool = False

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class File:
    """A shmem file: its page cache (index -> folio), i_mmap rwsem and the VMAs mapping it."""

    name: str
    size: int
    i_mmap_rwsem: RwSemaphore
    pages: dict = attrs.field(factory=dict)
    i_mmap: list = attrs.field(factory=list)
    content: list = attrs.field(factory=list)  # the shadow copy of what each page must read
    #: the i_pages xa_lock, as flush_dcache_mmap_lock() takes it on arm to walk i_mmap
    i_pages_lock: Spinlock | None = None

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class AnonVma:
    name: str

    def __repr__(self) -> str:
        return self.name


VM_SHARED = "VM_SHARED"
VM_UFFD_MISSING = "VM_UFFD_MISSING"
VM_UFFD_WP = "VM_UFFD_WP"
VM_UFFD_MINOR = "VM_UFFD_MINOR"
#: VM_WRITE: new VMAs have it (world.new_vma); mprotect(PROT_READ) takes it away
VM_WRITE = "VM_WRITE"
#: VMA_MAYBE_GUARD_BIT (7.0): set atomically by MADV_GUARD_INSTALL (under the mmap read lock)
#: before it installs guard markers; retract_page_tables() leaves such VMAs alone
VMA_MAYBE_GUARD = "VMA_MAYBE_GUARD"


@attrs.define(slots=True, eq=False, repr=False)
class Vma:
    """A VMA [start, end) in pages: file-backed, mapping ``file`` from page ``pgoff``, or
    anonymous private (``file`` None: vma_is_anonymous(); ``pgoff`` is then its start address
    in pages, as mmap() sets vm_pgoff of an anonymous mapping)."""

    name: str
    mm: object
    start: int
    end: int
    pgoff: int
    file: File | None
    flags: frozenset = frozenset()
    anon_vma: AnonVma | None = None

    @property
    def shared(self) -> bool:
        return VM_SHARED in self.flags

    @property
    def anonymous(self) -> bool:
        """include/linux/mm.h: vma_is_anonymous(): no vm_ops (here: no file)."""
        return self.file is None

    def linear_page_index(self, addr: int) -> int:
        return self.pgoff + (addr - self.start)

    def __repr__(self) -> str:
        return self.name


@attrs.define(slots=True, eq=False, repr=False)
class Mm:
    """struct mm_struct: mmap_lock, page_table_lock, the PMD table, counters."""

    name: str
    mmap_lock: RwSemaphore
    page_table_lock: Spinlock
    pmd_table: PmdTable | None = None
    vmas: list = attrs.field(factory=list)
    nr_ptes: int = 0
    rss: dict = attrs.field(factory=lambda: {"MM_SHMEMPAGES": 0, "MM_ANONPAGES": 0})
    users: int = 1
    #: the process has exited: its own mm_users reference (its threads') is gone; references
    #: others hold (mmget_not_zero()) may keep the mm alive a while longer
    exited: bool = False
    #: active mmu_notifier invalidate ranges [(start, end)] (secondary MMUs must not use them)
    notifier_ranges: list = attrs.field(factory=list)
    #: mm->notifier_subscriptions: the interval notifiers (secondary MMUs) of this mm, or None
    #: (kernel/mmu_notifier.py; None keeps a range start/end one step, as mm_has_notifiers())
    notifier_subscriptions: object = None
    #: arch per-mm state (mm->context): powerpc "pte_frag"; s390 "pgtable_list", "lock"
    context: dict = attrs.field(factory=dict)

    def find_vma(self, addr: int):
        for vma in self.vmas:
            if vma.start <= addr < vma.end:
                return vma
        return None

    def pmd_offset(self, addr: int, geo) -> PmdPtr:
        return PmdPtr(self.pmd_table, geo.pmd_index(addr))

    def __repr__(self) -> str:
        return self.name
