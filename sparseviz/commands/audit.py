"""`sparseviz audit DIR --out DIR`: the sparse attack over a folder, and a readable report.

``--engine local`` (the default) runs here, images in parallel worker processes, one torch
thread per attack; ``--engine ray`` spreads the same work over a Ray cluster (see
``sparseviz.audit.ray_engine``) and resumes an interrupted run. ``--models A,B`` audits the
folder with each model and compares them (``sparseviz.audit.multi``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..attacks import ATTACKS
from ..audit.multi import compare_finished, parse_models, run_local
from ..audit.run import AuditReport, default_workers, run_audit, write_audit
from ..audit.bench import build_config, parse_overrides
from ..images.folders import image_files, load_folder
from ..models import DEFAULT_MODEL, load_model
from ..models.threads import ATTACK_THREADS


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
    parser.add_argument("--models", default=None, metavar="A,B",
                        help="two or more models to audit and compare, e.g. efficientnet_lite0,efficientnet_lite1: "
                             "each model's audit goes in OUT/<model>/, the comparison (paired table, scatter, "
                             "cross-transfer) in OUT/report.html and OUT/comparison.csv")
    parser.add_argument("--attack", default="sparse", choices=[n for n, s in ATTACKS.items() if s.kind == "sparse"],
                        help="which sparse attack measures the pixel counts (default sparse)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", dest="overrides",
                        help="change one option of the attack, e.g. steps=40 (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=None, help="time budget per image")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N readable images (local engine)")
    parser.add_argument("--easiest", type=int, default=8, help="thumbnails of this many easiest flips (default 8)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per attack (default 1 on both engines, so both give the same rows: "
                             "results change with the thread count)")
    parser.add_argument("--workers", type=int, default=None,
                        help="images attacked at once: worker processes locally (default: one per core), attack "
                             "actors on Ray (default 1); each holds one copy of the model")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (local engine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = parser.add_argument_group("distributed (--engine ray; pip install 'sparseviz[ray]')")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: a Ray cluster, resumable")
    ray.add_argument("--address", default=None, metavar="HOST:PORT",
                     help="a running Ray head (e.g. 10.0.0.5:6379); default: a private Ray on 127.0.0.1")
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
    if args.workers is not None and not 1 <= args.workers <= 1024:
        raise ValueError(f"--workers must be in 1..1024; got {args.workers}.")
    names = parse_models(args.models) if args.models is not None else [args.model]
    if len(names) > 1:
        return _run_several(args, config, names)
    args.model = names[0]
    report = _run_ray(args, config) if args.engine == "ray" else _run_local(args, config)
    csv_path, md_path, html_path = write_audit(report, args.out, easiest=args.easiest)
    attacked = [r for r in report.rows if r["status"] == "attacked"]
    print(f"fooled {len(report.flipped)}/{len(attacked)} attacked images "
          f"({len(report.rows) - len(attacked)} misclassified, {len(report.skipped)} skipped); "
          f"wrote {md_path}, {html_path}, {csv_path}")
    return 0


def _run_several(args: argparse.Namespace, config: Any, names: list[str]) -> int:
    """``--models A,B``: each model's audit in OUT/<model>/, then the comparison at the top of OUT."""
    started = time.perf_counter()
    models = {name: load_model(name, device=args.device) for name in names}
    if args.engine == "ray":
        from ..audit.ray_engine import ray_session

        if args.limit is not None:
            raise ValueError("--limit is for --engine local; give --engine ray a folder with the images to audit.")
        reports = {}
        with ray_session(_ray_settings(args)):  # one Ray for all the models
            for name in names:
                args.model = name
                reports[name] = _run_ray(args, config, out=args.out / name)
                write_audit(reports[name], args.out / name, easiest=args.easiest)
        comparison = compare_finished(models, args.folder, reports, args.out, seconds=time.perf_counter() - started)
    else:
        total = len(image_files(args.folder)[0]) if args.limit is None else args.limit
        bar = tqdm(total=total * len(names), desc="audit", unit="image", disable=args.quiet)

        def on_step(model: str, image: str) -> None:
            bar.set_postfix_str(f"{model}: {image}")
            bar.update(1)

        try:
            comparison, reports = run_local(
                models, args.folder, out=args.out, config=config, attack=args.attack, limit=args.limit,
                workers=args.workers or default_workers(), threads=args.threads or ATTACK_THREADS,
                easiest=args.easiest, on_step=on_step)
        finally:
            bar.close()
    for pair in comparison.pairs:
        print(f"{pair.a} - {pair.b}: median pixel difference {pair.difference.text('{:g}')} over "
              f"{pair.both_fooled} images both fooled; {pair.a} needs fewer on {pair.a_fewer.percent()}, "
              f"{pair.b} on {pair.b_fewer.percent()}")
    for name, report in reports.items():
        attacked = sum(1 for r in report.rows if r["status"] == "attacked")
        print(f"{name}: fooled {len(report.flipped)}/{attacked} attacked images")
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.html'}, {args.out / 'comparison.csv'} "
          f"and one folder per model")
    return 0


def _run_local(args: argparse.Namespace, config: Any) -> AuditReport:
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

    report = run_audit(model, folder, out=args.out, config=config, attack=args.attack, on_step=on_step,
                       workers=args.workers or default_workers(), threads=args.threads or ATTACK_THREADS)
    bar.close()
    return report


def _ray_settings(args: argparse.Namespace) -> Any:
    from ..audit.ray_engine import RaySettings

    return RaySettings(address=args.address, workers=args.workers or 1, gpus_per_worker=args.gpus_per_worker,
                       cpus_per_worker=args.cpus_per_worker, threads=args.threads or ATTACK_THREADS,
                       batch_size=args.batch_size)


def _run_ray(args: argparse.Namespace, config: Any, out: Path | None = None) -> AuditReport:
    from ..audit.ray_engine import RegistryModel, run_ray_audit

    if args.limit is not None:
        raise ValueError("--limit is for --engine local; give --engine ray a folder with the images to audit.")
    settings = _ray_settings(args)
    files, _ = image_files(args.folder)
    bar = tqdm(total=len(files), desc=f"audit (ray, {args.model})", unit="image", disable=args.quiet)
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
        report = run_ray_audit(args.folder, RegistryModel(args.model), out=out or args.out, attack=args.attack,
                               config=config, settings=settings, on_row=on_row)
    finally:
        bar.close()
    if not report.rows:
        raise ValueError(f"no readable images in {args.folder}.")
    return report
