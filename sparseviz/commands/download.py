"""`sparseviz download NAME`: fetch torchvision weights once, while online."""

from __future__ import annotations

import argparse

from ..models import download_weights


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("download", help="download a torchvision model's weights into the torch cache")
    parser.add_argument("name", help="a torchvision model from `sparseviz models`")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = download_weights(args.name)
    print(f"{args.name}: weights at {path}")
    return 0
