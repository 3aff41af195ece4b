"""The suite judged by its own standard: the reference passes, and every mutant of the zoo is caught
with one of the violations its metadata expects.

Catching is judged as a user's conformance run judges (same machines, same strategies, the same
sweep), without shrinking and with nothing stored: a short random hunt, then the sweep.  The time
each mutant takes through the command a user types is measured by ``python -m pgconform userrun``
(which writes bench/userrun.md when run), not here.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pgconform.harness.machines import SCENARIOS, STEPS_PER_EXAMPLE, make_machine
from pgconform.harness.sweep import sweep
from pgconform.kernel.arch import ARCHES
from pgconform.registry import resolve, zoo_names
from pgconform.sim.errors import Violation

#: seconds a mutant may take to be caught before the test fails: far above the medians (bench/:
#: seconds), because the time to catch has a long tail and CI machines are shared
BUDGET_S = 600


class BudgetExhausted(Exception):
    pass


def _hunt(impl, arch: str, max_examples: int, budget_s: float | None, scenario: str = "mixed"):
    deadline = None if budget_s is None else time.monotonic() + budget_s

    class Timed(make_machine(impl, arch, scenario=scenario)):
        def teardown(self):
            super().teardown()
            if deadline is not None and time.monotonic() > deadline:
                raise BudgetExhausted(f"{impl.name} not caught within {budget_s} s")

    run_state_machine_as_test(Timed, settings=settings(
        max_examples=max_examples, phases=[Phase.generate], database=None, deadline=None,
        derandomize=False, stateful_step_count=STEPS_PER_EXAMPLE,
        suppress_health_check=list(HealthCheck)))


#: the hunt visits the scenarios in turn, this long each, so a mutant whose race needs one world
#: shape (a COW refill, an alias) is not stuck in another
SLICE_S = 20


#: seconds of random hunting (the conformance machines) before the sweep takes over: most
#: mutants fall in well under a second (bench/: medians), the rest to the sweep, so that the time
#: of this test does not follow the long tail of a random hunt
HUNT_FIRST_S = 10

#: mutants the sweep at bound 1 cannot catch (their race needs a third operation or a second
#: preemption): the random machines alone must, which takes minutes, so their hunt runs with
#: PGCONFORM_SLOW_HUNTS=1 (nightly); in every run a deterministic schedule proves the oracle
#: catches them
NOT_IN_THE_SWEEP = {
    "zoo.pae_no_pmdp_get_lockless_sync": "test_pae.py::test_torn_read_without_the_sync_is_caught",
    "zoo.move_normal_pmd_no_recheck": "test_actors_vm.py::test_mremap_meets_retract_in_6_6_0",
}


def _hunt_in_turn(impl, arch: str, budget_s: float):
    """The random machines on ``impl``, the scenarios in turn (SLICE_S each) for ``budget_s``:
    the Violation found, or None."""
    deadline = time.monotonic() + budget_s
    while True:
        for scenario in SCENARIOS:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                _hunt(impl, arch, max_examples=10**6, budget_s=min(SLICE_S, left),
                      scenario=scenario)
            except BudgetExhausted:
                continue
            except Violation as v:
                return v


@pytest.mark.parametrize("name", zoo_names())
def test_mutant_is_caught(name):
    """Every mutant is caught by the conformance judging a user's run does, with nothing stored:
    the random machines (a short hunt), else the exhaustive sweep at the default bound (the
    mutants it cannot reach: a long hunt, nightly)."""
    impl = resolve(name)
    assert impl.expected, f"{name} declares no expected clause"
    arch = impl.arches[0] if impl.arches else "x86_64"  # where the mutant's bug lives
    if name in NOT_IN_THE_SWEEP:
        if os.environ.get("PGCONFORM_SLOW_HUNTS") != "1":
            pytest.skip(f"slow random hunt (PGCONFORM_SLOW_HUNTS=1); caught by "
                        f"{NOT_IN_THE_SWEEP[name]}")
        v = _hunt_in_turn(impl, arch, BUDGET_S)
        assert v is not None, f"{name} not caught on {arch} within {BUDGET_S} s"
    else:
        v = _hunt_in_turn(impl, arch, HUNT_FIRST_S)
        if v is None:
            r = sweep(impl, arch)
            assert r.violation is not None, f"{name} passes the sweep on {arch}"
            v = r.violation
    assert v.clause in impl.expected, (
        f"{name} was caught by [{v.clause}], expected one of {impl.expected}:\n{v}")
    # the verdict carries the race diagram
    assert "violation:" in v.diagram


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_reference_passes(arch, scenario):
    _hunt(resolve("reference"), arch, max_examples=100, budget_s=None, scenario=scenario)


def test_every_mutant_names_its_source_and_violation():
    for name in zoo_names():
        impl = resolve(name)
        assert impl.name == name
        assert impl.source and impl.description and impl.expected



@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("name", ["alt.powerpc-v2", "alt.s390-v2"])
def test_alternate_designs_pass(name, scenario):
    """Correct designs other than the merged one pass on the arch they are for (a false alarm on a
    correct design is as bad as a missed bug)."""
    impl = resolve(name)
    (arch,) = impl.arches
    _hunt(impl, arch, max_examples=100, budget_s=None, scenario=scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ["x86_64", "x86_pae", "powerpc64", "s390"])
def test_v6_5_passes(arch, scenario):
    """The kernel before the series is different, not wrong: under its own locking (mmap_lock
    and i_mmap_rwsem for write, the deferred list, pte_free at once) it passes; its one real bug
    is a declared known violation, counted instead of failed."""
    _hunt(resolve("v6.5"), arch, max_examples=100, budget_s=None, scenario=scenario)
