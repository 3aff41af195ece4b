"""Command line: ``python -m pgconform SUBCOMMAND`` (also installed as ``pgconform``).

Subcommands are registered in :func:`build_parser`; each sets ``func`` (taking the parsed arguments
and returning an exit status) with ``set_defaults``.
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # an unknown subcommand exits 2 with usage on stderr
    func = getattr(args, "func", None)
    if func is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a subcommand is required", file=sys.stderr)
        return 2
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
