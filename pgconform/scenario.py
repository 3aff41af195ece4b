"""Worlds and operations as plain data, and how to build and start them.

A :class:`WorldSpec` says which mms map which parts of a shmem file, how (shared or private,
userfaultfd-registered or not), what is in the page cache and what is faulted in before the race
starts.  An :class:`Op` is one operation a CPU performs.  Hypothesis strategies (``strategies/``)
generate both; tests and the replay command build them with :func:`build_world` and
:func:`start_op`.
"""

from __future__ import annotations

import attrs

from pgconform.implementation import Implementation, build_table
from pgconform.kernel.config import ARCHES, Geometry
from pgconform.kernel.memory import madvise_dontneed, user_access
from pgconform.kernel.mmap import vm_munmap
from pgconform.kernel.objects import VM_UFFD_MISSING
from pgconform.kernel.pagewalk import show_smaps
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.rmap import folio_referenced
from pgconform.kernel.userfaultfd import mfill_atomic_copy
from pgconform.kernel.world import Kernel
from pgconform.sim.effects import DownRead, UpRead
from pgconform.sim.machine import Machine

FILE_PAGES = 8


@attrs.frozen
class VmaSpec:
    mm: int
    start: int
    npages: int
    pgoff: int
    shared: bool = True
    uffd_missing: bool = False


@attrs.frozen
class WorldSpec:
    vmas: tuple[VmaSpec, ...]
    cached: tuple[bool, ...] = (True,) * FILE_PAGES
    #: PMD-sized folios already in the page cache, by first index
    thps: tuple[int, ...] = ()
    #: (mm, addr, write) accesses done before the race starts
    prefault: tuple[tuple[int, int, bool], ...] = ()
    #: (mm, addr): PTE tables that exist (empty) before anything is faulted in, as after a
    #: MADV_DONTNEED; faults then map even PMD-sized folios by PTE there
    tables: tuple[tuple[int, int], ...] = ()

    @property
    def nmms(self) -> int:
        return 1 + max(v.mm for v in self.vmas)


@attrs.frozen
class Op:
    """One operation: ``kind`` and its arguments (mm index, addresses, value)."""

    kind: str
    mm: int = 0
    addr: int = 0
    arg: int = 0

    def __str__(self) -> str:
        return OP_LABELS[self.kind](self)


OP_LABELS = {
    "read": lambda o: f"load mm{o.mm}@{o.addr}",
    "write": lambda o: f"store mm{o.mm}@{o.addr}",
    "dontneed": lambda o: f"madvise(mm{o.mm}@{o.addr}+{o.arg}, MADV_DONTNEED)",
    "khugepaged": lambda o: f"khugepaged(mm{o.mm}@{o.addr})",
    "madv_collapse": lambda o: f"madvise(mm{o.mm}@{o.addr}, MADV_COLLAPSE)",
    "referenced": lambda o: f"folio_referenced(shmem:{o.addr})",
    "uffd_copy": lambda o: f"UFFDIO_COPY(mm{o.mm}@{o.addr}, {o.arg})",
    "munmap": lambda o: f"munmap(mm{o.mm}: the VMA at {o.addr})",
    "smaps": lambda o: f"read /proc/mm{o.mm}/smaps @{o.addr}",
}
OP_KINDS = tuple(OP_LABELS)


