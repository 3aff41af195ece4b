"""The operation kinds: what a CPU of a conformance run can do, one :class:`OpKind` record each.

A record says everything the harness needs of a kind: how an operation of it starts (the task's
generator), how the race diagram names it, whether a process runs it in its own mm, which kernel
versions have it, whether it frees page tables, and which arguments and addresses the exhaustive
sweep tries it with.  Everything else derives from :data:`OPERATIONS`: the Hypothesis draws
(``pgconform/strategies``), the machines' swarm bitmask and first operation
(``harness/machines.py``), the sweep's pairs (``harness/sweep.py``), :func:`start_op
<pgconform.harness.scenario.start_op>`, and the bench's workload.

Adding a kind is adding one record at the end of :data:`OPERATIONS` (plus its tests): a run names
its swarm subset of kinds by a bitmask over this tuple, so a record's position is what the bits
of stored runs and replay strings mean.

The model's addresses are page numbers (geometry: 4 PTEs per table, 16 pages of address space);
:func:`vaddr` is the user virtual address of one, as the printed Hypothesis program shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from pgconform.kernel.config import Geometry
from pgconform.kernel.fork import do_fork
from pgconform.kernel.gup import gup_and_release
from pgconform.kernel.madvise_guard import madvise_guard_install, madvise_guard_remove
from pgconform.kernel.memory import madvise_dontneed, user_access
from pgconform.kernel.mmap import do_exit, vm_munmap
from pgconform.kernel.mprotect import do_mprotect_pkey
from pgconform.kernel.mremap import sys_mremap
from pgconform.kernel.objects import VM_UFFD_WP
from pgconform.kernel.pagewalk import show_smaps
from pgconform.kernel.rmap import folio_referenced
from pgconform.kernel.secondary_mmu import device_access, secondary_mmus
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

#: pages of the shmem file every world maps (page-cache indices 0..FILE_PAGES-1)
FILE_PAGES = 8
#: the model's address n is the page at n << PAGE_SHIFT (4 KiB pages)
PAGE_SHIFT = 12
GEO = Geometry()


def vaddr(addr: int) -> str:
    """The user virtual address of the model's address (a page number), in hex."""
    return f"{addr << PAGE_SHIFT:#x}"


@attrs.frozen
class Op:
    """One operation: ``kind`` (an :class:`OpKind`'s name) and its arguments (mm index, address,
    value)."""

    kind: str
    mm: int = 0
    addr: int = 0
    arg: int = 0

    def __str__(self) -> str:
        return KINDS[self.kind].label(self)


@attrs.frozen
class OpKind:
    """One kind of operation."""

    name: str
    #: f(k, mm, op) -> the generator of the task performing ``op`` in ``mm``
    start: Callable[[Any, Any, Op], Any]
    #: f(op) -> how the race diagram and the verdict name an operation of this kind
    label: Callable[[Op], str]
    #: run by a process in its own mm (its CPU is in mm_cpumask; -ESRCH once the process has
    #: exited); else a kernel thread or a walk of other processes' mms (khugepaged, the rmap walk
    #: of reclaim, another process reading smaps)
    user_context: bool = True
    #: the :class:`~pgconform.kernel.version.KernelVersion` flag of the versions that have it
    #: (None: every version); a version without it draws and sweeps no operation of this kind
    needs: str | None = None
    #: frees page tables (the protocol under test): True in every version, or the KernelVersion
    #: flag of the versions where it does (MADV_DONTNEED's PT reclaim).  Most machine runs start
    #: with a freer, and the sweep pairs every freer with every kind
    frees: bool | str = False
    #: the argument it frees a PMD range's page table with (MADV_DONTNEED: the range's length)
    freer_arg: int = 1
    #: the arguments the sweep tries it with (the argument is a value to store, a length, a mode
    #: or a destination, as the kind says: see its label)
    sweep_args: tuple[int, ...] = (1, 6)
    #: the addresses the sweep tries it at (the sweep worlds' operations meet in PMD range [4, 8))
    sweep_addrs: tuple[int, ...] = (5,)


# ------------------------------------------------------------------------------------------------
# how the kinds start and how they are named


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


def _no_thp():
    """Without CONFIG_TRANSPARENT_HUGEPAGE there is no khugepaged, and MADV_COLLAPSE is -EINVAL."""
    return -22
    yield


def _smaps(k, mm, op):
    """Another process reads mm's smaps over the PMD range of addr."""
    haddr = k.geo.haddr(op.addr)
    return show_smaps(k, mm, haddr, haddr + k.geo.hpage_pmd_nr)


def _vma_range(mm, addr: int) -> tuple[int, int]:
    """The range of the VMA the process knows at addr (the model does not split VMAs); if there
    is none (already unmapped), the one page at addr."""
    vma = mm.find_vma(addr)
    return (vma.start, vma.end) if vma is not None else (addr, addr + 1)


