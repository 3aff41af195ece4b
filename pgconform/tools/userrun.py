"""The zoo judged by the command a user types: for each mutant,

    pytest -n WORKERS --dist worksteal tests/conformance --impl NAME --arch ARCH -x

on the architecture the mutant's bug lives on (its first ``arches``, else x86_64; with
``--all-arches``, every one), run in a copy of the suite with no example database (as on a fresh
clone, so no stored failure replays), the wall time until pytest stopped at the first failure, and
which item and clause failed.  This is the figure behind "every zoo mutant is caught by the
conformance run a user would type": the random machines and the exhaustive sweep as they run by
default, nothing stored.

    python -m pgconform userrun [--mutants NAME,...] [--workers N] [--timeout S] [--all-arches]
                                [--profile NAME] [--json PATH] [--markdown PATH]

Exit status 0 if every mutant was caught with a clause it expects, 1 if not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: what a copy of the suite needs: the conformance modules and the profiles of the root conftest
SUITE_FILES = ("conftest.py", "pyproject.toml", "tests/conformance/test_conformance.py",
               "tests/conformance/test_exhaustive.py")


def _missing_suite_files() -> list[str]:
    return [str(ROOT / name) for name in SUITE_FILES if not (ROOT / name).exists()]


def _suite_copy(where: Path) -> Path:
    for name in SUITE_FILES:
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, where / name)
    return where


def judge(name: str, workers: int, timeout: float, profile: str | None,
          arches: tuple[str, ...] = ()) -> dict:
    """The user's conformance run of ``name`` (on ``arches``, default all), stopped at the first
    failure."""
    from pgconform.registry import resolve

    impl = resolve(name)
    with tempfile.TemporaryDirectory(prefix="pgconform-userrun-") as tmp:
        suite = _suite_copy(Path(tmp))
        report = suite / "report.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
               "-n", str(workers), "--dist", "worksteal", "tests/conformance",
               "--impl", name, "--pgconform-report", str(report)]
        if profile:
            cmd += ["--hypothesis-profile", profile]
        for arch in arches:
            cmd += ["--arch", arch]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        env.pop("PGCONFORM_IMPL", None)
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True,
                                 timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"caught": False, "s": round(time.perf_counter() - t0, 1),
                    "why": f"not caught within {timeout:g} s"}
        wall = round(time.perf_counter() - t0, 1)
        items = json.loads(report.read_text())["items"] if report.exists() else []
    failed = [i for i in items if i["outcome"] in ("failed", "errored")]
    if not failed:
        tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or [""]
        return {"caught": False, "s": wall, "exit": out.returncode, "why": tail[0]}
    first = failed[0]
    return {"caught": True, "s": wall, "exit": out.returncode,
            "item": first["nodeid"].split("/")[-1], "clause": first["clause"],
            "expected": first["clause"] in impl.expected,
            "by": "sweep" if "test_exhaustive" in first["nodeid"] else "machines"}


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    lines = ["# The zoo judged by the user's command", "",
             f"`python -m pgconform userrun --workers {cfg['workers']} --timeout "
             f"{cfg['timeout']:g}` on {data['date'][:10]} ({data['cpus']} CPUs, Python "
             f"{data['python']}, profile {cfg['profile'] or 'the default (dev)'}): each mutant "
             f"judged by `pytest -n {cfg['workers']} --dist worksteal tests/conformance --impl "
             "NAME --arch ARCH -x` (ARCH: "
             f"{'every one' if cfg.get('all_arches') else 'the one its bug lives on'}) in a copy "
             "of the suite with no example database. Wall time until pytest stopped at the first "
             "failure (start-up included); one run each.", "",
             "| mutant | arch | caught | s | by | item | clause | expected |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in data["mutants"].items():
        arch = r.get("arch", "")
        if r["caught"]:
            lines.append(f"| {name} | {arch} | yes | {r['s']} | {r['by']} | {r['item']} | "
                         f"{r['clause']} | {'yes' if r['expected'] else 'NO'} |")
        else:
            lines.append(f"| {name} | {arch} | NO | {r['s']} | | | {r['why']} | |")
    caught = sum(r["caught"] and r["expected"] for r in data["mutants"].values())
    times = sorted(r["s"] for r in data["mutants"].values() if r["caught"])
    median = times[len(times) // 2] if times else None
    lines += ["", f"{caught} of {len(data['mutants'])} caught with an expected clause; median "
                  f"{median} s, longest {times[-1] if times else None} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from pgconform.registry import registered_names

    p = argparse.ArgumentParser(prog="pgconform userrun", description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", metavar="NAME,...",
                   help="mutants to judge (default: every registered zoo.* name)")
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds a mutant's run may take (default 900)")
    p.add_argument("--profile", help="Hypothesis profile (default: the suite's, dev outside CI)")
    p.add_argument("--all-arches", action="store_true",
                   help="judge every architecture, not only the mutant's own")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the figures as Markdown")
    args = p.parse_args(argv)
    zoo = [n for n in registered_names() if n.startswith("zoo.")]
    mutants = zoo if args.mutants is None else [n.strip() for n in args.mutants.split(",")
                                                if n.strip()]
    unknown = [n for n in mutants if n not in zoo]
    if unknown or not mutants:
        p.error(f"not zoo mutants: {', '.join(unknown) or '(none given)'} "
                f"(registered: {', '.join(zoo)})")
    if args.workers < 1 or args.timeout <= 0:
        p.error("--workers must be at least 1 and --timeout positive")
    missing = _missing_suite_files()
    if missing:
        p.error(f"{', '.join(missing)} not found: run from a checkout of pgconform")
    from pgconform.registry import resolve

    results = {}
    for name in mutants:
        impl = resolve(name)
        arches = () if args.all_arches else (impl.arches[0] if impl.arches else "x86_64",)
        results[name] = judge(name, args.workers, args.timeout, args.profile, arches)
        results[name]["arch"] = ",".join(arches) or "all"
        print(f"userrun: {name:45} {results[name]}", flush=True)
    data = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "config": {"workers": args.workers, "timeout": args.timeout,
                       "profile": args.profile, "all_arches": args.all_arches},
            "mutants": results}
    md = to_markdown(data)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(md)
    return 0 if all(r["caught"] and r["expected"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
