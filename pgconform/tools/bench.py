"""Repeatable benchmark of pgconform: engine throughput, Hypothesis examples per second of the
conformance machine (in this process, and with 1 and 2 pytest-xdist workers), and the time to
catch each mutant of the zoo, by the random conformance machines (medians over seeds) and by the
exhaustive sweep (deterministic).

    python -m pgconform bench [--quick] [--json PATH] [--markdown PATH] [--seeds N]
                              [--budget S] [--mutants NAME,...] [--no-xdist]

Everything but the xdist measure runs in this one process, on one core.  See bench/README.md for
what each figure measures.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.control import current_build_context
from hypothesis.stateful import run_state_machine_as_test

from pgconform.harness.machines import LANES, PCT_BUDGET, SCENARIOS, make_machine
from pgconform.harness.operations import EVERY_VERSION, FREERS, Op
from pgconform.harness.scenario import (
    VmaSpec,
    WorldSpec,
    build_world,
    start_op,
)
from pgconform.harness.sweep import sweep
from pgconform.registry import registered_names, resolve
from pgconform.sim.errors import Violation
from pgconform.sim.policies.pct import run_pct

#: this pgconform package's directory (a checkout's or an installed one)
PACKAGE = Path(__file__).resolve().parents[1]
ARCH = "x86_64"
#: seconds a mutant hunt spends in one scenario before moving to the next (as the zoo test does)
SLICE_S = 20
NOTE = ("in-process, one core, no xdist; the machine may be shared with other work, and every "
        "figure is the median of a single invocation of this script")

# --------------------------------------------------------------------------------------------
# 1. engine throughput: effects per second

#: Hand-written worlds (geometry: 4 PTEs per table, 16 pages of address space, 8-page shmem file).
WORLDS: tuple[WorldSpec, ...] = (
    # one mm mapping the whole file shared, two collapsible PMD ranges, partly faulted in
    WorldSpec(vmas=(VmaSpec(0, 0, 8, 0),), prefault=((0, 0, False), (0, 1, True), (0, 5, False))),
    # two mms: a shared mapping of the first range and a private mapping of the whole file
    WorldSpec(vmas=(VmaSpec(0, 4, 4, 0), VmaSpec(1, 0, 8, 0, shared=False)),
              prefault=((0, 4, False), (1, 1, True), (1, 2, False))),
    # userfaultfd-registered mapping of the second range, holes in the page cache
    WorldSpec(vmas=(VmaSpec(0, 0, 4, 4, uffd_missing=True),),
              cached=(True, True, True, True, True, False, True, False),
              prefault=((0, 0, False),)),
    # a PMD-sized folio already in the page cache, mapped by two mms
    WorldSpec(vmas=(VmaSpec(0, 0, 8, 0), VmaSpec(1, 4, 8, 0)), thps=(0,),
              prefault=((0, 0, False), (1, 5, True))),
)

#: the kinds the fixed workload draws from: those every kernel version has (the 6.6 kinds), so
#: that a kind added for a later version does not change the workload (a kind added for every
#: version does: the workload's figures are then not comparable with earlier ones)
KINDS = EVERY_VERSION
OPS_PER_RUN = 3


def _mapped(spec: WorldSpec) -> list[tuple[int, int]]:
    return [(v.mm, v.start + i) for v in spec.vmas for i in range(v.npages) if v.start + i < 16]


def make_cases(nseeds: int) -> list[tuple]:
    """The fixed workload: for each seed a world, 3 operations and a PCT schedule."""
    cases = []
    for s in range(nseeds):
        rng = random.Random(s)
        spec = rng.choice(WORLDS)
        mapped = _mapped(spec)
        ops = []
        for i in range(OPS_PER_RUN):
            # like the conformance machine, usually start with an operation that frees tables
            kind = rng.choice(FREERS) if i == 0 and rng.random() < 2 / 3 else rng.choice(KINDS)
            if rng.random() < 0.85:
                mm, addr = rng.choice(mapped)
            else:
                mm, addr = rng.randrange(spec.nmms), rng.randrange(16)
            ops.append(Op(kind, mm, addr, rng.randint(1, 8)))
        order = list(LANES)
        rng.shuffle(order)
        prio = {lane: len(order) - i for i, lane in enumerate(order)}
        change = rng.sample(range(64), rng.randint(0, 3))
        cases.append((spec, tuple(ops), prio, change))
    return cases


def run_cases(impl, cases) -> dict:
    """One repetition: returns effects executed, engine seconds and world-building seconds."""
    effects = engine_s = build_s = 0.0
    violations = 0
    clock = time.perf_counter
    for spec, ops, prio, change in cases:
        t0 = clock()
        k = build_world(spec, impl, ARCH)
        t1 = clock()
        m = k.m
        try:
            for i, op in enumerate(ops):
                start_op(k, f"CPU{i}", op)
            run_pct(m, prio, change, PCT_BUDGET)
            m.finish()
        except Violation:
            violations += 1
        t2 = clock()
        build_s += t1 - t0
        engine_s += t2 - t1
        effects += sum(t.steps for t in m.tasks)
    return {"effects": int(effects), "engine_s": engine_s, "build_s": build_s,
            "violations": violations}


def bench_effects(nseeds: int, reps: int) -> dict:
    impl = resolve("reference")
    cases = make_cases(nseeds)
    run_cases(impl, cases[: min(20, len(cases))])  # warm-up (imports, caches)
    runs = []
    for _ in range(reps):
        gc.collect()
        runs.append(run_cases(impl, cases))
    eps = [r["effects"] / r["engine_s"] for r in runs]
    eps_all = [r["effects"] / (r["engine_s"] + r["build_s"]) for r in runs]
    return {
        "effects_per_s": statistics.median(eps),
        "effects_per_s_incl_build": statistics.median(eps_all),
        "effects_per_run": runs[0]["effects"],
        "runs": nseeds,
        "reps": reps,
        "engine_s": [round(r["engine_s"], 4) for r in runs],
        "build_s": [round(r["build_s"], 4) for r in runs],
        "violations": runs[0]["violations"],
    }


# --------------------------------------------------------------------------------------------
# 2 and 3. the conformance machine under Hypothesis

LOCAL_PACKAGES = ("pgconform",)  # the strategies are pgconform.strategies
#: modules and packages not needed by the machines (and with import-time side effects on pytest,
#: argv or, for the conformance test modules, the selection of an implementation)
SKIP_MODULES = {"pgconform.__main__", "pgconform.plugin", "pgconform.conformance"}


def _skipped(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SKIP_MODULES)


def _import_all(path, prefix: str) -> None:
    """Import the modules below ``path`` depth first, as pkgutil.walk_packages visits them, but
    never a skipped package (walk_packages imports every package it recurses into)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(path, prefix):
        if _skipped(info.name):
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            _import_all(module.__path__, info.name + ".")


