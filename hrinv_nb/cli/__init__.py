"""The ``hrinv`` command-line tool: ``invert`` photos, ``stylize`` them, ``evaluate`` stylised folders.

``main(argv)`` parses, runs one subcommand and returns its exit code: 0 on success, 2 for a bad
command line or input (a message naming the file, no traceback; ``--debug`` shows it), 130 on Ctrl-C.
Nothing runs on import; the subcommands import torch-heavy modules only when they run.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from ..errors import HrinvError
from .common import EXIT_USAGE

DESCRIPTION = """\
HRInversion from the command line: invert photos into a StyleGAN2 generator, stylise them with a
target-style generator (model blending + Local Style Optimisation), and score stylised folders
(ID retrieval, FID). Without weight options everything runs on the embedded 64x64 toy world.

Examples:

  hrinv invert photo.png --out inv/
  hrinv stylize photo.png --styles samples:4 --out styl/
  hrinv evaluate --contents photos/ --stylized styl/

Run 'hrinv COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``hrinv`` parser with its three subcommands."""
    from . import evaluate, invert, stylize

    parser = argparse.ArgumentParser(
        prog="hrinv", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"hrinv_nb {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    invert.add_parser(sub)
    stylize.add_parser(sub)
    evaluate.add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hrinv`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as stop:  # --help, --version and usage errors
        return int(stop.code) if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_USAGE)
    prog = f"hrinv {args.command}"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; finished images are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    except (HrinvError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as err:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


__all__ = ["build_parser", "main"]
