"""Seconds and model evaluations per explanation (split + proof, no maps), default `auto` vs IG side by side.

    python benchmarks/explain_timing.py --cache bench-out/explain-cache-devset --max-pixels 40 [--device cuda]

Reads the attacks cached by ``explain_photos.py attack``; one torch thread. Prints one line per
photo, the median/max seconds and model evaluations (images through the model: machine-independent)
per method, and the median batch-1 forward time (the machine's speed then).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--max-pixels", type=int, default=40)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sparseviz.attacks.base import finalize
    from sparseviz.explain.contributions import SplitConfig
    from sparseviz.images import load_image, to_tensor
    from sparseviz.explain.interpret import ExplainConfig, explain_pixels
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device=args.device)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    seconds: dict[str, list[float]] = {"auto": [], "integrated_gradients": []}
    evaluations: dict[str, list[int]] = {method: [] for method in seconds}
    forwards = []
    for folder in sorted(p for p in args.cache.iterdir() if (p / "meta.json").exists()):
        meta = json.loads((folder / "meta.json").read_text())
        if not meta["success"] or not 1 <= meta["pixels"] <= args.max_pixels:
            continue
        clean, adv = (to_tensor(load_image(folder / f).image)[None].to(model.device)
                      for f in ("original.png", "adversarial.png"))
        result = finalize(model, clean, adv, torch.tensor([meta["label"]], device=model.device), None,
                          attack="sparse (cached)", model_calls=torch.zeros(1), seconds=0.0, params={})
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            model(clean)
            sync()
            forwards.append(time.perf_counter() - t0)
        for method, values in seconds.items():
            e = explain_pixels(model, result, config=ExplainConfig(split=SplitConfig(method=method)))
            values.append(e.split_seconds)
            evaluations[method].append(e.split_evaluations)
        print(folder.name, meta["pixels"], {m: (round(v[-1], 2), evaluations[m][-1]) for m, v in seconds.items()},
              f"forward {1000 * forwards[-1]:.0f} ms", flush=True)
    for method, values in seconds.items():
        counts = evaluations[method]
        print(f"{method}: {len(values)} photos, median {statistics.median(values):.2f} s, max {max(values):.2f} s; "
              f"model evaluations median {statistics.median(counts):.0f}, max {max(counts)}")
    print(f"batch-1 forward median {1000 * statistics.median(forwards):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