def _munmap(k, mm, op):
    """The process unmaps the whole VMA it knows at addr."""
    return vm_munmap(k, mm, *_vma_range(mm, op.addr))


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
    start, end = _vma_range(mm, op.addr)
    return _register_then_protect(k, mm, op.addr, mode, start, end)


def _register_then_protect(k, mm, addr, mode, start, end):
    ret = yield from userfaultfd_register(k, mm, addr, mode)
    if ret != 0:
        return ret
    return (yield from mwriteprotect_range(k, mm, start, end - start, True))


def _register_label(o) -> str:
    modes = "|".join(m[8:] for m in sorted(_register_mode(o)))
    wp_all = " + UFFDIO_WRITEPROTECT(the VMA)" if _register_wp_all(o) else ""
    return f"UFFDIO_REGISTER(mm{o.mm}: the VMA at {o.addr}, {modes}){wp_all}"


def _wp_protect(op) -> bool:
    """UFFDIO_WRITEPROTECT protects ``arg`` pages, except for arguments that are multiples of 3,
    which unprotect."""
    return op.arg % 3 != 0


def _mprotect(k, mm, op):
    """mprotect() of the whole VMA at addr: PROT_READ for an odd argument, else read-write."""
    start, end = _vma_range(mm, op.addr)
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


def _guard(install: bool):
    fn = madvise_guard_install if install else madvise_guard_remove
    return lambda k, mm, op: fn(k, mm, op.addr, op.addr + max(1, op.arg))


# ------------------------------------------------------------------------------------------------
# the registry