def local_modules() -> set[str]:
    """The loaded modules whose source lies in this pgconform package."""
    return {name for name, mod in list(sys.modules.items())
            if str(getattr(mod, "__file__", None) or "").startswith(str(PACKAGE))}


def preload() -> set[str]:
    """Import every module of pgconform (its strategies too) and every registered implementation,
    before Hypothesis first runs.

    Hypothesis (>= 6.131) also draws integers from a pool of the constants found in the *local*
    modules loaded at the time (hypothesis.internal.conjecture.providers._get_local_constants), so
    with a fixed seed the examples can still change when a module is first imported halfway
    through the benchmark (a zoo mutant when it is resolved, pgconform.report.trace at the first
    failure).
    Loading them all up front makes each seed's run the same whatever ran before it and whichever
    --mutants were chosen."""
    import importlib

    for pkg_name in LOCAL_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        _import_all(pkg.__path__, pkg_name + ".")
    for name in registered_names():
        resolve(name)
    return local_modules()


class OutOfBudget(KeyboardInterrupt):
    """Raised from the machine when a run's time budget is spent.  Hypothesis records any other
    exception, even a BaseException, as an outcome of the test case (and then reports a flaky
    strategy); a KeyboardInterrupt is the one it lets through at once, as it does for Ctrl-C."""


