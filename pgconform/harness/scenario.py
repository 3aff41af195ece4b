"""Worlds and operations as plain data, and how to build and start them.

A :class:`WorldSpec` says which mms map which parts of a shmem file, how (shared or private,
userfaultfd-registered or not), what is in the page cache and what is faulted in before the race
starts.  An :class:`Op` is one operation a CPU performs.  Hypothesis strategies (``strategies/``)
generate both; tests and the replay command build them with :func:`build_world` and
:func:`start_op`.
"""

from __future__ import annotations

import attrs

from pgconform.implementation import Implementation
from pgconform.kernel.config import Geometry
from pgconform.kernel.fork import do_fork
from pgconform.kernel.gup import gup_and_release
from pgconform.kernel.madvise_guard import madvise_guard_install, madvise_guard_remove
from pgconform.kernel.memory import madvise_dontneed, user_access
from pgconform.kernel.mmap import do_exit, vm_munmap
from pgconform.kernel.mprotect import do_mprotect_pkey
from pgconform.kernel.mremap import sys_mremap
from pgconform.kernel.objects import VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP
from pgconform.kernel.pagewalk import show_smaps
from pgconform.kernel.pgalloc import pte_alloc
from pgconform.kernel.rmap import folio_referenced
from pgconform.kernel.secondary_mmu import (
    device_access,
    mmu_interval_notifier_insert,
    secondary_mmus,
)
from pgconform.kernel.truncate import shmem_fallocate_punch_hole
from pgconform.kernel.userfaultfd import (
    REGISTER_MODES,
    UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
    mfill_atomic_continue,
    mfill_atomic_copy,
    mfill_atomic_poison,
    move_pages,
    mwriteprotect_range,
    userfaultfd_register,
    userfaultfd_unregister,
)
from pgconform.kernel.version import VERSIONS
from pgconform.kernel.world import Kernel
from pgconform.oracle import install as install_oracles
from pgconform.registry import function_table
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
    "uffd_register": lambda o: f"UFFDIO_REGISTER(mm{o.mm}: the VMA at {o.addr}, "
                               f"{'|'.join(m[8:] for m in sorted(_register_mode(o)))})"
                               f"{' + UFFDIO_WRITEPROTECT(the VMA)' if _register_wp_all(o) else ''}",
    "uffd_unregister": lambda o: f"UFFDIO_UNREGISTER(mm{o.mm}: the VMA at {o.addr})",
    "uffd_writeprotect": lambda o: f"UFFDIO_WRITEPROTECT(mm{o.mm}@{o.addr}+{o.arg}, "
                                   f"{'WP' if _wp_protect(o) else 'unprotect'})",
    "uffd_continue": lambda o: f"UFFDIO_CONTINUE(mm{o.mm}@{o.addr})",
    "mprotect": lambda o: f"mprotect(mm{o.mm}: the VMA at {o.addr}, "
                          f"{'PROT_READ' if o.arg % 2 else 'PROT_READ|PROT_WRITE'})",
    "uffd_poison": lambda o: f"UFFDIO_POISON(mm{o.mm}@{o.addr})",
    "gup_fast": lambda o: f"get_user_pages_fast(mm{o.mm}@{o.addr}, {_gup_nr(o)})",
    "gup": lambda o: f"get_user_pages(mm{o.mm}@{o.addr}, {_gup_nr(o)})",
    "device": lambda o: f"device DMA read mm{o.mm}@{o.addr}",
    "mremap": lambda o: f"mremap(mm{o.mm}: the VMA at {o.addr}, MREMAP_FIXED, free range #{o.arg})",
    "fork": lambda o: f"fork(mm{o.mm})",
    "exit": lambda o: f"exit(mm{o.mm})",
    "punch_hole": lambda o: f"fallocate(shmem, PUNCH_HOLE, {o.addr % FILE_PAGES}, +{o.arg})",
    # 7.0 (kernel/madvise_guard.py; -EINVAL in 6.6).  New kinds go at the end: runs name their
    # kinds by a bitmask over OP_KINDS
    "guard_install": lambda o: f"madvise(mm{o.mm}@{o.addr}+{max(1, o.arg)}, MADV_GUARD_INSTALL)",
    "guard_remove": lambda o: f"madvise(mm{o.mm}@{o.addr}+{max(1, o.arg)}, MADV_GUARD_REMOVE)",
    # 7.0 (6.8+; -EINVAL in 6.6): one page from addr to the address _move_dst() says
    "uffd_move": lambda o: f"UFFDIO_MOVE(mm{o.mm}: {o.addr} -> {_move_dst(o)}"
                           f"{', ALLOW_SRC_HOLES' if _move_mode(o) else ''})",
}
#: every operation kind, in the order of the bitmask by which runs name their swarm subset of
#: kinds: OP_LABELS order, except that UFFDIO_POISON, MADV_GUARD_INSTALL and MADV_GUARD_REMOVE
#: (once left to deterministic tests) take the last bits, so that the bits of stored runs keep
#: meaning what they meant.  The real bugs of the versions there (6.6: poison markers lost to
#: retract_page_tables(); 7.0: guard markers put into the table try_collapse_pte_mapped_thp()
#: emptied, guard install over uffd-wp markers never finishing) are declared known violations,
#: scoped to where they happen (pgconform/reference/__init__.py, pgconform/versions/v7_0.py), so
#: that the same clause anywhere else still fails
LATE_KINDS = ("uffd_poison", "guard_install", "guard_remove")
OP_KINDS = tuple(k for k in OP_LABELS if k not in LATE_KINDS) + LATE_KINDS
#: operation kinds only some kernel versions have: kind -> the KernelVersion flag
KIND_NEEDS = {"guard_install": "guard_regions", "guard_remove": "guard_regions",
              "uffd_move": "uffd_move"}


