"""Search small, structured schedules of the conformance machine for one that fails a mutant
(with a clause it expects) and passes the reference: a stored replay string for a mutant whose
random hunt is slow (``python -m pgconform corpus`` stores the random hunts' shrunk failures).

The schedules: a world, a first operation run to just before its n-th lock, a partner operation
started there, then the run finished fairly, or under PCT with the partner first, or with the
first operation preempted at one of its next locks.

    python -m pgconform craft NAME --world MODULE:ATTR --kinds uffd_copy,write [--budget S]
                              [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pgconform.harness import replay
from pgconform.harness.machines import LANES
from pgconform.harness.operations import FREERS, OP_KINDS
from pgconform.registry import resolve
from pgconform.tools.corpus import OUT


def patterns():
    yield []
    yield [("schedule", {"order": ["CPU1", "CPU0", "CPU2", "RCU"], "change": [],
                         "at_locks": False})]
    for c in range(1, 5):
        yield [("schedule", {"order": list(LANES), "change": [c], "at_locks": True})]


def fine(world, kinds, wheres, args):
    """A lockless reader (the first operation) stepped ``a`` effects, a freer started and run
    ``r`` x 12 effects while the reader waits, then the run finished fairly."""
    allkinds = 2 ** len(OP_KINDS) - 1
    for kind, where, arg, freer, hot in itertools.product(kinds, wheres, args, FREERS, (0, 1)):
        first = {"kind": kind, "mm": 0, "where": where, "arg": arg}
        init = {"world": world, "kinds": allkinds, "hot": hot, "warm": [], "primary": first,
                "freer": 3, "partner": first, "stage": 0}
        for a in range(1, 24):
            for r in range(1, 12):
                yield [("init_world", init), ("advance", {"pick": 0, "n": a}),
                       ("start", {"kind": freer, "mm": 0, "where": 0, "arg": 1}),
                       *[("advance", {"pick": 1, "n": 12})] * r]


def refill(world, kinds, wheres, args):
    """As :func:`fine`, then the reader one more effect (the other half of a two-half read), and
    write faults run while the reader waits (a new table, maybe in the freed frame), perhaps
    after a read fault in another PMD range."""
    for steps in fine(world, kinds, wheres, args):
        for before in ([], [("start", {"kind": "read", "mm": 0, "where": 26, "arg": 1}),
                            *[("advance", {"pick": 1, "n": 12})] * 4]):
            for where in (1, 2, 3):
                yield [*steps, ("advance", {"pick": 0, "n": 1}), *before,
                       ("start", {"kind": "write", "mm": 0, "where": where, "arg": 1}),
                       *[("advance", {"pick": 1, "n": 12})] * 4]


def candidates(world, kinds, wheres, args):
    yield from fine(world, kinds, wheres, args)
    yield from refill(world, kinds, wheres, args)
    allkinds = 2 ** len(OP_KINDS) - 1
    for kind, where, arg, freer in itertools.product(kinds, wheres, args, FREERS):
        other = {"kind": kind, "mm": 0, "where": where, "arg": arg}
        fr = {"kind": freer, "mm": 0, "where": 0, "arg": 1}
        for first, partner in ((fr, other), (other, fr)):
            for stage in range(17):
                init = {"world": world, "kinds": allkinds, "hot": 0, "warm": [],
                        "primary": first, "freer": 3, "partner": partner, "stage": stage}
                for tail in patterns():
                    yield [("init_world", init), *tail]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pgconform craft",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--world", required=True)
    ap.add_argument("--kinds", required=True)
    ap.add_argument("--wheres", default="0,1,2,3")
    ap.add_argument("--args", default="1,7")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--scenario", default="private")
    ap.add_argument("--budget", type=float, default=300)
    ap.add_argument("--out", type=Path, default=OUT, help=f"the JSON file to update ({OUT})")
    a = ap.parse_args(argv)
    module, attr = a.world.split(":")
    world = getattr(importlib.import_module(module), attr)
    impl = resolve(a.name)
    arch = a.arch or (impl.arches[0] if impl.arches else "x86_64")
    run0 = replay.Run(a.name, arch, a.scenario, ())
    cls = replay.machine_for(run0)
    ref = replay.machine_for(run0, "reference")
    t0, n = time.time(), 0
    for steps in candidates(world, a.kinds.split(","), [int(w) for w in a.wheres.split(",")],
                            [int(x) for x in a.args.split(",")]):
        n += 1
        if time.time() - t0 > a.budget:
            break
        _, v = replay.run_steps(cls, steps)
        if v is None or v.clause not in impl.expected:
            continue
        _, clean = replay.run_steps(ref, steps)
        if clean is not None:
            continue
        string = replay.encode(replay.Run(a.name, arch, a.scenario, tuple(steps)))
        corpus = json.loads(a.out.read_text()) if a.out.exists() else {}
        corpus[a.name] = string
        a.out.write_text(json.dumps(corpus, indent=1, sort_keys=True) + "\n")
        print(f"{a.name}: {v.clause} after {n} schedules, {time.time() - t0:.1f} s")
        return 0
    print(f"{a.name}: nothing in {n} schedules, {time.time() - t0:.1f} s")
    return 1


if __name__ == "__main__":
    sys.exit(main())