def machine_settings(max_examples: int, parent: settings | None = None) -> settings:
    """The settings of a benchmark run: those the machine class carries (``make_machine`` sets
    its ``TestCase.settings``, e.g. the rule steps per example), with everything that matters here
    made explicit: no conftest profile applies in this process, and Hypothesis loads its
    derandomized "ci" profile by itself when it detects CI."""
    if parent is None:
        parent = make_machine(resolve("reference"), ARCH).TestCase.settings
    return settings(parent, max_examples=max_examples, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), phases=[Phase.generate],
                    derandomize=False, report_multiple_bugs=False, print_blob=False)


def counting_machine(impl, seed_value, deadline: float | None = None, arch: str = ARCH,
                     scenario: str = "mixed"):
    """A subclass of the conformance machine that counts examples (``teardown()`` calls), notes
    when Hypothesis starts its final replay of a failure, and stops at ``deadline``.

    The seed goes on the class with ``hypothesis.seed``, which ``run_state_machine_as_test``
    honours; ``random.seed()`` does not seed Hypothesis (it draws from its own global Random)."""
    base = make_machine(impl, arch, scenario=scenario)
    state = {"examples": 0, "final": None, "t0": None}

    class Counting(base):
        def __init__(self):
            if state["final"] is None and current_build_context().is_final:
                state["final"] = (state["examples"], time.perf_counter() - state["t0"])
            elif deadline is not None and time.perf_counter() > deadline:
                raise OutOfBudget
            super().__init__()

        def teardown(self):
            state["examples"] += 1
            super().teardown()

    Counting.__name__ = Counting.__qualname__ = base.__name__
    state["settings"] = base.TestCase.settings
    return seed(seed_value)(Counting), state


def clause_of(exc: BaseException) -> str:
    clause = getattr(exc, "clause", None)
    if clause:
        return clause
    for sub in getattr(exc, "exceptions", ()) or ():
        clause = getattr(sub, "clause", None)
        if clause:
            return clause
    return type(exc).__name__


def run_machine(impl, seed_value, max_examples: int, budget: float | None, arch: str = ARCH,
                scenario: str = "mixed") -> dict:
    t0 = time.perf_counter()
    cls, state = counting_machine(impl, seed_value, None if budget is None else t0 + budget,
                                  arch, scenario)
    state["t0"] = t0
    clause = None
    out_of_budget = False
    try:
        run_state_machine_as_test(cls, settings=machine_settings(max_examples, state["settings"]))
    except OutOfBudget:
        out_of_budget = True
    except Exception as exc:  # noqa: BLE001 - any failure of the machine catches the mutant
        clause = clause_of(exc)
    elapsed = time.perf_counter() - t0
    if state["final"] is not None:
        examples, seconds = state["final"]  # up to the start of the final replay
    else:
        examples, seconds = state["examples"], elapsed
    return {"seed": seed_value, "caught": clause is not None, "clause": clause,
            "examples": examples, "seconds": round(seconds, 3), "wall_s": round(elapsed, 3),
            "out_of_budget": out_of_budget}


def bench_examples(n: int, reps: int) -> dict:
    impl = resolve("reference")
    runs = []
    for rep in range(reps):
        gc.collect()
        r = run_machine(impl, 1000 + rep, n, None)
        if r["caught"]:
            raise SystemExit(f"the reference failed the conformance machine ({r['clause']}) with "
                             f"seed {r['seed']}: not benchmarking a failing suite")
        r["examples_per_s"] = r["examples"] / r["wall_s"]
        runs.append(r)
    return {"examples_per_s": statistics.median(r["examples_per_s"] for r in runs),
            "max_examples": n, "reps": reps,
            "examples": [r["examples"] for r in runs], "wall_s": [r["wall_s"] for r in runs]}


def hunt(impl, seed_value: int, max_examples: int, budget: float, arch: str) -> dict:
    """Hunt a mutant as tests/selftest/test_zoo.py does: the scenarios in turn, at most
    :data:`SLICE_S` seconds each, until caught or ``budget`` seconds are spent; the examples and
    seconds of the slices add up."""
    spent, examples, order = 0.0, 0, []
    r: dict = {"seed": seed_value, "caught": False, "clause": None}
    while True:
        for scenario in SCENARIOS:
            left = budget - spent
            if left <= 0:
                return {**r, "examples": examples, "seconds": round(spent, 3), "scenarios": order}
            r = run_machine(impl, seed_value, max_examples, min(SLICE_S, left), arch, scenario)
            spent += r["seconds"] if r["caught"] else r["wall_s"]
            examples += r["examples"]
            order.append(scenario)
            if r["caught"]:
                return {**r, "examples": examples, "seconds": round(spent, 3), "scenarios": order}