def build_world(spec: WorldSpec, impl: Implementation, arch: str = "x86_64",
                machine: Machine | None = None, warm=()) -> Kernel:
    """A kernel with the world of ``spec``, prefaulted (``spec.prefault`` then ``warm``, more
    (mm, addr, write) accesses) through the model itself, so the start state is one the kernel
    could reach."""
    k = Kernel(build_table(impl, ARCHES[arch]), ARCHES[arch], Geometry(), machine)
    f = k.new_file("shmem", FILE_PAGES)
    nr = k.geo.hpage_pmd_nr
    for start in spec.thps if k.arch.thp else ():
        k.add_to_page_cache(f, start, nr)
    for index, present in enumerate(spec.cached):
        if present and index not in f.pages:
            k.add_to_page_cache(f, index)
    mms = [k.new_mm(f"mm{i}") for i in range(spec.nmms)]
    for v in spec.vmas:
        npages = min(v.npages, FILE_PAGES - v.pgoff, k.geo.task_size - v.start)
        if npages <= 0 or mms[v.mm].find_vma(v.start) is not None:
            continue
        if any(w.start < v.start + npages and v.start < w.end for w in mms[v.mm].vmas):
            continue
        k.new_vma(mms[v.mm], v.start, v.start + npages, f, v.pgoff, shared=v.shared,
                  flags={VM_UFFD_MISSING} if v.uffd_missing else ())
    for mm_i, addr in spec.tables:
        t = k.m.spawn("init", _populate_table(k, mms[mm_i], addr), "pte_alloc")
        k.m.run(t, k.m.step_bound)
    for mm_i, addr, write in (*spec.prefault, *warm):
        t = k.m.spawn("init", user_access(k, mms[mm_i], addr, write), "prefault")
        k.m.run(t, k.m.step_bound)
    k.m.tasks.clear()
    k.m.trace.clear()
    return k


def _populate_table(k: Kernel, mm, addr: int):
    """pte_alloc() under mmap_lock for a range some VMA covers (world set-up)."""
    yield DownRead(mm.mmap_lock)
    if mm.find_vma(addr) is not None:
        yield from pte_alloc(k, mm, mm.pmd_offset(addr, k.geo))
    yield UpRead(mm.mmap_lock)


#: operations run by a process in its own mm (its CPU is in mm_cpumask); the others are kernel
#: threads or walk other processes' mms (khugepaged, the rmap walk of reclaim)
USER_CONTEXT = frozenset({"read", "write", "dontneed", "madv_collapse", "uffd_copy", "munmap"})


def _access(k, mm, op):
    return user_access(k, mm, op.addr, op.kind == "write")


def _khugepaged(k, mm, op):
    if not k.arch.thp:
        return _no_thp()
    return k.impl.khugepaged_scan_mm_slot(k, mm, k.geo.haddr(op.addr))


def _madv_collapse(k, mm, op):
    if not k.arch.thp:
        return _no_thp()
    return k.impl.madvise_collapse(k, mm, k.geo.haddr(op.addr))


def _smaps(k, mm, op):
    """Another process reads mm's smaps over the PMD range of addr."""
    haddr = k.geo.haddr(op.addr)
    return show_smaps(k, mm, haddr, haddr + k.geo.hpage_pmd_nr)


def _munmap(k, mm, op):
    """The process unmaps the whole VMA it knows at addr (the model does not split VMAs); if there
    is none (already unmapped), a one-page munmap of nothing."""
    vma = mm.find_vma(op.addr)
    start, end = (vma.start, vma.end) if vma is not None else (op.addr, op.addr + 1)
    return vm_munmap(k, mm, start, end)


#: how each operation kind starts: kind -> f(k, mm, op) returning the task's generator
OP_STARTERS = {
    "read": _access,
    "write": _access,
    "dontneed": lambda k, mm, op: madvise_dontneed(k, mm, op.addr, op.addr + max(1, op.arg)),
    "khugepaged": _khugepaged,
    "madv_collapse": _madv_collapse,
    "referenced": lambda k, mm, op: folio_referenced(k, k.files[0], op.addr % FILE_PAGES),
    "uffd_copy": lambda k, mm, op: mfill_atomic_copy(k, mm, op.addr, 1000 + op.arg),
    "munmap": _munmap,
    "smaps": _smaps,
}
assert set(OP_STARTERS) == set(OP_LABELS)


def start_op(k: Kernel, lane: str, op: Op):
    """Spawn the task performing ``op`` on ``lane``."""
    mm = k.mms[op.mm % len(k.mms)]
    t = k.m.spawn(lane, OP_STARTERS[op.kind](k, mm, op), str(op))
    if op.kind in USER_CONTEXT:
        t.mm = mm
    return t


def _no_thp():
    """Without CONFIG_TRANSPARENT_HUGEPAGE there is no khugepaged, and MADV_COLLAPSE is -EINVAL."""
    return -22
    yield