def op_kinds_for(version) -> tuple[str, ...]:
    """The operation kinds a kernel version (kernel/version.py) has, in OP_KINDS order."""
    return tuple(k for k in OP_KINDS if k not in KIND_NEEDS or getattr(version, KIND_NEEDS[k]))


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


#: operations run by a process in its own mm (its CPU is in mm_cpumask); the others are kernel
#: threads or walk other processes' mms (khugepaged, the rmap walk of reclaim)
USER_CONTEXT = frozenset({"read", "write", "dontneed", "madv_collapse", "uffd_copy", "munmap",
                          "uffd_register", "uffd_unregister", "uffd_writeprotect",
                          "uffd_continue", "mprotect", "uffd_poison",
                          "gup_fast", "gup", "mremap", "fork", "exit", "guard_install",
                          "guard_remove", "uffd_move"})


def _access(k, mm, op):
    return user_access(k, mm, op.addr, op.kind == "write")


def _khugepaged(k, mm, op):
    if not k.arch.thp:
        return _no_thp()
    return k.ops.khugepaged_scan_mm_slot(k, mm, k.geo.haddr(op.addr))


def _madv_collapse(k, mm, op):
    if not k.arch.thp:
        return _no_thp()
    haddr = k.geo.haddr(op.addr)
    return k.ops.madvise_collapse(k, mm, haddr, haddr + k.geo.hpage_pmd_nr)


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


def _gup_nr(op) -> int:
    """Pages a GUP operation asks for: 1 or 2 (the second may be in the next PMD range)."""
    return 1 + (op.arg - 1) % 2


def _gup(k, mm, op, fast):
    """The process gets (FOLL_GET) 1 or 2 pages at addr, uses them and puts them."""
    return gup_and_release(k, mm, op.addr, min(_gup_nr(op), k.geo.task_size - op.addr), fast)


def _device(k, mm, op):
    """mm's device reads addr through its secondary MMU (-ENODEV in a world without one)."""
    smmus = secondary_mmus(mm)
    if not smmus:
        return _no_device()
    return device_access(k, smmus[0], op.addr)


def _no_device():
    return -19
    yield


def _register_mode(op):
    """UFFDIO_REGISTER's mode: WP, MINOR, MISSING|WP or MISSING, by the argument."""
    return REGISTER_MODES[op.arg % len(REGISTER_MODES)]


def _register_wp_all(op) -> bool:
    """A monitor that registers for WP often write-protects the whole VMA at once (a live snapshot,
    CRIU): arguments above HPAGE_PMD_NR do both."""
    return VM_UFFD_WP in _register_mode(op) and op.arg > 4