def bench_mutant(name: str, nseeds: int, budget: float, max_examples: int, log) -> dict:
    impl = resolve(name)
    expected = tuple(getattr(impl, "expected", ()) or ())
    arch = impl.arches[0] if impl.arches else ARCH  # where the mutant's bug lives
    runs = []
    for s in range(nseeds):
        gc.collect()
        r = hunt(impl, s, max_examples, budget, arch)
        r["expected"] = r["caught"] and r["clause"] in expected
        runs.append(r)
        what = (f"caught {r['clause']}{'' if r['expected'] else ' (NOT in .expected)'}"
                if r["caught"] else "not caught")
        log(f"  {name} seed {s}: {what} after {r['examples']} examples, {r['seconds']:.1f} s "
            f"({arch}, {' > '.join(r['scenarios'])})")
    caught = [r for r in runs if r["caught"]]
    return {
        "median_s": round(statistics.median(r["seconds"] for r in caught), 3) if caught else None,
        "caught": len(caught),
        "seeds": nseeds,
        "clauses": sorted({r["clause"] for r in caught}),
        "all_expected": all(r["expected"] for r in caught),
        "expected": list(expected),
        "median_examples": statistics.median(r["examples"] for r in caught) if caught else None,
        "budget_s": budget,
        "arch": arch,
        "runs": runs,
    }


# --------------------------------------------------------------------------------------------
# the exhaustive sweep and xdist scaling


def bench_sweep(name: str, bound: int = 1) -> dict:
    """Time for the exhaustive sweep (deterministic: one run) to catch ``name`` on its arch."""
    impl = resolve(name)
    arch = impl.arches[0] if impl.arches else ARCH
    t0 = time.perf_counter()
    r = sweep(impl, arch, bound=bound)
    caught = r.violation is not None
    return {"caught": caught, "s": round(time.perf_counter() - t0, 2), "bound": bound,
            "clause": r.violation.clause if caught else None, "pairs": r.pairs,
            "schedules": r.schedules, "pair": str(r.pair) if caught else None,
            "expected": caught and r.violation.clause in impl.expected}


