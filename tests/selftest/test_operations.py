"""The operation kinds are one registry of records (pgconform/harness/operations.py), and every
other place derives from it: the kinds' bitmask keeps the meaning stored runs give its bits, every
kind starts and runs to its end in the kernels that have it, and the freers and the sweep's pairs
come from the records.
"""

from __future__ import annotations

import pytest

from pgconform.harness.operations import (
    EVERY_VERSION,
    FREERS,
    OP_KINDS,
    OPERATIONS,
    Op,
    freers_for,
    op_kinds_for,
)
from pgconform.harness.scenario import build_world, start_op
from pgconform.harness.sweep import WORLDS, pairs
from pgconform.harness.sweep import freers_for as sweep_freers
from pgconform.kernel.version import VERSIONS
from pgconform.registry import resolve
from tests.selftest.test_oracles import finish, run_to_end

#: the kinds' bitmask as stored runs (replay strings, example databases) name it: bit i is
#: RECORDED[i].  New kinds go after these; none of these moves
RECORDED = ("read", "write", "dontneed", "khugepaged", "madv_collapse", "referenced",
            "uffd_copy", "munmap", "smaps", "uffd_register", "uffd_unregister",
            "uffd_writeprotect", "uffd_continue", "mprotect", "gup_fast", "gup", "device",
            "mremap", "fork", "exit", "punch_hole", "uffd_move", "uffd_poison", "guard_install",
            "guard_remove")


def test_the_bitmask_of_stored_runs_keeps_its_meaning():
    assert OP_KINDS[:len(RECORDED)] == RECORDED
    assert OP_KINDS == tuple(kind.name for kind in OPERATIONS) and len(set(OP_KINDS)) == len(
        OP_KINDS)
    # a machine run's first operation picks a freer by index (freer % len(FREERS))
    assert FREERS[:2] == ("khugepaged", "madv_collapse")


def test_what_the_records_say_is_what_every_place_uses():
    """The versions' kinds, the freers (MADV_DONTNEED's PT reclaim from 6.14), the bench's kinds
    and the sweep's pairs come from the records."""
    v66, v70 = VERSIONS["6.6"], VERSIONS["7.0"]
    assert set(op_kinds_for(v70)) == set(OP_KINDS)
    assert set(OP_KINDS) - set(op_kinds_for(v66)) == {k.name for k in OPERATIONS if k.needs}
    assert [k.name for k in freers_for(v66)] == list(FREERS)
    assert [k.name for k in freers_for(v70)] == [*FREERS, "dontneed"]
    assert sweep_freers(v70)[-1] == Op("dontneed", 0, 4, 4)
    assert set(EVERY_VERSION) == set(op_kinds_for(v66))
    ps = list(pairs("shared", op_kinds_for(v70), sweep_freers(v70)))
    for kind in OPERATIONS:
        tried = {(p.second.addr, p.second.arg) for p in ps
                 if p.second.kind == kind.name and p.first == Op("khugepaged", 0, 4, 1)}
        assert tried == {(a, x) for a in kind.sweep_addrs for x in kind.sweep_args}, kind.name


@pytest.mark.parametrize("kind", OPERATIONS, ids=lambda kind: kind.name)
def test_every_kind_starts_and_runs_to_its_end(kind):
    """Each kind, in a kernel that has it, on the reference, alone in the sweep's mixed world
    (two mms sharing the file): it starts in its mm (a process's operation: the task carries the
    mm), runs to its end, and leaves a state the end-of-run oracles pass; its label names it."""
    version = "6.6" if kind.needs is None else "7.0"
    impl = resolve("reference" if version == "6.6" else "v7.0")
    assert impl.kernel == version
    k = build_world(WORLDS["mixed"], impl)
    op = Op(kind.name, 1, 5, 2)
    t = start_op(k, "CPU0", op)
    assert t.name == f"CPU0:{op}"
    assert (t.mm is k.mms[1]) == kind.user_context
    run_to_end(k.m, t)
    finish(k)
