"""The `fnl` command: `fnl demo` (the main job until training exists); `fnl --help`."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

COMMANDS = {
    "demo": "SI vs random factors and Frobenius decay vs weight decay on a matrix problem (a table)",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses `fnl <command> [options]` and runs the command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="fnl", description="Factorized neural layers on a Swift engine.")
    sub = p.add_subparsers(dest="command", metavar="command")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = p.parse_known_args(argv)
    if args.command is None:
        p.print_help()
        return 2
    if args.command == "demo":
        from . import demo

        return demo.run(rest)
    p.error(f"unknown command {args.command!r}")  # unreachable: argparse rejects unknown choices
    return 2


if __name__ == "__main__":
    sys.exit(main())
