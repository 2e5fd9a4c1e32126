"""Obscuring vs leading on real photos: the "must show" numbers of issue 13.

    # 1. attack once, cache original.png / adversarial.png / label per photo (slow, done once)
    python benchmarks/explain_photos.py attack --photos bench-out/devset --cache bench-out/explain-cache
    python benchmarks/explain_photos.py attack --crops --cache bench-out/explain-cache   # skimage crops
    # 2. explain every cached photo with each split method and report
    python benchmarks/explain_photos.py explain --cache bench-out/explain-cache --out benchmarks/results

Attack: the default ``sparse`` attack (seed 0, untargeted) on the offline EfficientNet-Lite0.
The cache holds 8-bit PNGs, so the explanation sees exactly the saved images. Explain:
per photo and split method, label shares, per-image group ablation and its "holds" test,
completeness error, joint action, agreement of each attribution method with the
contributions, and seconds per explanation (CPU). Writes ``explain_contributions_cpu.csv``
and ``.md`` under ``--out`` and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
# real skimage photos (not textures, not microscopy) cropped at several positions and scales
CROP_SOURCES = ("astronaut", "chelsea", "coffee", "motorcycle_left", "camera", "coins")


def _crops(size: int = 224) -> list[tuple[str, torch.Tensor]]:
    """Square crops (top-left, centre, bottom-right at two scales) of skimage photos, resized to ``size``."""
    import skimage
    import torch.nn.functional as F

    from sparseviz.images import load_image, to_tensor

    out = []
    folder = Path(skimage.__file__).parent / "data"
    for name in CROP_SOURCES:
        image = to_tensor(load_image(folder / f"{name}.png").image)
        h, w = image.shape[-2:]
        for scale in (0.6, 0.85):
            side = int(min(h, w) * scale)
            for tag, (top, left) in (("tl", (0, 0)), ("c", ((h - side) // 2, (w - side) // 2)),
                                     ("br", (h - side, w - side))):
                crop = image[:, top:top + side, left:left + side][None]
                crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
                out.append((f"crop_{name}_{int(scale * 100)}_{tag}", torch.round(crop.clamp(0, 1) * 255) / 255))
    return out


def attack(args: argparse.Namespace) -> int:
    from sparseviz.attacks.sparse import SparseConfig, sparse_attack
    from sparseviz.images import load_image, save_png, to_tensor
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    photos: list[tuple[str, Any]] = []
    if args.photos:
        photos += [(p.stem, p) for p in sorted(args.photos.iterdir()) if p.suffix.lower() in SUFFIXES]
    if args.crops:
        photos += _crops(model.input_size)
    if args.limit:
        photos = photos[: args.limit]
    for stem, source in photos:
        folder = args.cache / stem
        if (folder / "meta.json").exists():
            continue
        image = source if isinstance(source, torch.Tensor) else to_tensor(load_image(source).image)
        image = model.preprocess(image)[None]
        label = int(model.predict_proba(image).argmax())
        t0 = time.perf_counter()
        result = sparse_attack(model, image, torch.tensor([label]), config=SparseConfig(seed=0))
        meta = {"photo": stem, "label": label, "success": bool(result.success[0]),
                "pixels": int(result.l0_pixels[0]), "attack_s": time.perf_counter() - t0}
        save_png(result.originals[0], folder / "original.png")
        save_png(result.adversarials[0], folder / "adversarial.png")
        (folder / "meta.json").write_text(json.dumps(meta))
        print(f"{stem}: {meta}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    a = sub.add_parser("attack", help="attack each photo once and cache the 8-bit images")
    a.add_argument("--photos", type=Path, help="folder of photos (e.g. bench-out/devset)")
    a.add_argument("--crops", action="store_true", help="also attack crops of skimage photos")
    a.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "explain-cache")
    a.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    a.set_defaults(handler=attack)
    args = parser.parse_args()
    torch.set_num_threads(1)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
