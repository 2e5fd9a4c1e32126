"""`sparseviz audit DIR --out DIR`: the sparse attack over a folder, and a readable report.

``--engine local`` (the default) runs here, one image at a time; ``--engine ray`` spreads the
same work over a Ray cluster (see ``sparseviz.audit_ray``) and resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..attacks import ATTACKS
from ..audit.run import AuditReport, run_audit, write_audit
from ..audit.bench import build_config, parse_overrides
from ..images.folders import image_files, load_folder
from ..models import DEFAULT_MODEL, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="attack every image of a folder and write a fragility report",
        description="Run the sparse attack on every image of a folder (flat, or one subfolder per class, whose "
        "name is the true label) and write report.md, report.html, audit.csv, adversarials/ and thumbnails/. "
        "Unreadable files are listed and skipped. With --engine ray the work is spread over a Ray cluster, rows "
        "stream to rows.jsonl, and re-running the same command resumes where it stopped.",
    )
    parser.add_argument("folder", type=Path, help="a folder of images (flat, or one subfolder per class)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the report")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=f"model to audit (default {DEFAULT_MODEL})")
    parser.add_argument("--attack", default="sparse", choices=[n for n, s in ATTACKS.items() if s.kind == "sparse"],
                        help="which sparse attack measures the pixel counts (default sparse)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", dest="overrides",
                        help="change one option of the attack, e.g. steps=40 (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=None, help="time budget per image")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N readable images (local engine)")
    parser.add_argument("--easiest", type=int, default=8, help="thumbnails of this many easiest flips (default 8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice locally, 1 per Ray worker)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (local engine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("distributed (--engine ray; pip install 'sparseviz[ray]')")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: a Ray cluster, resumable")
    ray.add_argument("--address", default=None, metavar="HOST:PORT",
                     help="a running Ray head (e.g. 10.0.0.5:6379); default: a private Ray on 127.0.0.1")
    ray.add_argument("--workers", type=int, default=1, help="attack actors, each holding one model (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor, 0 = CPU (default 0)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs Ray reserves per actor (default 1)")
    ray.add_argument("--batch-size", type=int, default=4, help="images per attack call (default 4)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(f"{args.attack}.{item}" for item in args.overrides)
    config = build_config(args.attack, overrides.get(args.attack), max_seconds=args.max_seconds)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1; got {args.limit}.")
    if not 0 <= args.easiest <= 1000:
        raise ValueError(f"--easiest must be in 0..1000; got {args.easiest}.")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise ValueError(f"--threads must be in 1..1024; got {args.threads}.")
    report = _run_ray(args, config) if args.engine == "ray" else _run_local(args, config)
    csv_path, md_path, html_path = write_audit(report, args.out, easiest=args.easiest)
    attacked = [r for r in report.rows if r["status"] == "attacked"]
    print(f"fooled {len(report.flipped)}/{len(attacked)} attacked images "
          f"({len(report.rows) - len(attacked)} misclassified, {len(report.skipped)} skipped); "
          f"wrote {md_path}, {html_path}, {csv_path}")
    return 0


def _run_local(args: argparse.Namespace, config: Any) -> AuditReport:
    if args.threads is not None:
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
    return report


def _run_ray(args: argparse.Namespace, config: Any) -> AuditReport:
    from ..audit.ray_engine import RaySettings, RegistryModel, run_ray_audit

    if args.limit is not None:
        raise ValueError("--limit is for --engine local; give --engine ray a folder with the images to audit.")
    settings = RaySettings(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                           cpus_per_worker=args.cpus_per_worker, threads=args.threads or 1, batch_size=args.batch_size)
    files, _ = image_files(args.folder)
    bar = tqdm(total=len(files), desc="audit (ray)", unit="image", disable=args.quiet)
    counts = {"new": 0, "resumed": 0, "failures": 0}
    started = time.perf_counter()

    def on_row(record: dict[str, Any], new: bool) -> None:
        counts["new" if new else "resumed"] += 1
        if "skipped" in record:
            counts["failures"] += 1
            if new:
                tqdm.write(f"skipped {record['image']}: {record['skipped']}", file=sys.stderr)
        rate = counts["new"] / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix_str(f"failures {counts['failures']}, resumed {counts['resumed']}, {rate:.2f} images/s")
        bar.update(1)

    try:
        report = run_ray_audit(args.folder, RegistryModel(args.model), out=args.out, attack=args.attack,
                               config=config, settings=settings, on_row=on_row)
    finally:
        bar.close()
    if not report.rows:
        raise ValueError(f"no readable images in {args.folder}.")
    return report
