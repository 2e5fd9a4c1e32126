"""`sparseviz audit DIR --out DIR`: the sparse attack over a folder, and a readable report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..attacks import ATTACKS
from ..audit import run_audit, write_audit
from ..bench import build_config, load_folder, parse_overrides
from ..models import DEFAULT_MODEL, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="attack every image of a folder and write a fragility report",
        description="Run the sparse attack on every image of a folder (flat, or one subfolder per class, whose "
        "name is the true label) and write report.md, report.html, audit.csv, adversarials/ and thumbnails/. "
        "Unreadable files are listed and skipped.",
    )
    parser.add_argument("folder", type=Path, help="a folder of images (flat, or one subfolder per class)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the report")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=f"model to audit (default {DEFAULT_MODEL})")
    parser.add_argument("--attack", default="sparse", choices=[n for n, s in ATTACKS.items() if s.kind == "sparse"],
                        help="which sparse attack measures the pixel counts (default sparse)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", dest="overrides",
                        help="change one option of the attack, e.g. steps=40 (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=None, help="time budget per image")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N readable images")
    parser.add_argument("--easiest", type=int, default=8, help="thumbnails of this many easiest flips (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(f"{args.attack}.{item}" for item in args.overrides)
    config = build_config(args.attack, overrides.get(args.attack), max_seconds=args.max_seconds)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1; got {args.limit}.")
    if not 0 <= args.easiest <= 1000:
        raise ValueError(f"--easiest must be in 0..1000; got {args.easiest}.")
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise ValueError(f"--threads must be in 1..1024; got {args.threads}.")
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    folder = load_folder(args.folder, model, limit=args.limit)
    for name, reason in folder.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if not folder.images:
        raise ValueError(f"no readable images in {args.folder}.")
    bar = tqdm(total=len(folder.images), desc="audit", unit="image", disable=args.quiet)

    def on_step(image: str) -> None:
        bar.set_postfix_str(image)
        bar.update(1)

    report = run_audit(model, folder, out=args.out, config=config, attack=args.attack, on_step=on_step)
    bar.close()
    csv_path, md_path, html_path = write_audit(report, args.out, easiest=args.easiest)
    attacked = [r for r in report.rows if r["status"] == "attacked"]
    print(f"fooled {len(report.flipped)}/{len(attacked)} attacked images "
          f"({len(report.rows) - len(attacked)} misclassified, {len(report.skipped)} skipped); "
          f"wrote {md_path}, {html_path}, {csv_path}")
    return 0