def _uffd_register(k, mm, op):
    """UFFDIO_REGISTER of the VMA at addr, then (see _register_wp_all()) UFFDIO_WRITEPROTECT of
    the range userspace knows it has (the VMA's, as it was when the operation started)."""
    mode = _register_mode(op)
    if not _register_wp_all(op):
        return userfaultfd_register(k, mm, op.addr, mode)
    vma = mm.find_vma(op.addr)
    start, end = (vma.start, vma.end) if vma is not None else (op.addr, op.addr + 1)
    return _register_then_protect(k, mm, op.addr, mode, start, end)


def _register_then_protect(k, mm, addr, mode, start, end):
    ret = yield from userfaultfd_register(k, mm, addr, mode)
    if ret != 0:
        return ret
    return (yield from mwriteprotect_range(k, mm, start, end - start, True))


def _wp_protect(op) -> bool:
    """UFFDIO_WRITEPROTECT protects ``arg`` pages, except for arguments that are multiples of 3,
    which unprotect."""
    return op.arg % 3 != 0


def _mprotect(k, mm, op):
    """mprotect() of the whole VMA at addr: PROT_READ for an odd argument, else read-write."""
    vma = mm.find_vma(op.addr)
    start, end = (vma.start, vma.end) if vma is not None else (op.addr, op.addr + 1)
    return do_mprotect_pkey(k, mm, start, end, op.arg % 2 == 0)


def _move_dst(op) -> int:
    """UFFDIO_MOVE's destination: the address ``arg`` (modulo TASK_SIZE, 16 pages)."""
    return op.arg % 16


def _move_mode(op) -> int:
    """UFFDIO_MOVE's mode: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES for arguments from 16 to 31."""
    return UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES if op.arg // 16 % 2 else 0


def _uffd_move(k, mm, op):
    """UFFDIO_MOVE of one page from addr to _move_dst(): -EINVAL where the kernel has no such
    ioctl (6.6: userfaultfd_ioctl() of an unknown command)."""
    if not k.version.uffd_move:
        return _einval()
    return move_pages(k, mm, _move_dst(op), op.addr, 1, _move_mode(op))


def _einval():
    return -22
    yield


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
    "uffd_register": _uffd_register,
    "uffd_unregister": lambda k, mm, op: userfaultfd_unregister(k, mm, op.addr),
    "uffd_writeprotect": lambda k, mm, op: mwriteprotect_range(k, mm, op.addr, max(1, op.arg),
                                                               _wp_protect(op)),
    "uffd_continue": lambda k, mm, op: mfill_atomic_continue(k, mm, op.addr),
    "mprotect": _mprotect,
    "uffd_poison": lambda k, mm, op: mfill_atomic_poison(k, mm, op.addr),
    "gup_fast": lambda k, mm, op: _gup(k, mm, op, True),
    "gup": lambda k, mm, op: _gup(k, mm, op, False),
    "device": _device,
    "mremap": lambda k, mm, op: sys_mremap(k, mm, op.addr, op.arg),
    "fork": lambda k, mm, op: do_fork(k, mm),
    "exit": lambda k, mm, op: do_exit(k, mm),
    "punch_hole": lambda k, mm, op: shmem_fallocate_punch_hole(k, k.files[0], op.addr % FILE_PAGES,
                                                               max(1, op.arg)),
    "guard_install": lambda k, mm, op: madvise_guard_install(k, mm, op.addr,
                                                             op.addr + max(1, op.arg)),
    "guard_remove": lambda k, mm, op: madvise_guard_remove(k, mm, op.addr,
                                                           op.addr + max(1, op.arg)),
    "uffd_move": _uffd_move,
}
assert set(OP_STARTERS) == set(OP_LABELS)


def start_op(k: Kernel, lane: str, op: Op):
    """Spawn the task performing ``op`` on ``lane``."""
    mm = k.mms[op.mm % len(k.mms)]
    if op.kind in USER_CONTEXT and mm.exited:
        # the process has exited (or is exiting): it runs nothing in its mm any more
        t = k.m.spawn(lane, _exited(), str(op))
        return t
    t = k.m.spawn(lane, OP_STARTERS[op.kind](k, mm, op), str(op))
    if op.kind in USER_CONTEXT:
        t.mm = mm
    return t


def _exited():
    """An operation of a process that has exited: -ESRCH, nothing touched."""
    return -3
    yield


def _no_thp():
    """Without CONFIG_TRANSPARENT_HUGEPAGE there is no khugepaged, and MADV_COLLAPSE is -EINVAL."""
    return -22
    yield
