"""The Ray audit against the local one: same rows? and how does it scale with workers?

    python benchmarks/devset.py --out bench-out/devset
    python benchmarks/ray_audit.py --images bench-out/devset --count 20 --out bench-out/ray-audit \
        --set steps=5 --set tuning.refine_steps=0 --set tuning.swap_rounds=0             # both parts
    python benchmarks/ray_audit.py --images bench-out/devset --speed-only --speed-count 12 \
        --out bench-out/ray-speed --set steps=5 --set tuning.refine_steps=0 --set tuning.swap_rounds=0

1. ``sparseviz audit`` on the first ``--count`` photos with ``--engine local`` and, at the
   same time, ``--engine ray --workers 2`` (a private loopback Ray); the two ``audit.csv`` files are
   compared column by column, timing columns aside, and so are the reports.
2. In one Ray instance, the first ``--speed-count`` photos with 1 and then 2 single-threaded
   workers: images/s from the first row to the last (actor start-up excluded) and wall time.
Everything runs on this machine; say how busy it was when quoting the ratio.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparseviz import cli  # noqa: E402
from sparseviz.audit.bench import build_config, parse_overrides
from sparseviz.images.folders import image_files  # noqa: E402

TIMING = {"seconds"}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def report_lines(path: Path) -> list[str]:
    """report.md without the lines that carry timings or the machine (the per-image table's last cell)."""
    lines = []
    for line in path.read_text().splitlines():
        if "min in all" in line:
            continue
        lines.append(line.rsplit("|", 2)[0] if line.startswith("| ") else line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--speed-count", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--speed-only", action="store_true", help="skip the local-vs-Ray comparison")
    parser.add_argument("--speed-tiny", action="store_true",
                        help="measure throughput with the tests' tiny CNN (0.4 GB a worker instead of 2.5 GB)")
    args = parser.parse_args()

    photos = args.out / "photos"
    shutil.rmtree(args.out, ignore_errors=True)
    photos.mkdir(parents=True)
    files, _ = image_files(args.images)
    for path, _ in files[: max(args.count, args.speed_count)]:
        shutil.copy(path, photos / path.name)
    same_rows = same_report = same_files = True
    if not args.speed_only:
        same_rows, same_report, same_files = compare(args, photos)
    speed(args, photos)
    return 0 if same_rows and same_report and same_files else 1


def compare(args: argparse.Namespace, photos: Path) -> tuple[bool, bool, bool]:
    settings = [item for value in args.overrides for item in ("--set", value)]
    common = ["--model", args.model, "--quiet"] + settings

    # The two engines run at the same time (a busy shared machine would otherwise take twice as long).
    local_command = [sys.executable, "-m", "sparseviz.cli", "audit", str(photos), "--out", str(args.out / "local"),
                     "--threads", "1"] + common
    started = time.perf_counter()
    local_run = subprocess.Popen(local_command, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.main(["audit", str(photos), "--out", str(args.out / "ray"), "--engine", "ray", "--workers", "2",
                     "--batch-size", "2"] + common) == 0
    ray_seconds = time.perf_counter() - started
    assert local_run.wait() == 0
    local_seconds = time.perf_counter() - started
    local, distributed = rows(args.out / "local" / "audit.csv"), rows(args.out / "ray" / "audit.csv")
    same_rows = local == distributed
    same_report = report_lines(args.out / "local" / "report.md") == report_lines(args.out / "ray" / "report.md")
    same_files = all((args.out / "local" / sub / f.name).read_bytes() == f.read_bytes()
                     for sub in ("adversarials", "thumbnails") for f in (args.out / "ray" / sub).glob("*.png"))
    print(f"{len(local)} rows; run side by side: local {local_seconds:.0f} s, ray (2 workers, incl. start-up) "
          f"{ray_seconds:.0f} s")
    print(f"rows identical except timing columns: {same_rows}; report.md identical except timings: {same_report}; "
          f"adversarial and thumbnail PNGs identical: {same_files}")
    fooled = sum(r["success"] == "1" for r in local)
    print(f"fooled {fooled}/{sum(r['status'] == 'attacked' for r in local)}")
    return same_rows, same_report, same_files


class TinyModel:
    """The tests' tiny CNN, built on each worker (memory-light stand-in for a throughput ratio)."""

    def __call__(self, device: str) -> Any:
        from tests.conftest import make_tiny_model

        return make_tiny_model()


def speed(args: argparse.Namespace, photos: Path) -> None:
    """Throughput: one Ray instance, 1 then 2 single-threaded workers on the same photos."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import secrets

    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    from sparseviz.audit.ray_engine import RaySettings, RegistryModel, run_ray_audit

    folder = args.out / "speed-photos"
    folder.mkdir()
    for path in sorted(photos.iterdir())[: args.speed_count]:
        shutil.copy(path, folder / path.name)
    overrides = parse_overrides(f"sparse.{item}" for item in args.overrides)
    config = build_config("sparse", overrides.get("sparse"))
    loader: Any = RegistryModel(args.model)
    if args.speed_tiny:
        loader = TinyModel()
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # workers import it
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        rates = {}
        for workers in (1, 2):
            times: list[float] = []
            start = time.perf_counter()
            run_ray_audit(folder, loader, out=args.out / f"speed-{workers}", config=config,
                          settings=RaySettings(workers=workers, threads=1, batch_size=1),
                          on_row=lambda record, new: times.append(time.perf_counter()))
            wall = time.perf_counter() - start
            # Steady state: from the first row of the last worker to start (row `workers`) to the last row.
            rates[workers] = (len(times) - workers) / (times[-1] - times[workers - 1])
            print(f"{workers} worker(s): {rates[workers]:.3f} images/s in steady state (rows {workers}..{len(times)}), "
                  f"{wall:.0f} s wall for {len(times)} images incl. Ray start-up and model loading")
        print(f"throughput ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x "
              f"(load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())})")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