#: every operation kind, in the order of the bitmask by which runs name their swarm subset of
#: kinds: new kinds go at the end, so that the bits of stored runs keep meaning what they meant.
#: (UFFDIO_POISON, MADV_GUARD_INSTALL and MADV_GUARD_REMOVE, once left to deterministic tests,
#: took the last bits when they joined the mix.  The real bugs of the versions there (6.6: poison
#: markers lost to retract_page_tables(); 7.0: guard markers put into the table
#: try_collapse_pte_mapped_thp() emptied, guard install over uffd-wp markers never finishing) are
#: declared known violations, scoped to where they happen (pgconform/reference/__init__.py,
#: pgconform/versions/v7_0.py), so that the same clause anywhere else still fails.)
OPERATIONS: tuple[OpKind, ...] = (
    OpKind("read", _access, lambda o: f"load mm{o.mm}@{o.addr}"),
    OpKind("write", _access, lambda o: f"store mm{o.mm}@{o.addr}"),
    OpKind("dontneed",
           lambda k, mm, op: madvise_dontneed(k, mm, op.addr, op.addr + max(1, op.arg)),
           lambda o: f"madvise(mm{o.mm}@{o.addr}+{o.arg}, MADV_DONTNEED)",
           # 6.14+: MADV_DONTNEED of a whole PMD range frees its PTE table too
           frees="pt_reclaim", freer_arg=GEO.hpage_pmd_nr),
    OpKind("khugepaged", _khugepaged, lambda o: f"khugepaged(mm{o.mm}@{o.addr})",
           user_context=False, frees=True),
    OpKind("madv_collapse", _madv_collapse,
           lambda o: f"madvise(mm{o.mm}@{o.addr}, MADV_COLLAPSE)", frees=True),
    OpKind("referenced",
           lambda k, mm, op: folio_referenced(k, k.files[0], op.addr % FILE_PAGES),
           lambda o: f"folio_referenced(shmem:{o.addr})", user_context=False),
    OpKind("uffd_copy", lambda k, mm, op: mfill_atomic_copy(k, mm, op.addr, 1000 + op.arg),
           lambda o: f"UFFDIO_COPY(mm{o.mm}@{o.addr}, {o.arg})"),
    OpKind("munmap", _munmap, lambda o: f"munmap(mm{o.mm}: the VMA at {o.addr})"),
    OpKind("smaps", _smaps, lambda o: f"read /proc/mm{o.mm}/smaps @{o.addr}",
           user_context=False),
    # every register mode, with and without write-protecting the whole VMA
    OpKind("uffd_register", _uffd_register, _register_label, sweep_args=tuple(range(1, 9))),
    OpKind("uffd_unregister", lambda k, mm, op: userfaultfd_unregister(k, mm, op.addr),
           lambda o: f"UFFDIO_UNREGISTER(mm{o.mm}: the VMA at {o.addr})"),
    OpKind("uffd_writeprotect",
           lambda k, mm, op: mwriteprotect_range(k, mm, op.addr, max(1, op.arg), _wp_protect(op)),
           lambda o: f"UFFDIO_WRITEPROTECT(mm{o.mm}@{o.addr}+{o.arg}, "
                     f"{'WP' if _wp_protect(o) else 'unprotect'})"),
    OpKind("uffd_continue", lambda k, mm, op: mfill_atomic_continue(k, mm, op.addr),
           lambda o: f"UFFDIO_CONTINUE(mm{o.mm}@{o.addr})"),
    OpKind("mprotect", _mprotect,
           lambda o: f"mprotect(mm{o.mm}: the VMA at {o.addr}, "
                     f"{'PROT_READ' if o.arg % 2 else 'PROT_READ|PROT_WRITE'})"),
    OpKind("gup_fast", lambda k, mm, op: _gup(k, mm, op, True),
           lambda o: f"get_user_pages_fast(mm{o.mm}@{o.addr}, {_gup_nr(o)})"),
    OpKind("gup", lambda k, mm, op: _gup(k, mm, op, False),
           lambda o: f"get_user_pages(mm{o.mm}@{o.addr}, {_gup_nr(o)})"),
    OpKind("device", _device, lambda o: f"device DMA read mm{o.mm}@{o.addr}",
           user_context=False),
    OpKind("mremap", lambda k, mm, op: sys_mremap(k, mm, op.addr, op.arg),
           lambda o: f"mremap(mm{o.mm}: the VMA at {o.addr}, MREMAP_FIXED, free range #{o.arg})"),
    OpKind("fork", lambda k, mm, op: do_fork(k, mm), lambda o: f"fork(mm{o.mm})"),
    OpKind("exit", lambda k, mm, op: do_exit(k, mm), lambda o: f"exit(mm{o.mm})"),
    OpKind("punch_hole",
           lambda k, mm, op: shmem_fallocate_punch_hole(k, k.files[0], op.addr % FILE_PAGES,
                                                        max(1, op.arg)),
           lambda o: f"fallocate(shmem, PUNCH_HOLE, {o.addr % FILE_PAGES}, +{o.arg})",
           user_context=False),
    # 7.0 (6.8+; -EINVAL in 6.6): one page from addr to the address _move_dst() says; the sweep
    # moves from page 5 (the source in the table PT reclaim frees) and from page 9 (the
    # destination in it), to page 6 (in that table) or 9 (in the other)
    OpKind("uffd_move", _uffd_move,
           lambda o: f"UFFDIO_MOVE(mm{o.mm}: {o.addr} -> {_move_dst(o)}"
                     f"{', ALLOW_SRC_HOLES' if _move_mode(o) else ''})",
           needs="uffd_move", sweep_args=(6, 9), sweep_addrs=(5, 9)),
    OpKind("uffd_poison", lambda k, mm, op: mfill_atomic_poison(k, mm, op.addr),
           lambda o: f"UFFDIO_POISON(mm{o.mm}@{o.addr})"),
    # 7.0 (kernel/madvise_guard.py; -EINVAL in 6.6)
    OpKind("guard_install", _guard(True),
           lambda o: f"madvise(mm{o.mm}@{o.addr}+{max(1, o.arg)}, MADV_GUARD_INSTALL)",
           needs="guard_regions"),
    OpKind("guard_remove", _guard(False),
           lambda o: f"madvise(mm{o.mm}@{o.addr}+{max(1, o.arg)}, MADV_GUARD_REMOVE)",
           needs="guard_regions"),
)
#: the kinds by name
KINDS: dict[str, OpKind] = {kind.name: kind for kind in OPERATIONS}
assert len(KINDS) == len(OPERATIONS), "two operation kinds of the same name"
#: the kinds' names, in bitmask order
OP_KINDS: tuple[str, ...] = tuple(KINDS)
#: the kinds that free page tables in every kernel version (a machine run's first operation
#: picks one by index: a new one goes at the end)
FREERS: tuple[str, ...] = tuple(kind.name for kind in OPERATIONS if kind.frees is True)


def has(version, kind: OpKind) -> bool:
    """Whether a kernel version (kernel/version.py) has the operation kind."""
    return kind.needs is None or bool(getattr(version, kind.needs))


def op_kinds_for(version) -> tuple[str, ...]:
    """The operation kinds a kernel version has, in bitmask order."""
    return tuple(kind.name for kind in OPERATIONS if has(version, kind))


def freers_for(version) -> tuple[OpKind, ...]:
    """The kinds that free page tables in a kernel version: those that do in every version
    (:data:`FREERS`), then those that do in this one."""
    always = tuple(KINDS[name] for name in FREERS)
    return always + tuple(kind for kind in OPERATIONS if isinstance(kind.frees, str)
                          and getattr(version, kind.frees) and has(version, kind))


#: every kind every kernel version has (the bench's fixed workload draws from these, so that a
#: kind added for a later version does not change it)
EVERY_VERSION: tuple[str, ...] = tuple(kind.name for kind in OPERATIONS if kind.needs is None)
