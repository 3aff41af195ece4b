"""Race-window coverage: which racy branches of the reference (and of the machine) a run reached.

A race window is a branch that only a race takes: ``pte_offset_map_lock()`` finding the PMD
changed after it took the ptl and retrying, retract's recheck under the ptl failing,
``collapse_pte_mapped_thp()`` losing its table between steps, a grace period delaying a free, an
IPI waiting on a CPU with interrupts off...  Each is marked in the source with a comment
``# window: NAME``, on the line only that branch executes (or alone on the line before it).

The report comes from coverage.py's data (line and branch), so a run can say what it did *not*
reach: ``python -m pgconform windows`` runs the conformance machines (and the sweep) under
coverage and prints the table; ``python -m pgconform windows --data .coverage`` reads an existing
data file, such as the combined one ``tox -e cov`` leaves under xdist.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import attrs

PACKAGE = Path(__file__).resolve().parents[1]
#: where the windows are marked
SOURCES = ("reference", "sim", "kernel")
_MARK = re.compile(r"#\s*window:\s*(.+?)\s*$")


@attrs.frozen
class Window:
    name: str
    path: str
    line: int  # the line that executes only in the window


def windows() -> list[Window]:
    """Every marked window, in source order."""
    found = []
    for sub in SOURCES:
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            lines = path.read_text().splitlines()
            for n, text in enumerate(lines, start=1):
                m = _MARK.search(text)
                if not m:
                    continue
                line = n
                if text.strip().startswith("#"):  # a marker alone: the next code line
                    line = next(i for i in range(n + 1, len(lines) + 1)
                                if lines[i - 1].strip()
                                and not lines[i - 1].strip().startswith("#"))
                found.append(Window(m.group(1), str(path), line))
    return found


def reached(data) -> dict[Window, bool]:
    """For each window, whether ``data`` (a ``coverage.CoverageData``) has its line executed."""
    out = {}
    measured = {str(Path(f).resolve()): set(data.lines(f) or ()) for f in data.measured_files()}
    for w in windows():
        out[w] = w.line in measured.get(str(Path(w.path).resolve()), set())
    return out


def report(result: dict[Window, bool]) -> str:
    hit = sum(result.values())
    lines = [f"race windows reached: {hit} of {len(result)}"]
    for w, ok in result.items():
        where = f"{Path(w.path).relative_to(PACKAGE.parent)}:{w.line}"
        lines.append(f"  {'reached' if ok else 'MISSED '}  {w.name}  ({where})")
    return "\n".join(lines)


def run_under_coverage(spec: str, arches: list[str], examples: int, sweep: bool):
    """Run the conformance machines (``examples`` per scenario) and, with ``sweep``, the
    exhaustive sweep, on ``arches``, under coverage; return the coverage data."""
    import coverage
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    cov = coverage.Coverage(branch=True, data_file=None, config_file=False,
                            include=[str(PACKAGE / s / "*") for s in SOURCES])
    cov.start()
    try:
        from pgconform.harness.machines import SCENARIOS, make_machine
        from pgconform.harness.sweep import sweep as run_sweep
        from pgconform.registry import resolve

        impl = resolve(spec)
        config = settings(max_examples=examples, database=None, deadline=None,
                          stateful_step_count=20, derandomize=True,
                          suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        for arch in arches:
            for scenario in SCENARIOS:
                run_state_machine_as_test(make_machine(impl, arch, scenario=scenario),
                                          settings=config)
            if sweep:
                run_sweep(impl, arch, bound=1)
    finally:
        cov.stop()
    return cov.get_data()


def _error(message: str) -> int:
    """A usage error: one line on stderr, exit status 2 (as argparse's own)."""
    print(f"pgconform windows: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pgconform windows", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="FILE", help="read this coverage data file instead of running")
    p.add_argument("--impl", default="reference", metavar="SPEC")
    p.add_argument("--arch", action="append", metavar="NAME",
                   help="architecture (repeatable; default x86_64)")
    p.add_argument("--examples", type=int, default=200, help="examples per machine (default 200)")
    p.add_argument("--no-sweep", action="store_true", help="run the machines only")
    args = p.parse_args(argv)
    try:
        import coverage
    except ImportError:
        return _error("coverage.py is not installed (pip install 'pgconform[cov]')")
    if args.data:
        if not Path(args.data).is_file():
            return _error(f"--data {args.data}: no such file")
        data = coverage.CoverageData(basename=args.data)
        try:
            data.read()
        except Exception as e:  # noqa: BLE001 - coverage raises its own and sqlite's errors
            return _error(f"--data {args.data}: not a coverage data file ({e})")
        sources = {str(Path(w.path).resolve()) for w in windows()}
        if not sources & {str(Path(f).resolve()) for f in data.measured_files()}:
            return _error(f"--data {args.data}: measured none of pgconform's sources with race "
                          f"windows ({', '.join(SOURCES)}); was it a run of pgconform?")
    else:
        from pgconform.implementation import ImplementationError
        from pgconform.kernel.arch import ARCHES
        from pgconform.registry import resolve

        try:
            resolve(args.impl)
        except ImplementationError as e:
            return _error(f"--impl: {e}")
        unknown = [a for a in args.arch or () if a not in ARCHES]
        if unknown:
            return _error(f"unknown --arch {', '.join(unknown)}; known: {', '.join(ARCHES)}")
        data = run_under_coverage(args.impl, args.arch or ["x86_64"], args.examples,
                                  not args.no_sweep)
    print(report(reached(data)))
    return 0

if __name__ == "__main__":
    sys.exit(main())
