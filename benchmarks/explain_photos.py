"""Obscuring vs leading on the bundled photos: the "must show" numbers of the Interpretation issue.

    python benchmarks/explain_photos.py [--method gradcam] [--out benchmarks/out/explain]

For each photo in assets/: sparse attack (default config, seed 0, untargeted) on the
offline EfficientNet-Lite0, then ``explain``. Writes per-photo rows (CSV) and a summary
(Markdown) and prints the summary: label shares, mean group-ablation confidences,
agreement of the two views, seconds per explanation (CPU).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "explain")
    parser.add_argument("--photos", type=Path, default=ROOT / "assets")
    parser.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    args = parser.parse_args()

    from sparseviz.attacks.sparse import SparseConfig, sparse_attack
    from sparseviz.images import load_image, to_tensor
    from sparseviz.interpret import KINDS, explain
    from sparseviz.models import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model("efficientnet_lite0", device="cpu")
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
    if args.limit:
        photos = photos[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for photo in photos:
        image = model.preprocess(to_tensor(load_image(photo).image))[None]
        label = int(model.predict_proba(image).argmax())
        t0 = time.perf_counter()
        result = sparse_attack(model, image, torch.tensor([label]), config=SparseConfig(seed=0))
        attack_s = time.perf_counter() - t0
        if not bool(result.success[0]):
            print(f"{photo.name}: attack failed, skipped", flush=True)
            continue
        e = explain(model, result, 0, method=args.method)
        a_counts = {k: sum(p.attribution_label == k for p in e.pixels) for k in KINDS}
        row = {"photo": photo.name, "true": e.true_name, "adv": e.adv_name, "pixels": len(e.pixels),
               **{f"causal_{k}": e.counts[k] for k in KINDS}, **{f"attr_{k}": a_counts[k] for k in KINDS},
               "agreement": e.agreement, "attack_s": attack_s, "explain_s": e.seconds,
               "true_drop": e.true_drop, "adv_rise": e.adv_rise}
        for r in e.ablation:
            key = r.group.replace(" (", "_").replace(")", "")
            row[f"{key}_p_true"], row[f"{key}_p_adv"], row[f"{key}_n"] = r.true_prob, r.adv_prob, r.pixels
        rows.append(row)
        print(f"{photo.name}: {e.true_name} -> {e.adv_name}, {len(e.pixels)} px, causal {e.counts}, "
              f"attribution {a_counts}, agree {e.agreement:.2f}, explain {e.seconds:.1f}s", flush=True)
    if not rows:
        print("no successful attacks")
        return 1
    with open(args.out / f"explain_{args.method}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    total = sum(r["pixels"] for r in rows)
    mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
    lines = [f"# Obscuring vs leading, {len(rows)} photos, EfficientNet-Lite0, method {args.method}, CPU", "",
             f"Perturbed pixels in total: {total}", "", "| view | obscuring | leading | both | neither |",
             "|---|---|---|---|---|"]
    for view in ("causal", "attr"):
        shares = [sum(r[f"{view}_{k}"] for r in rows) / total for k in KINDS]
        lines.append(f"| {view} | " + " | ".join(f"{s:.0%}" for s in shares) + " |")
    lines += ["", "Group ablation (clean image + only these pixels), mean over photos:", "",
              "| group | mean p(true) | mean p(adv) | photos where group is non-empty |", "|---|---|---|---|"]
    for group in ("clean", "all", "obscuring_causal", "leading_causal", "obscuring_attribution", "leading_attribution"):
        n = sum(r[f"{group}_n"] > 0 for r in rows)
        lines.append(f"| {group} | {mean(f'{group}_p_true'):.3f} | {mean(f'{group}_p_adv'):.3f} | {n if group != 'clean' else '-'} |")
    lines += ["", f"Mean true-class drop (full attack): {mean('true_drop'):.3f}; mean adversarial-class rise: "
              f"{mean('adv_rise'):.3f}", f"Agreement of the two views (per pixel, mean over photos): {mean('agreement'):.0%}",
              f"Pooled agreement (all pixels): {sum(r['agreement'] * r['pixels'] for r in rows) / total:.0%}",
              f"Seconds per explanation (CPU, {torch.get_num_threads()} threads): median "
              f"{statistics.median(r['explain_s'] for r in rows):.1f}, max {max(r['explain_s'] for r in rows):.1f}",
              f"Seconds per attack: median {statistics.median(r['attack_s'] for r in rows):.1f}"]
    text = "\n".join(lines) + "\n"
    (args.out / f"explain_{args.method}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
