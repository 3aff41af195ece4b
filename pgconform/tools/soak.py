"""The soak: the reference (or any implementation) judged at volume, to show that it never fails.

    python -m pgconform soak [--impl SPEC] [--runs N] [--bound B] [--arch NAME ...] [--jobs J]
                             [--json PATH] [--markdown PATH]

For each architecture: the conformance machines (every scenario in turn, seeded, without
shrinking) until at least ``--runs`` runs were judged (a run is one world raced to its end under
one schedule and checked: the machines' ``_finish``), then the whole exhaustive sweep at
``--bound`` preemptions.  Violations of the implementation's declared known violations are
counted, not failed (as in the conformance run); any other violation is a soak failure, listed
with its replay string, and the command exits 1.  The figures (runs, schedules, violations, CPU
and wall time) go to ``--json`` and ``--markdown``; ``tox -e soak`` writes ``bench/soak.json``
and ``bench/soak.md``.

The work is spread over ``--jobs`` processes (default: the CPUs), one task per (architecture,
scenario) for the machines and one per architecture for the sweep.  Seeds are fixed, so a soak
run is repeatable up to the watchdog (which measures CPU time).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import sys
import time
import zlib
from pathlib import Path

#: machine examples per Hypothesis invocation (each a new seed); a run is about 5 per example
EXAMPLES_PER_SEED = 400


def _machine_task(task: tuple) -> dict:
    """Judge ``spec`` on ``arch`` in ``scenario`` until ``target`` runs were judged."""
    spec, arch, scenario, target = task
    from hypothesis import seed
    from hypothesis.stateful import run_state_machine_as_test

    from pgconform.harness import runs as records
    from pgconform.registry import resolve
    from pgconform.tools.bench import clause_of, counting_machine, machine_settings

    impl = resolve(spec)
    runs, examples, failures, known = 0, 0, [], {}
    t0, c0 = time.perf_counter(), time.process_time()
    base = zlib.crc32(f"{arch}/{scenario}".encode())
    i = 0
    while runs < target:
        seed_value = base + i
        i += 1
        cls, state = counting_machine(impl, seed_value, None, arch, scenario)
        counter = {"runs": 0}

        class Soak(cls):
            counted = counter  # this seed's count, bound when the class is made

            def _finish(self):
                super()._finish()
                self.counted["runs"] += 1

        Soak.__name__ = Soak.__qualname__ = cls.__name__
        records.last_failure = None
        records.tolerated_hits.clear()
        state["t0"] = time.perf_counter()
        try:
            run_state_machine_as_test(seed(seed_value)(Soak),
                                      settings=machine_settings(
                                          min(EXAMPLES_PER_SEED, max(10, target - runs)),
                                          state["settings"]))
        except Exception as exc:  # noqa: BLE001 - every failure is a soak finding, listed
            failure = records.last_failure
            failures.append({"arch": arch, "scenario": scenario, "seed": seed_value,
                             "clause": clause_of(exc),
                             "replay": failure.string if failure is not None else ""})
        runs += counter["runs"]
        examples += state["examples"]
        for clause, n in records.tolerated_hits.items():
            known[clause] = known.get(clause, 0) + n
    return {"kind": "machines", "arch": arch, "scenario": scenario, "runs": runs,
            "examples": examples, "seeds": i, "failures": failures, "known": known,
            "cpu_s": round(time.process_time() - c0, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def _sweep_task(task: tuple) -> dict:
    """The whole exhaustive sweep of ``spec`` on ``arch`` at ``bound``, every violation found
    (each is tolerated after it is recorded, so that the sweep goes on)."""
    spec, arch, bound = task
    from pgconform.harness import replay
    from pgconform.harness import runs as records
    from pgconform.harness.sweep import sweep
    from pgconform.registry import resolve

    impl = resolve(spec)
    t0, c0 = time.perf_counter(), time.process_time()
    records.tolerated_hits.clear()
    r = sweep(impl, arch, bound=bound, tolerated=None)
    failures = []
    if r.violation is not None:
        failures.append({"arch": arch, "scenario": f"sweep {r.pair}", "seed": None,
                         "clause": r.violation.clause,
                         "replay": (replay.encode(r.violation.run)
                                    if getattr(r.violation, "run", None) is not None else "")})
    return {"kind": "sweep", "arch": arch, "pairs": r.pairs, "schedules": r.schedules,
            "complete": r.complete, "bound": bound, "failures": failures,
            "known": dict(records.tolerated_hits),
            "cpu_s": round(time.process_time() - c0, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def _run(task: tuple) -> dict:
    return _machine_task(task[1:]) if task[0] == "machines" else _sweep_task(task[1:])


def soak(spec: str, arches: list[str], runs: int, bound: int, jobs: int, log=print) -> dict:
    """Run the soak; the result as data (see :func:`to_markdown`)."""
    from pgconform.harness.machines import SCENARIOS

    per_scenario = math.ceil(runs / len(SCENARIOS))
    tasks = [("sweep", spec, arch, bound) for arch in arches]
    tasks += [("machines", spec, arch, scenario, per_scenario)
              for arch in arches for scenario in SCENARIOS]
    t0 = time.perf_counter()
    results = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(_run, tasks):
            results.append(r)
            what = (f"{r['runs']} runs" if r["kind"] == "machines"
                    else f"{r['schedules']} schedules")
            where = r.get("scenario", "sweep")
            log(f"soak: {r['arch']:<22} {where:<16} {what:>16}, "
                f"{len(r['failures'])} violations, {r['cpu_s']} s CPU")
    per_arch = {}
    for arch in arches:
        mine = [r for r in results if r["arch"] == arch]
        machines = [r for r in mine if r["kind"] == "machines"]
        sweeps = [r for r in mine if r["kind"] == "sweep"]
        known: dict[str, int] = {}
        for r in mine:
            for clause, n in r["known"].items():
                known[clause] = known.get(clause, 0) + n
        per_arch[arch] = {
            "machine_runs": sum(r["runs"] for r in machines),
            "machine_examples": sum(r["examples"] for r in machines),
            "sweep_schedules": sum(r["schedules"] for r in sweeps),
            "sweep_pairs": sum(r["pairs"] for r in sweeps),
            "sweep_complete": all(r["complete"] for r in sweeps),
            "violations": [f for r in mine for f in r["failures"]],
            "known": known,
            "cpu_s": round(sum(r["cpu_s"] for r in mine), 1),
        }
    from importlib.metadata import version

    return {"implementation": spec, "runs_per_arch": runs, "sweep_bound": bound, "jobs": jobs,
            "date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "hypothesis": version("hypothesis"), "machine": f"{os.cpu_count()} CPUs",
            "wall_s": round(time.perf_counter() - t0, 1), "arches": per_arch}


def to_markdown(data: dict) -> str:
    lines = [f"# Soak: {data['implementation']}", "",
             f"`python -m pgconform soak --runs {data['runs_per_arch']} --bound "
             f"{data['sweep_bound']} --jobs {data['jobs']}` on {data['date']} ({data['machine']}, "
             f"Python {data['python']}, Hypothesis {data['hypothesis']}): "
             f"{data['wall_s']:.0f} s wall in all.", "",
             "Machine runs are worlds raced to their end under one schedule and checked; sweep "
             "schedules are every interleaving of every pair with at most the bound's "
             "preemptions. Known: violations of the implementation's declared findings, counted "
             "and not failed.", "",
             "| arch | machine runs | examples | sweep schedules | pairs | violations | known | "
             "CPU s |", "|---|---|---|---|---|---|---|---|"]
    total = {"runs": 0, "schedules": 0, "violations": 0}
    for arch, a in data["arches"].items():
        known = ", ".join(f"{c} x{n}" for c, n in sorted(a["known"].items())) or "-"
        lines.append(f"| {arch} | {a['machine_runs']} | {a['machine_examples']} | "
                     f"{a['sweep_schedules']} | {a['sweep_pairs']} | {len(a['violations'])} | "
                     f"{known} | {a['cpu_s']} |")
        total["runs"] += a["machine_runs"]
        total["schedules"] += a["sweep_schedules"]
        total["violations"] += len(a["violations"])
    lines += ["", f"In all: {total['runs']} machine runs, {total['schedules']} sweep schedules, "
              f"{total['violations']} violations."]
    for arch, a in data["arches"].items():
        for v in a["violations"]:
            lines.append(f"- {arch} {v['scenario']}: `{v['clause']}` (seed {v['seed']}) "
                         f"{v['replay']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pgconform.kernel.arch import ARCHES

    p = argparse.ArgumentParser(prog="pgconform soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="reference", metavar="SPEC",
                   help="implementation to soak (default: reference)")
    p.add_argument("--runs", type=int, default=100_000,
                   help="machine runs per architecture (default 100000)")
    p.add_argument("--bound", type=int, default=1,
                   help="preemption bound of the sweep (default 1)")
    p.add_argument("--arch", action="append", default=None, metavar="NAME",
                   help="architecture (repeatable; default: all)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: the CPUs)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the figures as Markdown")
    args = p.parse_args(argv)
    arches = args.arch or list(ARCHES)
    unknown = [a for a in arches if a not in ARCHES]
    if unknown:
        p.error(f"unknown --arch {', '.join(unknown)}; known: {', '.join(ARCHES)}")
    if args.runs < 1 or args.bound < 0 or args.jobs < 1:
        p.error("--runs and --jobs must be at least 1, --bound at least 0")
    from pgconform.implementation import ImplementationError
    from pgconform.registry import resolve

    try:
        resolve(args.impl)
    except ImplementationError as e:
        p.error(str(e))
    for path in (args.json, args.markdown):
        if path and not os.access(Path(path).resolve().parent, os.W_OK):
            p.error(f"cannot write {path}")
    data = soak(args.impl, arches, args.runs, args.bound, args.jobs,
                log=lambda s: print(s, flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    text = to_markdown(data)
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)
    return 1 if any(a["violations"] for a in data["arches"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
