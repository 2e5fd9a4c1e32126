"""How the sparsity weight trades pixels for confidence, on bundled photos.

    python benchmarks/sparsity_sweep.py [--weights 0.25,0.5,1,2,4] [--photos chelsea,coffee,...]

Prints a table: for each weight, success, median pixels and median adversarial-class
confidence (all measured on the 8-bit result).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from sparseviz.attacks.sparse import SparseConfig, sparse_attack
from sparseviz.images.gallery import bundled_images, load_bundled
from sparseviz.images import to_tensor
from sparseviz.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0.1,0.25,0.5,1,2,4")
    parser.add_argument("--photos", default=",".join(bundled_images()))
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    model = load_model(args.model)
    weights = [float(w) for w in args.weights.split(",")]
    photos = args.photos.split(",")
    images = [model.preprocess(to_tensor(load_bundled(name).image))[None] for name in photos]
    print(f"{len(photos)} photos: {', '.join(photos)}")
    print("| sparsity weight | success | median px | mean px | median adv confidence | median true prob after |")
    print("|---|---|---|---|---|---|")
    for weight in weights:
        pixels, confidence, true_after, wins = [], [], [], 0
        for image in images:
            label = model.predict_proba(image).argmax(1)
            result = sparse_attack(model, image, label, config=SparseConfig(sparsity_weight=weight))
            if bool(result.success[0]):
                wins += 1
                pixels.append(int(result.l0_pixels[0]))
                confidence.append(float(result.adv_confidence[0]))
                true_after.append(float(result.adv_probs[0, label]))
        print(f"| {weight:g} | {wins}/{len(images)} | {statistics.median(pixels) if pixels else '-'} | "
              f"{statistics.mean(pixels) if pixels else 0:.1f} | {statistics.median(confidence) if confidence else 0:.3f} | "
              f"{statistics.median(true_after) if true_after else 0:.3f} |", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
