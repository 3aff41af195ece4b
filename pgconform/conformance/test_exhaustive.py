"""The exhaustive sweep (pgconform/harness/sweep.py): every freer against every operation kind,
both ways round, in small worlds of each scenario shape, under every schedule with at most
``PGCONFORM_PREEMPTION_BOUND`` preemptions (default 1).  One test item per (architecture,
world); it fails with the first violation, naming the pair and the schedule's decisions.

    pytest -n auto tests/conformance --impl SPEC [--arch NAME ...]
"""

import pytest

from pgconform.harness.sweep import WORLDS, default_bound, sweep, worlds_for
from pgconform.kernel.version import VERSIONS
from pgconform.plugin import (
    selected_arches,
    selected_implementation,
    selected_spec,
    selected_xfails,
)

_impl = selected_implementation()


@pytest.mark.pgconform_sweep
@pytest.mark.parametrize("world", list(WORLDS))
@pytest.mark.parametrize("arch", selected_arches())
def test_sweep(arch, world, request):
    # the scenario of a sweep item is its world: one vocabulary with the machines' scenarios, so
    # that an --xfails-file entry "CLAUSE ARCH private" covers both
    request.node.pgconform_item = (arch, world)
    if _impl.arches and arch not in _impl.arches:
        pytest.skip(f"{_impl.name} applies to {', '.join(_impl.arches)} only")
    if world not in worlds_for(VERSIONS[_impl.kernel]):
        pytest.skip(f"world {world} is not swept in kernel {_impl.kernel}")
    tolerated = {c: why for c, (_, why) in selected_xfails(arch, world).items()}
    r = sweep(_impl, arch, worlds=(world,), tolerated=tolerated, spec=selected_spec())
    request.node.pgconform_sweep = f"{r.pairs} pairs, {r.schedules} schedules, bound " \
                                   f"{default_bound()}, {'complete' if r.complete else 'limited'}" \
                                   + (f", {r.unconfirmed_hangs} hangs not confirmed when run again"
                                      if r.unconfirmed_hangs else "")
    if r.violation is not None:
        raise r.violation
