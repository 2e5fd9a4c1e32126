"""`sparseviz app`: start the Streamlit app with the default model and flip warmed up at server start.

``streamlit run app.py`` works too; it starts the same warm-up when the first visitor
arrives, so that visitor waits for it. This command starts it with the server, so a page
opened a few seconds later shows its first flip at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..app.demo import flip_headline
from ..app.launch import serve
from ..app.warmup import DISABLE_ENV, start
from ..attacks.base import AttackResult
from ..models import DEFAULT_MODEL, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "app", help="start the web app (default model and first flip computed at server start)",
        description="Start the Streamlit app. Extra arguments after -- go to "
        "`streamlit run` (e.g. -- --server.address 0.0.0.0).",
    )
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--no-warmup", action="store_true", help="do not attack the default photo at start")
    parser.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="arguments for `streamlit run`")
    parser.set_defaults(handler=run)


def _report(outcome: AttackResult | BaseException, seconds: float) -> None:
    """One line on the server's console when the first flip is ready (or why it is not)."""
    if isinstance(outcome, BaseException):
        print(f"sparseviz app: warm-up failed after {seconds:.1f} s ({outcome}); attacks run on demand.",
              file=sys.stderr, flush=True)
        return
    names = load_model(DEFAULT_MODEL, device="auto").class_names
    print(f"sparseviz app: warm-up done in {seconds:.1f} s: {flip_headline(outcome, names)}", file=sys.stderr,
          flush=True)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535; got {args.port}.")
    if args.no_warmup:
        os.environ[DISABLE_ENV] = "1"
    else:
        start(on_done=_report)
    return serve(args.port, [a for a in args.streamlit_args if a != "--"])
