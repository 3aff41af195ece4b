"""Worlds and operations as plain data, and how to build and start them.

A :class:`WorldSpec` says which mms map which parts of a shmem file, how (shared or private,
userfaultfd-registered or not), what is in the page cache and what is faulted in before the race
starts.  An :class:`Op` is one operation a CPU performs, of one of the kinds of
:mod:`pgconform.harness.operations`.  Hypothesis strategies (``strategies/``)
generate both; tests and the replay command build them with :func:`build_world` and
:func:`start_op`.
"""

from __future__ import annotations

import attrs

from pgconform.harness.operations import FILE_PAGES, KINDS, OP_KINDS, Op, op_kinds_for
from pgconform.implementation import Implementation
from pgconform.kernel.config import Geometry
from pgconform.kernel.memory import user_access
from pgconform.kernel.objects import VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.secondary_mmu import mmu_interval_notifier_insert
from pgconform.kernel.userfaultfd import mwriteprotect_range
from pgconform.kernel.version import VERSIONS
from pgconform.kernel.world import Kernel
from pgconform.oracle import install as install_oracles
from pgconform.registry import function_table
from pgconform.sim.effects import DownRead, UpRead
from pgconform.sim.machine import Machine

#: Op, the operation kinds and FILE_PAGES live in pgconform.harness.operations; they are named
#: here too, where worlds and operations meet
__all__ = ["FILE_PAGES", "KINDS", "OP_KINDS", "Op", "VmaSpec", "WorldSpec", "build_world",
           "op_kinds_for", "start_op"]


@attrs.frozen
class VmaSpec:
    mm: int
    start: int
    npages: int
    pgoff: int
    shared: bool = True
    uffd_missing: bool = False
    #: also registered in uffd-wp and/or minor mode (dropped where the arch lacks the mode)
    uffd_wp: bool = False
    uffd_minor: bool = False
    #: an anonymous private VMA (mmap(MAP_PRIVATE | MAP_ANONYMOUS)) instead of a mapping of the
    #: file: ``pgoff`` and ``shared`` are ignored, and its userfaultfd registration (MISSING only:
    #: WP and MINOR are refused on anonymous VMAs, kernel/userfaultfd.py) is done after the
    #: prefault, as a program that fills its heap and then hands it to a monitor
    anon: bool = False


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
    #: (mm, addr, npages): UFFDIO_WRITEPROTECT done before the race starts (markers installed)
    writeprotect: tuple[tuple[int, int, int], ...] = ()
    #: every mm has a secondary MMU (an mmu_notifier interval subscriber: kernel/secondary_mmu.py)
    #: registered from the start; "device" operations use it
    secondary_mmu: bool = False

    @property
    def nmms(self) -> int:
        return 1 + max(v.mm for v in self.vmas)


def build_world(spec: WorldSpec, impl: Implementation, arch: str = "x86_64",
                machine: Machine | None = None, warm=(), tolerated=None, hits=None) -> Kernel:
    """A kernel with the world of ``spec``, prefaulted (``spec.prefault`` then ``warm``, more
    (mm, addr, write) accesses) through the model itself, so the start state is one the kernel
    could reach.  Violations of the implementation's known violations and of the ``tolerated``
    clauses (a known-failures file: clause -> reason) are counted in ``hits`` (a dict shared
    across runs, if given), not raised."""
    version = VERSIONS[impl.kernel]
    config = version.arch(arch)
    k = Kernel(function_table(impl, config), config, Geometry(), machine, version,
               implementation=impl)
    install_oracles(k)
    k.m.tolerated = {**impl.known_violations_on(arch), **(tolerated or {})}
    k.m.consequences = impl.known_consequences
    k.m.tolerating = set()
    if hits is not None:
        k.m.tolerated_hits = hits
    f = k.new_file("shmem", FILE_PAGES)
    anon_uffd = []
    nr = k.geo.hpage_pmd_nr
    for start in spec.thps if k.arch.thp else ():
        k.add_to_page_cache(f, start, nr)
    for index, present in enumerate(spec.cached):
        if present and index not in f.pages:
            k.add_to_page_cache(f, index)
    mms = [k.new_mm(f"mm{i}") for i in range(spec.nmms)]
    if spec.secondary_mmu:
        for mm in mms:
            mmu_interval_notifier_insert(k, mm)
    for v in spec.vmas:
        npages = min(v.npages, k.geo.task_size - v.start)
        if not v.anon:
            npages = min(npages, FILE_PAGES - v.pgoff)
        if npages <= 0 or mms[v.mm].find_vma(v.start) is not None:
            continue
        if any(w.start < v.start + npages and v.start < w.end for w in mms[v.mm].vmas):
            continue
        flags = {VM_UFFD_MISSING} if v.uffd_missing else set()
        if v.uffd_wp and k.arch.uffd_wp:
            flags.add(VM_UFFD_WP)
        if v.uffd_minor and k.arch.uffd_minor:
            flags.add(VM_UFFD_MINOR)
        if v.anon:
            vma = k.new_vma(mms[v.mm], v.start, v.start + npages, None, v.start, shared=False)
            if v.uffd_missing:
                anon_uffd.append(vma)
            continue
        k.new_vma(mms[v.mm], v.start, v.start + npages, f, v.pgoff, shared=v.shared, flags=flags)
    for mm_i, addr in spec.tables:
        _set_up(k, _populate_table(k, mms[mm_i], addr), "pte_alloc")
    for mm_i, addr, write in (*spec.prefault, *warm):
        _set_up(k, user_access(k, mms[mm_i], addr, write), "prefault")
    for vma in anon_uffd:
        vma.flags = vma.flags | {VM_UFFD_MISSING}
    for mm_i, addr, npages in spec.writeprotect:
        _set_up(k, mwriteprotect_range(k, mms[mm_i], addr, npages, True), "wp")
    k.m.tasks.clear()
    k.m.trace.clear()
    return k


def _set_up(k: Kernel, gen, label: str) -> None:
    """Run one step of the world's set-up alone to its end: it must finish (an implementation
    that livelocks or blocks here is judged as in any run, not left half done in the world)."""
    m = k.m
    t = m.spawn("init", gen, label)
    m.run(t, m.step_bound)
    if not t.done:
        m.check_deadlock()
        m.step(t)  # past the step bound: sched.no-progress


def _populate_table(k: Kernel, mm, addr: int):
    """pte_alloc() under mmap_lock for a range some VMA covers (world set-up)."""
    yield DownRead(mm.mmap_lock)
    if mm.find_vma(addr) is not None:
        yield from pte_alloc(k, mm, mm.pmd_offset(addr, k.geo))
    yield UpRead(mm.mmap_lock)


def start_op(k: Kernel, lane: str, op: Op):
    """Spawn the task performing ``op`` on ``lane``."""
    kind = KINDS[op.kind]
    mm = k.mms[op.mm % len(k.mms)]
    if kind.user_context and mm.exited:
        # the process has exited (or is exiting): it runs nothing in its mm any more
        return k.m.spawn(lane, _exited(), str(op))
    t = k.m.spawn(lane, kind.start(k, mm, op), str(op))
    if kind.user_context:
        t.mm = mm
    return t


def _exited():
    """An operation of a process that has exited: -ESRCH, nothing touched."""
    return -3
    yield

