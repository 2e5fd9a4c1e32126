"""The ``sparseviz`` console script: argparse wiring only, the work is library calls.

Each subcommand lives in ``sparseviz.commands.<name>`` as ``register(subparsers)``,
which adds its parser and sets ``handler``. Expected failures (bad files, unknown
models, impossible parameters) surface as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__
from .views.text import one_line

# Order here is the order in `sparseviz --help`.
COMMAND_MODULES = ["attack", "predict", "models", "download", "explain", "bench", "audit", "app"]


class CommandError(Exception):
    """An expected failure: printed as one line, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseviz",
        description="How few pixels it takes to fool an image classifier, and why.",
    )
    parser.add_argument("--version", action="version", version=f"sparseviz {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"sparseviz.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("sparseviz: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as error:
        # ValueError covers ModelError, ImageLoadError and config validation: all say what to fix.
        print(f"sparseviz {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
