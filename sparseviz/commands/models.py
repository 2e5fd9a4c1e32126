"""`sparseviz models`: list the registry and whether each model works offline here."""

from __future__ import annotations

import argparse

from ..models import MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list available models and whether their weights are here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    width = max(len(name) for name in MODELS)
    for name, spec in MODELS.items():
        status = "weights available" if spec.weights_available() else f"weights missing ({spec.how_to_get})"
        print(f"{name:<{width}}  {status:<40}  {spec.description}")
    return 0