def bench_xdist(workers: int, arches: list[str], examples: int) -> dict:
    """Examples per second of ``pytest -n WORKERS --pyargs pgconform.conformance.test_conformance``
    (the module a checkout's tests/conformance/test_conformance.py re-exports) on ``arches`` (3
    scenarios each) with the ``bench`` profile (``examples`` per item, derandomized), wall time
    of the whole pytest run (start-up included).  It runs in an empty temporary directory with
    this pgconform first on the path, so it needs no checkout (and no checkout's conftest.py):
    the plugin registers the ``bench`` profile (pgconform/harness/profiles.py)."""
    import subprocess
    import tempfile

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-p", "no:pgconform", "-p", "pgconform.plugin", "-n", str(workers),
           "--pyargs", "pgconform.conformance.test_conformance", "--hypothesis-profile", "bench"]
    for a in arches:
        cmd += ["--arch", a]
    path = os.pathsep.join([str(PACKAGE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = dict(os.environ, PGCONFORM_BENCH_EXAMPLES=str(examples), PYTHONPATH=path)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pgconform-bench-") as cwd:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    items = len(arches) * len(SCENARIOS)
    if out.returncode != 0:
        return {"error": out.stdout[-2000:] + out.stderr[-2000:], "wall_s": round(wall, 2)}
    return {"workers": workers, "items": items, "examples": items * examples,
            "wall_s": round(wall, 2), "examples_per_s": round(items * examples / wall, 2)}


# --------------------------------------------------------------------------------------------
# reporting

SWEEP_NOTE = ("The sweep column: the exhaustive sweep (pgconform/harness/sweep.py, preemption "
              "bound 1, deterministic, one run) on the mutant's arch: seconds to the first "
              "violation.")
MUTANTS_HEAD = ("| Mutant | Arch | Caught | Median s | Median examples | Clauses | In .expected | "
                "Sweep s |")


def markdown(result: dict) -> str:
    cfg = result["config"]
    eff = result["details"]["effects"]
    ex = result["details"]["examples"]
    title = (f"pgconform benchmark, {result['date']} (Python {result['python']}, "
             f"Hypothesis {result['hypothesis']}{', --quick' if cfg['quick'] else ''})")
    load = result["loadavg_1min"]
    note = (f"_{NOTE}; {result['cpus']} CPUs visible, 1-minute load average {load['start']:.2f} "
            f"at start and {load['end']:.2f} at end._")
    effects_row = (f"| effects_per_s | {result['effects_per_s']:,.0f} | reference, {eff['runs']} "
                   f"PCT runs x {OPS_PER_RUN} ops + finish(), median of {eff['reps']}; world "
                   f"building excluded ({eff['effects_per_s_incl_build']:,.0f}/s with it) |")
    inproc = result["examples_per_s"].get("inproc", result["examples_per_s"]["1"])
    examples_row = (f"| examples_per_s (in process, 1 core) | {inproc:.1f} | reference, "
                    f"max_examples={ex['max_examples']}, generate phase, median of {ex['reps']} |")
    mutants_head = (f"Time to catch each mutant: generate phase only (no shrinking), budget "
                    f"{cfg['budget']:g} s and at most {cfg['max_examples']} examples per seed, "
                    f"seeds 0..{cfg['seeds'] - 1} via `hypothesis.seed`, on the mutant's arch, "
                    f"the scenarios in turn ({' > '.join(SCENARIOS)}, {SLICE_S} s each, as "
                    f"tests/selftest/test_zoo.py); median over caught seeds.")
    xd = result["details"].get("xdist", {})
    xrows = []
    for w in ("1", "2"):
        if w in result["examples_per_s"] and w in xd:
            xrows.append(f"| examples_per_s ({w} xdist worker{'s' if w == '2' else ''}) | "
                         f"{result['examples_per_s'][w]:.1f} | pytest -n {w}, {xd[w]['items']} "
                         f"items x {xd[w]['examples'] // xd[w]['items']} examples, wall "
                         f"{xd[w]['wall_s']:.1f} s with start-up |")
    if "speedup_2_workers" in result:
        xrows.append(f"| speed-up, 2 workers | {result['speedup_2_workers']:.2f}x | ratio of "
                     "the two rows above |")
    lines = [
        title, "", note, "",
        "| Measure | Value | How |",
        "|---|---|---|",
        effects_row,
        examples_row,
        *xrows,
        "",
        mutants_head,
        "",
        SWEEP_NOTE,
        "",
        MUTANTS_HEAD,
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, mu in result["mutants"].items():
        med = "-" if mu["median_s"] is None else f"{mu['median_s']:.1f}"
        mex = "-" if mu["median_examples"] is None else f"{mu['median_examples']:.0f}"
        ok = "-" if not mu["caught"] else ("yes" if mu["all_expected"] else "NO")
        sw = mu.get("sweep") or {}
        sws = (f"{sw['s']:.1f} ({sw['clause']})" if sw.get("caught")
               else (f"not in {sw['s']:.0f}" if sw else "-"))
        lines.append(f"| {name} | {mu.get('arch', ARCH)} | {mu['caught']}/{mu['seeds']} | {med} | "
                     f"{mex} | {', '.join(mu['clauses']) or '-'} | {ok} | {sws} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller workloads, 1 seed and a 4 s budget per mutant, no sweep (whole "
                        "run under 3 minutes)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the results as a Markdown table")
    p.add_argument("--seeds", type=int, help="seeds per mutant (default 5, quick 1)")
    p.add_argument("--budget", type=float, help="seconds per mutant seed (default 120, quick 4)")
    p.add_argument("--max-examples", type=int, default=100_000,
                   help="max_examples per mutant seed (default 100000)")
    p.add_argument("--mutants", metavar="NAME,...",
                   help="mutants to time (default: every registered zoo.* name); '' for none")
    p.add_argument("--no-xdist", action="store_true",
                   help="skip the 1- and 2-worker pytest-xdist runs")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip the exhaustive sweep's time to catch each mutant")
    args = p.parse_args(argv)

    quick = args.quick
    nseeds = args.seeds if args.seeds is not None else (1 if quick else 5)
    budget = args.budget if args.budget is not None else (4.0 if quick else 120.0)
    effect_runs, effect_reps = (100, 5) if quick else (400, 5)
    ex_n, ex_reps = (100, 3) if quick else (300, 5)
    zoo = [n for n in registered_names() if n.startswith("zoo.")]
    if args.mutants is None:
        mutants = zoo
    else:
        mutants = [n.strip() for n in args.mutants.split(",") if n.strip()]
        unknown = [n for n in mutants if n not in zoo]
        if unknown:
            p.error(f"not zoo mutants: {', '.join(unknown)} (registered: {', '.join(zoo)})")

    def log(msg):
        print(msg, flush=True)

    load_start = os.getloadavg()
    log(f"pgconform bench: Python {platform.python_version()}, Hypothesis "
        f"{hypothesis.__version__}, {os.cpu_count()} CPUs visible, load average "
        f"{load_start[0]:.2f}; {NOTE}")
    started = time.perf_counter()

    loaded = preload()
    log(f"[1/3] engine: {effect_runs} runs x {effect_reps} reps ...")
    eff = bench_effects(effect_runs, effect_reps)
    log(f"  effects_per_s = {eff['effects_per_s']:,.0f} (incl. world building "
        f"{eff['effects_per_s_incl_build']:,.0f}; {eff['effects_per_run']} effects per rep)")

    log(f"[2/3] conformance machine on the reference: max_examples={ex_n} x {ex_reps} reps ...")
    ex = bench_examples(ex_n, ex_reps)
    log(f"  examples_per_s = {ex['examples_per_s']:.1f}")

    xdist = {}
    if not args.no_xdist:
        x_arches, x_n = (["x86_64", "s390"], 100) if quick else (["x86_64", "s390", "powerpc64",
                                                                   "x86_pae"], 300)
        for w in (1, 2):
            log(f"[xdist] pytest -n {w}: {len(x_arches) * len(SCENARIOS)} items x {x_n} "
                "examples ...")
            xdist[str(w)] = bench_xdist(w, x_arches, x_n)
            log(f"  {xdist[str(w)]}")

    log(f"[3/3] mutants: {len(mutants)} x {nseeds} seeds, budget {budget:g} s each ...")
    mres = {name: bench_mutant(name, nseeds, budget, args.max_examples, log) for name in mutants}
    if not args.no_sweep and not quick:
        for name in mutants:
            mres[name]["sweep"] = bench_sweep(name)
            log(f"  {name} sweep: {mres[name]['sweep']}")

    late = sorted(local_modules() - loaded)
    if late:
        log(f"warning: local modules first imported during the runs (seeds may not repeat): "
            f"{', '.join(late)}")
    result = {
        "effects_per_s": round(eff["effects_per_s"]),
        "examples_per_s": {"1": round(ex["examples_per_s"], 2)},
        "mutants": mres,
        "python": platform.python_version(),
        "hypothesis": hypothesis.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "note": NOTE,
        "cpus": os.cpu_count(),
        "loadavg_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "config": {"quick": quick, "seeds": nseeds, "budget": budget,
                   "max_examples": args.max_examples, "arch": ARCH,
                   "stateful_step_count": machine_settings(1).stateful_step_count},
        "details": {"effects": eff, "examples": ex, "late_local_modules": late,
                    "xdist": xdist},
        "total_s": round(time.perf_counter() - started, 1),
    }
    if all("examples_per_s" in xdist.get(w, {}) for w in ("1", "2")):
        # the figures: examples/s with 1 and 2 xdist workers; in-process stays "inproc"
        result["examples_per_s"] = {"inproc": result["examples_per_s"]["1"],
                                    "1": xdist["1"]["examples_per_s"],
                                    "2": xdist["2"]["examples_per_s"]}
        result["speedup_2_workers"] = round(xdist["2"]["examples_per_s"]
                                            / xdist["1"]["examples_per_s"], 2)
    md = markdown(result)
    log("")
    log(md)
    log(f"total {result['total_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
