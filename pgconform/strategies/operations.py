"""Strategies for the operations CPUs perform.

An operation is drawn as four raw values (:data:`op_draws`): a kind, an mm choice, an address
choice and an argument.  What they mean depends on the run (its world, its hot PMD range, its
swarm subset of kinds): :func:`make_op` resolves them.  The raw values are what replay strings
and example databases record, so they never change meaning.  A failing program prints a start
step as the operation it started (:meth:`pgconform.harness.machines.ConformanceMachine.
_repr_step`): ``state.start(op='khugepaged', mm=0, addr=0x4000, arg=1)``, not ``where=17``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from pgconform.harness.operations import OP_KINDS, Op
from pgconform.harness.scenario import WorldSpec
from pgconform.strategies.worlds import GEO, hot_places


def pick_address(world: WorldSpec, hot: tuple[int, int], choice: int) -> int:
    """Map a small integer to an address: mostly in the hot PMD range (races need operations on
    the same objects), else in another range some VMA covers, else anywhere."""
    nr = GEO.hpage_pmd_nr
    if choice < 6 * nr:
        return hot[1] + choice % nr
    places = hot_places(world)
    if choice < 9 * nr:
        return places[choice % len(places)][1] + choice // len(places) % nr
    return choice % GEO.task_size


#: the raw draws of one operation: kind, mm choice (2 is the newest mm, 3 "the other mm"),
#: address choice (see pick_address), argument.  These names are the replay strings' (the
#: initialisation rule's ``primary`` and ``partner`` are dictionaries of them)
op_draws = dict(
    kind=st.sampled_from(OP_KINDS),
    mm=st.integers(0, 3),
    where=st.integers(0, 10 * GEO.hpage_pmd_nr - 1),
    arg=st.integers(1, 2 * GEO.hpage_pmd_nr),
)


def swarm_kind(kinds, kind: str) -> str:
    """The kind a run whose swarm subset of kinds is ``kinds`` runs for a drawn ``kind``."""
    return kind if kind in kinds else kinds[OP_KINDS.index(kind) % len(kinds)]


def pick_mm(world: WorldSpec, hot: tuple[int, int], choice: int) -> int:
    """The mm index an mm choice picks: the hot range's mm (0, 1), -1 "the newest mm" (2:
    k.mms[-1] when the operation starts, a child of fork() if one was created by then, else the
    world's last mm), or the other mm of the world (3)."""
    return hot[0] if choice < 2 else -1 if choice == 2 else (hot[0] + 1) % world.nmms


def make_op(world: WorldSpec, hot: tuple[int, int], kinds, kind: str, mm: int, where: int,
            arg: int) -> Op:
    """The operation the raw draws describe; ``kinds`` is the run's swarm subset of kinds and
    ``hot`` its (mm, PMD range) focus."""
    return Op(swarm_kind(kinds, kind), pick_mm(world, hot, mm), pick_address(world, hot, where),
              arg)
