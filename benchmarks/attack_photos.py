"""Benchmark the sparse attack on real photos, with a dense PGD baseline in the same run.

    python benchmarks/attack_photos.py --out bench-out/attack            # all bundled photos
    python benchmarks/attack_photos.py --images DIR --device cuda --out bench-out/gpu

For each photo (preprocessed to the model's 224x224 input, 8-bit), it runs, one image
at a time so per-image seconds are honest:
  - the sparse attack, untargeted, default settings;
  - the sparse attack, targeted to a random class (seeded per image);
  - PGD (l-inf 4/255, 10 steps), untargeted, for context.
Every number is re-measured from the saved PNGs: the adversarial image is written,
read back, re-classified, and its changed pixels counted against the saved original.
Writes ``rows.csv`` and ``summary.md`` into ``--out`` and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import zlib
from pathlib import Path

import torch
from tqdm import tqdm

from sparseviz.attacks.dense import pgd
from sparseviz.attacks.sparse import SparseConfig, sparse_attack
from sparseviz.attacks.base import AttackResult, to_uint8
from sparseviz.images.gallery import bundled_images
from sparseviz.images import load_image, save_png, to_tensor
from sparseviz.models import ImageClassifier, load_model


def measure_saved(model: ImageClassifier, result: AttackResult, folder: Path, stem: str) -> dict:
    """Save original and adversarial PNGs, read them back, and measure from the files."""
    original_path = save_png(result.originals[0], folder / f"{stem}.original.png")
    adversarial_path = save_png(result.adversarials[0], folder / f"{stem}.adversarial.png")
    original = to_uint8(to_tensor(load_image(original_path).image))
    adversarial = to_uint8(to_tensor(load_image(adversarial_path).image))
    probs = model.predict_proba((adversarial.float() / 255)[None])[0]
    predicted = int(probs.argmax())
    label = int(result.labels[0])
    target = None if result.targets is None else int(result.targets[0])
    success = predicted == target if target is not None else predicted != label
    changed = adversarial != original
    return {
        "success": success,
        "pixels": int(changed.any(dim=0).sum()),
        "entries": int(changed.sum()),
        "adv_label": predicted,
        "adv_confidence": float(probs[predicted]),
        "agrees_with_result": success == bool(result.success[0]),
    }


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        accel = torch.cuda.get_device_name(device)
    else:
        accel = f"CPU only, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    return f"{platform.processor() or platform.machine()}; {accel}; torch {torch.__version__}; Python {platform.python_version()}"


def summarize(rows: list[dict], kind: str) -> dict:
    chosen = [row for row in rows if row["run"] == kind]
    won = [row for row in chosen if row["success"]]
    pixels = [row["pixels"] for row in won]
    return {
        "run": kind,
        "images": len(chosen),
        "success": f"{len(won)}/{len(chosen)}",
        "median_px": statistics.median(pixels) if pixels else None,
        "mean_px": round(statistics.mean(pixels), 1) if pixels else None,
        "max_px": max(pixels) if pixels else None,
        "median_entries": statistics.median([row["entries"] for row in won]) if won else None,
        "median_s": round(statistics.median(row["seconds"] for row in chosen), 2) if chosen else None,
        "mean_s": round(statistics.mean(row["seconds"] for row in chosen), 2) if chosen else None,
        "median_calls": statistics.median(row["model_calls"] for row in chosen) if chosen else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of photos (default: the bundled assets)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-targeted", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.images:
        paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"})
    else:
        paths = list(bundled_images().values())
    model = load_model(args.model, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    config = SparseConfig()
    runs = ["sparse", "pgd"] + ([] if args.no_targeted else ["sparse_targeted"])

    # Warm-up so the first image does not pay for lazy initialisation.
    warm = torch.rand(1, 3, model.input_size, model.input_size, device=model.device)
    sparse_attack(model, warm, model.predict_proba(warm).argmax(1), config=SparseConfig(steps=2).retuned(prune=False))

    rows: list[dict] = []
    for path in tqdm(paths, desc="photos", unit="img"):
        image = model.preprocess(to_tensor(load_image(path).image))[None].to(model.device)
        label = model.predict_proba(image).argmax(1)
        generator = torch.Generator().manual_seed(zlib.crc32(path.stem.encode()))
        target = torch.randint(0, model.num_classes - 1, (1,), generator=generator).to(model.device)
        target = target + (target >= label).long()  # any class but the true one
        for kind in runs:
            if kind == "sparse":
                result = sparse_attack(model, image, label, config=config)
            elif kind == "sparse_targeted":
                result = sparse_attack(model, image, label, targets=target, config=config)
            else:
                result = pgd(model, image, label)
            measured = measure_saved(model, result, args.out / "images", f"{path.stem}.{kind}")
            rows.append({
                "image": path.name,
                "run": kind,
                "true_label": int(label),
                "true_name": model.class_names[int(label)],
                "target": None if result.targets is None else int(result.targets[0]),
                **measured,
                "seconds": round(result.seconds, 3),
                "model_calls": int(result.model_calls[0]),
                "l2": round(float(result.l2[0]), 4),
                "linf": round(float(result.linf[0]), 4),
            })
            tqdm.write(f"{path.name:22s} {kind:16s} ok={measured['success']!s:5} px={measured['pixels']:6d} "
                       f"t={result.seconds:6.2f}s calls={int(result.model_calls[0])}")

    with open(args.out / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summaries = [summarize(rows, kind) for kind in runs]
    lines = [
        f"# Sparse attack on {len(paths)} photos ({args.model}, {model.input_size}x{model.input_size})",
        "",
        f"Machine: {machine_line(model.device)}",
        f"Command: python benchmarks/attack_photos.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        f"Sparse defaults: {config}",
        "Counted on the saved 8-bit PNGs (re-read and re-classified). True label = the model's clean prediction.",
        "",
        "| run | images | success | median px | mean px | max px | median entries | median s | mean s | median model calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append("| " + " | ".join(str(s[key]) for key in s) + " |")
    sparse_s = next(s for s in summaries if s["run"] == "sparse")["median_s"]
    pgd_s = next(s for s in summaries if s["run"] == "pgd")["median_s"]
    lines += ["", f"Time ratio sparse/PGD (medians): {sparse_s / pgd_s:.1f}x" if pgd_s else ""]
    agree = all(row["agrees_with_result"] for row in rows)
    lines.append(f"Saved-PNG re-evaluation agrees with the library's reported success on every row: {agree}")
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
