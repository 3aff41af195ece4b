"""Command line: ``python -m pgconform SUBCOMMAND`` (also installed as ``pgconform``).

Subcommands are registered in :func:`build_parser`; each sets ``func`` (taking the parsed arguments
and returning an exit status) with ``set_defaults``, except those in :data:`DELEGATED`, whose own
module parses their options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    from pgconform.registry import registered

    for name, target in registered().items():
        print(f"{name}\t{target}" if args.verbose else name)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    """Run a replay string again (a conformance machine's or the sweep's); exit 1 if it fails
    (printing the verdict), 0 if it passes, 2 if the string or the implementation cannot be used
    or the string no longer applies (another format or model version; a step whose rule cannot
    run there, or a decision naming a task that cannot)."""
    from pgconform.harness.replay import (
        ReplayError,
        SweepRun,
        check_determinism,
        decode,
        replay_run,
    )
    from pgconform.implementation import ImplementationError

    try:
        run = decode(args.string)
        spec = args.impl or run.spec
        where = (f"sweep world {run.world}, {len(run.decisions)} decisions"
                 if isinstance(run, SweepRun) else f"scenario {run.scenario}, "
                 f"{len(run.steps)} steps")
        print(f"pgconform: replaying {where}, judging {spec} on {run.arch}")
        replayed = replay_run(run, args.impl)
    except (ReplayError, ImplementationError) as e:
        print(f"pgconform replay: error: {e}", file=sys.stderr)
        return 2
    if replayed.stale is not None:
        if args.impl in (None, run.spec):
            print(f"pgconform replay: error: the replay string no longer applies to "
                  f"{run.spec}: {replayed.stale} (recorded with another model or "
                  "implementation version? record the failure again)", file=sys.stderr)
            return 2
        print(f"pgconform: note: judging {spec}, not the recorded {run.spec}: "
              f"{replayed.stale}")
    machine, violation = replayed.machine, replayed.violation
    if args.check_determinism:
        odd = check_determinism(run, args.impl)
        if odd is not None:
            print(odd.headline())
            return 1
    if violation is None:
        print("no violation: the schedule passes")
        return 0
    if args.html and machine is not None:
        from pgconform.report.timeline import write_html

        write_html(args.html, machine, violation, title=f"{spec} on {run.arch}")
    if args.full and machine is not None:
        from pgconform.report.trace import render

        violation.diagram = render(machine, violation, full=True)
    print(violation)
    return 1


#: Subcommands that parse their own options (``python -m pgconform NAME --help``): the module whose
#: ``main(argv)`` runs them, and the line ``python -m pgconform --help`` shows.
DELEGATED = {
    "bench": ("pgconform.tools.bench", "the benchmark: effects/s, examples/s with 1 and 2 xdist "
                                 "workers, time to catch each mutant; --json PATH, --quick"),
    "windows": ("pgconform.tools.windows", "which race windows of the reference a run reaches "
                                     "(coverage.py)"),
    "matrix": ("pgconform.tools.matrix", "the version matrix: which clauses each kernel version "
                                         "fails on which arch"),
    "soak": ("pgconform.tools.soak", "judge an implementation at volume (machines and sweep on "
                                     "every arch) and write the figures"),
    "userrun": ("pgconform.tools.userrun", "judge each zoo mutant by the conformance command a "
                                           "user types, with no stored examples"),
    "corpus": ("pgconform.tools.corpus", "hunt each zoo mutant and store the replay string of its "
                                   "shrunk failure in the package's history_schedules.json"),
    "craft": ("pgconform.tools.craft", "search structured schedules for one that fails a mutant "
                                 "and passes the reference; store its replay string"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgconform",
        description="Conformance suite for the 'free retracted page table by RCU' series.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="print the registered implementation names, one per line")
    p_list.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the module:attr each name resolves to",
    )
    p_list.set_defaults(func=_cmd_list)

    p_replay = sub.add_parser("replay", help="run a failure again from the replay string it "
                              "printed; exit status 1 if it fails, 0 if it passes, 2 if the "
                              "string cannot be used or no longer applies")
    p_replay.add_argument("string", help="the string after 'replay:' in the failure (pgc1:...), "
                          "of a conformance machine or the sweep")
    p_replay.add_argument("--impl", metavar="SPEC", default=None,
                          help="judge this implementation instead of the one the string names")
    p_replay.add_argument("--html", metavar="PATH", default=None,
                          help="also write the failing schedule as an HTML timeline")
    p_replay.add_argument("--full", action="store_true",
                          help="show every effect of the run in the diagram, not only those "
                               "that touch the objects involved")
    p_replay.add_argument("--check-determinism", action="store_true",
                          help="run the schedule twice more and report if the runs differ")
    p_replay.set_defaults(func=_cmd_replay)

    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, add_help=False,
                       help=f"{text} (python -m pgconform {name} --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from pgconform.kernel.config import plain_reads_form
    from pgconform.sim.watchdog import first_timeout_s

    try:  # every subcommand builds kernels and runs them under the watchdog: say it up front
        plain_reads_form()
        first_timeout_s()
    except ValueError as exc:
        print(f"pgconform: error: {exc}", file=sys.stderr)
        return 2
    if argv and argv[0] in DELEGATED:  # it parses its own options
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)  # an unknown subcommand exits 2 with usage on stderr
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a subcommand is required", file=sys.stderr)
        return 2
    try:
        return int(func(args))
    except BrokenPipeError:  # the output piped into head or less, closed early
        return 1


if __name__ == "__main__":
    sys.exit(main())
