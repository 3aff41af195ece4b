"""The suite judged by its own standard: the reference passes, and every mutant of the zoo is caught
with one of the violations its metadata expects.

Catching is measured as the conformance machine runs for users (same strategies, same schedules),
without shrinking: time to the first failing example.  Each mutant gets a generous time budget;
the medians are far lower (see bench/).
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pgconform.kernel.config import ARCHES
from pgconform.machines import SCENARIOS, STEPS_PER_EXAMPLE, make_machine
from pgconform.registry import resolve
from pgconform.sim.errors import Violation
from pgconform.zoo import MUTANTS

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


#: mutants whose race the random exploration finds only after many minutes (one-step windows):
#: their hunt runs with PGCONFORM_SLOW_HUNTS=1 (nightly); in every run a deterministic schedule
#: proves the oracle catches them (tests/selftest/test_pae.py, test_arch_actors.py)
SLOW_HUNTS = {
    "zoo.pae_no_pmdp_get_lockless_sync": "test_pae.py::test_torn_read_without_the_sync_is_caught",
    # since the actors of issue 4 joined the operation mix, these races take minutes to find at
    # random (bench/: medians); their deterministic schedules run every time
    "zoo.retract_no_anon_vma_recheck": "test_collapse.py::test_mutant_is_caught[A7]",
    "zoo.collapse_pte_mapped_thp_uffd_window": "test_collapse.py::test_mutant_is_caught[B1]",
    "zoo.retract_no_uffd_wp_recheck": "test_uffd.py::test_a8_is_caught",
    "zoo.move_normal_pmd_no_recheck": "test_actors_vm.py::test_mremap_meets_retract_in_6_6_0",
    "zoo.pte_offset_map_lock_no_pmd_same": "test_oracles.py::test_write_detached",
    "zoo.v7_retract_no_pmd_state_recheck":
        "test_versions.py::test_retract_without_the_pmd_state_recheck_is_caught_in_7_0",
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught(name):
    if name in SLOW_HUNTS and os.environ.get("PGCONFORM_SLOW_HUNTS") != "1":
        pytest.skip(f"slow random hunt (PGCONFORM_SLOW_HUNTS=1); caught by {SLOW_HUNTS[name]}")
    impl = resolve(name)
    assert impl.expected, f"{name} declares no expected clause"
    arch = impl.arches[0] if impl.arches else "x86_64"  # where the mutant's bug lives
    deadline = time.monotonic() + BUDGET_S
    with pytest.raises(Violation) as excinfo:
        while True:
            for scenario in SCENARIOS:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetExhausted(f"{name} not caught on {arch} within {BUDGET_S} s")
                try:
                    _hunt(impl, arch, max_examples=10**6, budget_s=min(SLICE_S, left),
                          scenario=scenario)
                except BudgetExhausted:
                    continue
    assert excinfo.value.clause in impl.expected, (
        f"{name} was caught by [{excinfo.value.clause}], expected one of {impl.expected}:\n"
        f"{excinfo.value}")
    # the verdict carries the race diagram
    assert "violation:" in excinfo.value.diagram


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_reference_passes(arch, scenario):
    _hunt(resolve("reference"), arch, max_examples=100, budget_s=None, scenario=scenario)


def test_every_mutant_names_its_source_and_violation():
    for name in MUTANTS:
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
