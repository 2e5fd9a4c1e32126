"""Replay the sparse attack's post-processing (refine, prune, swap) from cached optimisation outputs.

Pruning variants cost seconds per photo to compare this way instead of a whole attack each:

    # once: the optimisation alone (prune=False) on every dev-set photo, saved per photo
    python benchmarks/replay_postprocess.py cache bench-out/devset bench-out/optcache
    # per variant: post-process every cached photo, print pixels, calls, invocations per stage
    python benchmarks/replay_postprocess.py run bench-out/optcache --bands high,mid
    python benchmarks/replay_postprocess.py run bench-out/optcache --set refine_cycles=0 --set exact_cap=96
    # targeted (bench's seeded random class), 4 photos per band
    python benchmarks/replay_postprocess.py cache bench-out/devset bench-out/optcache-t --targeted --limit 4

``--set`` takes ``SparseConfig`` options and ``SparseTuning`` fields (changes to the preset of each photo's kind).
Calls and invocations include the cached optimisation's; one torch thread; seconds are the
post-processing's only. Each line: the optimisation's pixels, the final pixels, and per stage
``pixels after / model calls / invocations``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("cache", "run"))
    parser.add_argument("source", type=Path, help="cache: the photo folder (with manifest.csv); run: the cache")
    parser.add_argument("cache", type=Path, nargs="?", help="cache: where to write")
    parser.add_argument("--bands", default="high,mid,low")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=JSON")
    parser.add_argument("--targeted", action="store_true", help="cache: attack a seeded random class (bench's choice)")
    parser.add_argument("--limit", type=int, default=None, help="cache: only the first N photos of each band")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import dataclasses

    from sparseviz.attacks.sparse import SparseConfig, sparse_attack
    from sparseviz.attacks.sparse import attack as steps, refine
    from sparseviz.attacks.sparse.checks import Checker
    from sparseviz.audit.bench import choose_target
    from sparseviz.images import load_image, to_tensor
    from sparseviz.models import count_invocations, load_model
    from sparseviz.models.wrapper import _INVOCATIONS

    model = load_model("efficientnet_lite0", device="cpu")
    if args.mode == "cache":
        args.cache.mkdir(parents=True, exist_ok=True)
        taken: dict[str, int] = {}
        for index, row in enumerate(csv.DictReader(open(args.source / "manifest.csv"))):
            taken[row["band"]] = taken.get(row["band"], 0) + 1
            out = args.cache / f"{row['file']}.pt"
            if out.exists() or (args.limit is not None and taken[row["band"]] > args.limit):
                continue
            image = model.preprocess(to_tensor(load_image(args.source / row["file"]).image))[None]
            label = model.predict_proba(image).argmax(1)
            target = torch.tensor([choose_target(int(label), model.num_classes, 0, index)]) if args.targeted else None
            result = sparse_attack(model, image, label, targets=target, tuning_changes={"prune": False})
            torch.save({"image": image, "label": label, "target": target, "mask": result.pixel_mask,
                        "values": result.adversarials, "band": row["band"], "calls": int(result.model_calls[0]),
                        "invocations": int(result.model_invocations)}, out)
            print(row["file"], row["band"], int(result.pixel_mask.sum()), flush=True)
        return 0

    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    public = {field.name for field in dataclasses.fields(SparseConfig)}
    config = SparseConfig(**{key: value for key, value in overrides.items() if key in public})
    changes = {key: value for key, value in overrides.items() if key not in public}
    stages: list[str] = []

    def traced(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(checker, *a, **k):  # type: ignore[no-untyped-def]
            before, outer = int(checker.calls.sum()), _INVOCATIONS.get()
            with count_invocations() as inner:
                out = function(checker, *a, **k)
            if outer is not None:
                outer.value += inner.value
            masks = out[0] if isinstance(out, tuple) else out
            stages.append(f"{name}:{int(masks.sum())}/{int(checker.calls.sum()) - before}c/{inner.value}i")
            return out
        return wrapper

    refine.prune_batch = traced("prune", refine.prune_batch)
    steps.shrink_batch = traced("swap", steps.shrink_batch)

    bands, rows = args.bands.split(","), []
    for path in sorted(args.source.glob("*.pt")):
        cached = torch.load(path, weights_only=True)
        if cached["band"] not in bands:
            continue
        calls, stages[:] = torch.zeros(1, dtype=torch.long), []
        target = cached.get("target")
        start = time.perf_counter()
        with count_invocations() as invocations:
            tuning = config.tuning_for(target is not None).changed(changes)
            masks, values = steps.postprocess(
                Checker(model, cached["label"], target, calls), cached["image"], cached["mask"], cached["values"],
                tuning=tuning, required=config.required_margin(tuning), spent=lambda: False,
            )
        seconds = time.perf_counter() - start
        adversarial = torch.where(masks[:, None], values, cached["image"])
        predicted = model.predict_proba(adversarial).argmax(1)
        fooled = bool(predicted != cached["label"]) if target is None else bool(predicted == target)
        row = (cached["band"], int(masks.sum()), fooled, int(calls) + cached["calls"],
               invocations.value + cached["invocations"])
        rows.append(row)
        print(f"{path.stem[:34]:34s} {row[0]:4s} optimised {int(cached['mask'].sum()):4d} -> {row[1]:4d} px "
              f"fooled={fooled} calls={row[3]:4d} invocations={row[4]:3d} {seconds:5.1f} s  {' '.join(stages)}", flush=True)
    for band in bands + ["all"]:
        chosen = [r for r in rows if band in ("all", r[0])]
        if chosen:
            print(f"{band}: {len(chosen)} photos, pixels median {statistics.median(r[1] for r in chosen)} max "
                  f"{max(r[1] for r in chosen)}, not fooled {sum(not r[2] for r in chosen)}, model calls median "
                  f"{statistics.median(r[3] for r in chosen)}, invocations median {statistics.median(r[4] for r in chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
