"""Per-image results printed as they come (for a heavily loaded machine where a whole
``sparseviz bench`` run cannot finish in time). Same measures as bench: success re-checked
on the 8-bit image, pixels changed, seconds, model calls and sequential invocations.

    PYTHONPATH=TREE python benchmarks/issue14_incremental.py FOLDER ATTACK[,ATTACK...] [--batch N] [--targeted] [--limit N]

Photos are taken band by band in turn (high, mid, low, high, ...) from FOLDER's manifest.csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from sparseviz.attacks import ATTACKS
from sparseviz.audit.bench import choose_target
from sparseviz.images import load_image, to_tensor
from sparseviz.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("attacks")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--targeted", action="store_true")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("efficientnet_lite0", device="cpu")
    forwards = [0]
    model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    rows = list(csv.DictReader(open(args.folder / "manifest.csv")))
    by_band = {band: [r for r in rows if r["band"] == band] for band in ("high", "mid", "low")}
    order = [r for group in zip(*by_band.values()) for r in group][: args.limit]
    images = torch.stack([model.preprocess(to_tensor(load_image(args.folder / r["file"]).image)) for r in order])
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    for start in range(0, len(order), args.batch):
        part = slice(start, start + args.batch)
        targets = None
        if args.targeted:
            targets = torch.tensor([choose_target(int(label), model.num_classes, 0, start + i) for i, label in enumerate(labels[part])])
        for name in args.attacks.split(","):
            forwards[0] = 0
            began = time.perf_counter()
            result = ATTACKS[name].run(model, images[part], labels[part], targets=targets)
            seconds = time.perf_counter() - began
            count = result.num_images
            for i in range(count):
                row = order[start + i]
                print(name, row["file"], row["band"], "success", int(result.success[i]), "pixels", int(result.l0_pixels[i]),
                      "seconds", round(seconds / count, 2), "calls", int(result.model_calls[i]),
                      "invocations_per_image", round(getattr(result, "model_invocations", 0) / count, 2),
                      "network_forwards_per_image", round(forwards[0] / count, 2),
                      "float_success", result.params.get("float_success", [""] * count)[i], "batch", count, flush=True)


if __name__ == "__main__":
    main()
