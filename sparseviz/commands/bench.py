"""`sparseviz bench --images DIR --model NAME --out DIR`: every attack side by side on the same images."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..attacks import ATTACKS
from ..images.folders import load_folder
from ..audit.bench import build_config, parse_overrides, run_bench, summary_table, write_csv, write_summary
from ..models import DEFAULT_MODEL, load_model

DEFAULT_ATTACKS = "sparse,sparsefool,pgd0,sparse_rs,pgd,fgsm"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="run several attacks on a folder of images and write a CSV + summary",
        description="Run every chosen attack on the same preprocessed images (one at a time, so seconds are "
        "per image) and write results.csv, summary.md and summary.html, measured on the saved 8-bit PNGs.",
    )
    parser.add_argument("--images", required=True, type=Path, help="a folder of images (flat, or one subfolder per class)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=f"model to attack (default {DEFAULT_MODEL})")
    parser.add_argument("--attacks", default=DEFAULT_ATTACKS,
                        help=f"comma-separated, from: {', '.join(ATTACKS)} (default {DEFAULT_ATTACKS})")
    parser.add_argument("--targeted", action="store_true", help="targeted: a seeded random other class per image")
    parser.add_argument("--transfer", default="", metavar="MODEL,...", help="other models to test the adversarial images on")
    parser.add_argument("--out", required=True, type=Path, help="folder for results.csv, summary.md/html, adversarials/")
    parser.add_argument("--set", action="append", default=[], metavar="ATTACK.OPTION=VALUE", dest="overrides",
                        help="change one attack option, e.g. sparsefool.max_iter=10 or sparse_rs.queries=300, or a field of "
                        "the sparse attack's tuning (of the untargeted or targeted preset the run uses), e.g. "
                        "sparse.tuning.patience=8; fields: SparseTuning in sparseviz/attacks/sparse/config.py (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="time budget per attack call for every attack that has one (default: none)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N readable images")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per attack call (default 1: honest per-image seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed for target classes (attacks have their own seed option)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _command_line(args: argparse.Namespace, attacks: list[str]) -> str:
    """The equivalent command, rebuilt from the parsed options (for the summary)."""
    parts = ["sparseviz", "bench", "--images", str(args.images), "--model", args.model, "--attacks", ",".join(attacks)]
    if args.targeted:
        parts.append("--targeted")
    if args.transfer:
        parts += ["--transfer", args.transfer]
    for item in args.overrides:
        parts += ["--set", item]
    for flag, value in (("--max-seconds", args.max_seconds), ("--limit", args.limit), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    if args.batch_size != 1:
        parts += ["--batch-size", str(args.batch_size)]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(part) for part in parts)


def run(args: argparse.Namespace) -> int:
    attacks = [name.strip() for name in args.attacks.split(",") if name.strip()]
    unknown = [name for name in attacks if name not in ATTACKS]
    if not attacks or unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown) or '(none given)'}; choose from: {', '.join(ATTACKS)}.")
    overrides = parse_overrides(args.overrides)
    stray = [name for name in overrides if name not in attacks]
    if stray:
        raise ValueError(f"--set names attack(s) not being run: {', '.join(stray)}.")
    configs = {name: build_config(name, overrides.get(name), max_seconds=args.max_seconds) for name in attacks}
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1; got {args.limit}.")
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise ValueError(f"--threads must be in 1..1024; got {args.threads}.")
        torch.set_num_threads(args.threads)

    model = load_model(args.model, device=args.device)
    transfer_names = [name.strip() for name in args.transfer.split(",") if name.strip()]
    transfer = [load_model(name, device=args.device) for name in transfer_names if name != model.name]
    folder = load_folder(args.images, model, limit=args.limit)
    for name, reason in folder.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if not folder.images:
        raise ValueError(f"no readable images in {args.images}.")

    bar = tqdm(total=len(folder.images) * len(attacks), desc="bench", unit="attack", disable=args.quiet)

    def on_step(image: str, attack: str) -> None:
        bar.set_postfix_str(f"{attack} {image}")
        bar.update(1)

    result = run_bench(
        model, folder.images, attacks, out=args.out, configs=configs, targeted=args.targeted, transfer=transfer,
        batch_size=args.batch_size, seed=args.seed, on_step=on_step,
    )
    bar.close()
    command = _command_line(args, attacks)
    csv_path = write_csv(result, args.out / "results.csv")
    md_path, html_path = write_summary(result, args.out, skipped=folder.skipped, command=command)
    header, table = summary_table(result)
    width = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(cell).rjust(width[i]) if i else str(cell).ljust(width[i]) for i, cell in enumerate(row)))
    print(f"wrote {csv_path}, {md_path}, {html_path}")
    return 0
