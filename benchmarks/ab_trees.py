"""A/B the default ``sparse`` attack of two source trees, photo by photo, alternating.

    git worktree add --detach /tmp/base e8ed1b1
    python benchmarks/ab_trees.py /tmp/base . --photos bench-out/devset --limit 12

For each photo, one fresh process per tree (baseline first, then candidate) loads the model,
warms it up with one forward+backward, and times only the attack (1 torch thread). Running
the two versions back to back on the same photo means a load change on a shared machine hits
both alike, so the per-photo time ratio is meaningful even where the absolute seconds are not.
Pixels are counted on the 8-bit result; photos are taken band by band from ``manifest.csv``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, torch
from sparseviz.attacks import sparse_attack
from sparseviz.images import load_image, to_tensor
from sparseviz.models import load_model
torch.set_num_threads(1)
model = load_model("efficientnet_lite0", device="cpu")
image = model.preprocess(to_tensor(load_image(sys.argv[1]).image))[None]
label = model.predict_proba(image).argmax(1)
probe = image.clone().requires_grad_(True)
model(probe).sum().backward()  # warm-up, not timed
start = time.perf_counter()
result = sparse_attack(model, image, label)
seconds = time.perf_counter() - start
print(json.dumps({"success": bool(result.success[0]), "pixels": int(result.l0_pixels[0]), "seconds": seconds,
                  "calls": int(result.model_calls[0]),
                  "invocations": int(getattr(result, "model_invocations", -1))}))
"""


def run(tree: Path, photo: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS="1")
    # cwd = the tree: ``python -c`` puts the working directory ahead of PYTHONPATH on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD, str(photo.resolve())], env=env, capture_output=True,
                         text=True, check=True, cwd=tree.resolve())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _band(confidence: float) -> str:
    return "high" if confidence >= 0.8 else "mid" if confidence >= 0.4 else "low"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--photos", type=Path, default=Path("bench-out/devset"))
    parser.add_argument("--limit", type=int, default=12)
    args = parser.parse_args(argv)
    rows = list(csv.DictReader(open(args.photos / "manifest.csv")))
    for row in rows:  # ../shared/imagenet-dev gives the clean confidence, the crop set its band
        row.setdefault("band", _band(float(row["clean_conf"])) if "clean_conf" in row else "high")
    by_band = {band: [r for r in rows if r["band"] == band] for band in ("high", "mid", "low")}
    # interleave the bands (high, mid, low, high, ...) until every photo is used
    order = [r for group in itertools.zip_longest(*by_band.values()) for r in group if r is not None][: args.limit]
    ratios, lines = [], []
    print("photo | band | base px / s | new px / s | time new/base | invocations base -> new")
    for row in order:
        photo = args.photos / row["file"]
        base, new = run(args.baseline, photo), run(args.candidate, photo)
        ratio = new["seconds"] / base["seconds"]
        ratios.append(ratio)
        line = (f"{row['file']} | {row['band']} | {base['pixels']}{'' if base['success'] else '(failed)'} / "
                f"{base['seconds']:.1f} | {new['pixels']}{'' if new['success'] else '(failed)'} / {new['seconds']:.1f} | "
                f"{ratio:.2f} | {base['invocations']} -> {new['invocations']}")
        lines.append((row, base, new))
        print(line, flush=True)
    base_px = statistics.median(b["pixels"] for _, b, _ in lines)
    new_px = statistics.median(n["pixels"] for _, _, n in lines)
    print(f"median pixels {base_px} -> {new_px}; median time ratio new/base {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
