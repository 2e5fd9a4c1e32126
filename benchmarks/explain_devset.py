"""Issue 27: the obscuring/leading split on real ImageNet photos, by confidence band.

    python benchmarks/explain_devset.py --photos ../shared/imagenet-dev \
        --attacks bench-out/i24/sparse120 [--attacks OTHER_BENCH_OUT ...] --out bench-out/i27

Reads the adversarial PNGs of ``sparseviz bench`` runs (``--attacks`` = a bench ``--out``
folder: its ``results.csv`` and ``adversarials/``), so the explanation sees exactly the saved
8-bit images and the slow attacks are not run again. The clean image is the photo through
the model's own preprocessing, quantised to 8 bits, as bench did. Per photo: the default
explanation (``sparseviz explain``'s split, labels and group ablation, plus the default
Grad-CAM maps the Why tab draws), its verdict (holds / inseparable / fails), the share of
changed pixels labelled "neither", seconds for the split + proof and for the whole
explanation, and the process's peak-memory increase over the loaded model (max RSS, so the
worst explanation so far). One torch thread unless --threads. Writes ``explain_devset.csv`` and ``.md``.
``--split`` compares other split methods on the same images (the labelling rule is unchanged).
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

BANDS = ("high", "mid", "low")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _bench_rows(folders: list[Path]) -> list[tuple[dict[str, str], Path]]:
    """Successful attacked rows of bench runs, each with its adversarial PNG; first run wins per photo."""
    seen: set[str] = set()
    out = []
    for folder in folders:
        with open(folder / "results.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                png = folder / row.get("adversarial_png", "")
                if row["status"] != "attacked" or row["success"] != "1" or not png.is_file() or row["image"] in seen:
                    continue
                seen.add(row["image"])
                out.append((row, png))
    return out


def _bench_rows_from_pngs(folder: Path, photos: Path) -> list[tuple[dict[str, str], Path]]:
    """A bench run stopped before it wrote results.csv: its PNGs, with the band from the manifest."""
    manifest = {r["file"]: r for r in csv.DictReader(open(photos / "manifest.csv", newline=""))}
    rows = []
    for png in sorted((folder / "adversarials" / "sparse").glob("*.png")):
        conf = float(manifest[png.name]["clean_conf"])
        rows.append(({"image": png.name, "clean_confidence": str(conf), "l0_pixels": "", "target_label": ""}, png))
    return rows


def band(confidence: float) -> str:
    return "high" if confidence >= 0.8 else "mid" if confidence >= 0.4 else "low"


def load_pair(model: Any, photo: Path, adversarial: Path, target: int | None) -> Any:
    """The photo through the model's preprocessing at 8 bits (as bench attacked it) and the saved PNG."""
    from sparseviz.attacks.base import finalize
    from sparseviz.images import load_image, quantize, to_tensor

    clean = quantize(model.preprocess(to_tensor(load_image(photo).image))[None])
    adv = to_tensor(load_image(adversarial).image)[None]
    label = int(model.predict_proba(clean).argmax())
    return finalize(model, clean, adv, torch.tensor([label]), None if target is None else torch.tensor([target]),
                    attack="sparse (saved PNG)", model_calls=torch.zeros(1), seconds=0.0, params={})


def explain_one(model: Any, photo: Path, adversarial: Path, target: int | None, split_method: str,
                maps: bool) -> dict[str, Any]:
    from sparseviz.explain.contributions import SplitConfig
    from sparseviz.explain.interpret import ExplainConfig, explain, explain_pixels

    result = load_pair(model, photo, adversarial, target)
    if not bool(result.success[0]):
        return {"verdict": "no longer fools"}
    config = ExplainConfig(split=SplitConfig(method=split_method))
    t0 = time.perf_counter()
    e = explain(model, result, 0, config=config) if maps else explain_pixels(model, result, 0, config=config)
    seconds = time.perf_counter() - t0
    k = len(e.pixels)
    return {"pixels": k, "split_method": e.split_method, "verdict": e.verdict, "holds": int(e.holds),
            "neither": e.counts["neither"], "both": e.counts["both"], "obscuring": e.counts["obscuring"],
            "leading": e.counts["leading"], "split_seconds": round(e.split_seconds, 3), "seconds": round(seconds, 3),
            "evaluations": e.split_evaluations, "completeness_error": round(e.completeness_error, 4),
            "why": "" if e.holds else e.holds_why}


RULES: dict[str, float | None] = {"ratio 1.5": None, "balanced 0.1": 0.1, "balanced 0.2": 0.2, "balanced 0.3": 0.3,
                                  "balanced 0.5": 0.5}


def compare_rules(model: Any, photo: Path, adversarial: Path, target: int | None, ig_steps: int = 16
                  ) -> list[dict[str, Any]]:
    """One split per photo, then each labelling rule's group ablation (4 forwards a rule, batched)."""
    from sparseviz.explain.contributions import KINDS, PixelGame, SplitConfig, split
    from sparseviz.explain.hygiene import EvalMode
    from sparseviz.explain.proof import group_ablation, group_masks, separable

    result = load_pair(model, photo, adversarial, target)
    if not bool(result.success[0]):
        return []
    c0, a0 = result.originals[0], result.adversarials[0]
    y, a = int(result.labels[0]), int(result.adv_labels[0])
    with EvalMode(model):
        c = split(model, c0, a0, y, a, config=SplitConfig(ig_steps=ig_steps))
        game = PixelGame(model, c0, a0, torch.from_numpy(c.ys), torch.from_numpy(c.xs), (y, a), 16)
        cases = [(name, c.labels(balance=balance)) for name, balance in RULES.items()]
        masks = torch.cat([group_masks(labels) for _, labels in cases])
        logits = game.logits(masks)
        can_separate = separable(game) if c.k <= 8 else None
    rows = []
    for i, (name, labels) in enumerate(cases):
        ablation = group_ablation(logits[4 * i: 4 * i + 4], masks[4 * i: 4 * i + 4], c, y, a, can_separate)
        rows.append({"rule": name, "ig_steps": ig_steps, "pixels": c.k, "verdict": ablation.verdict,
                     "completeness_error": round(c.completeness_error, 4),
                     **{kind: labels.count(kind) for kind in KINDS}, "why": "" if ablation.holds else ablation.why})
    return rows


def summarise(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"`{command}`", "",
             "| split | band | photos | holds | inseparable | fails | neither share | px median | "
             "split+proof s median / max | with maps s median / max | peak RSS increase MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for split_method in dict.fromkeys(r["split"] for r in rows):
        for name in (*BANDS, "all"):
            group = [r for r in rows if r["split"] == split_method and (name == "all" or r["band"] == name)
                     and "pixels" in r]
            if not group:
                continue
            count = {v: sum(r["verdict"] == v for r in group) for v in ("holds", "inseparable", "fails")}
            neither = sum(r["neither"] for r in group) / max(sum(r["pixels"] for r in group), 1)
            split_s = [r["split_seconds"] for r in group]
            whole = [r["seconds"] for r in group]
            lines.append(
                f"| {split_method} | {name} | {len(group)} | {count['holds']} ({count['holds'] / len(group):.0%}) | "
                f"{count['inseparable']} | {count['fails']} | {neither:.1%} | "
                f"{statistics.median(r['pixels'] for r in group):g} | "
                f"{statistics.median(split_s):.2f} / {max(split_s):.2f} | "
                f"{statistics.median(whole):.2f} / {max(whole):.2f} | {max(r['rss_increase_mib'] for r in group):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True, help="the dev-set folder (photos + manifest.csv)")
    parser.add_argument("--attacks", type=Path, action="append", default=[], help="a sparseviz bench --out folder")
    parser.add_argument("--pngs-only", type=Path, action="append", default=[],
                        help="a stopped bench run's --out folder (untargeted PNGs, no results.csv)")
    parser.add_argument("--split", action="append", default=None, help="split method(s); default: auto")
    parser.add_argument("--no-maps", action="store_true", help="split + proof only (no Grad-CAM maps)")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--rules", action="store_true", help="compare labelling rules (one split per photo)")
    parser.add_argument("--ig-steps", type=int, default=16, help="--rules: Integrated Gradients steps of the split")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the app's workers use 1)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    model.predict_proba(torch.rand(1, 3, model.input_size, model.input_size))
    base_rss = _max_rss_mib()
    items = _bench_rows(args.attacks)
    for folder in args.pngs_only:
        known = {row["image"] for row, _ in items}
        items += [(row, png) for row, png in _bench_rows_from_pngs(folder, args.photos) if row["image"] not in known]
    items = items[: args.limit] if args.limit else items
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if args.rules:
        return rules_main(model, items, args)
    for row, png in items:
        for split_method in args.split or ["auto"]:
            target = int(row["target_label"]) if row.get("target_label") else None
            out = {"image": row["image"], "band": band(float(row["clean_confidence"])), "split": split_method,
                   "bench_pixels": row.get("l0_pixels", ""),
                   **explain_one(model, args.photos / row["image"], png, target, split_method, not args.no_maps)}
            out["rss_increase_mib"] = round(_max_rss_mib() - base_rss, 1)
            rows.append(out)
            print({k: v for k, v in out.items() if k != "why"}, flush=True)
            fields = list(dict.fromkeys(k for r in rows for k in r))
            with open(args.out / "explain_devset.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
    text = summarise(rows, "python " + " ".join(sys.argv))
    (args.out / "explain_devset.md").write_text(text)
    print(text)
    return 0


def rules_main(model: Any, items: list[tuple[dict[str, str], Path]], args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for row, png in items:
        target = int(row["target_label"]) if row.get("target_label") else None
        for out in compare_rules(model, args.photos / row["image"], png, target, args.ig_steps):
            rows.append({"image": row["image"], "band": band(float(row["clean_confidence"])), **out})
        print(row["image"], [(r["rule"], r["verdict"], r["both"]) for r in rows if r["image"] == row["image"]],
              flush=True)
    with open(args.out / "explain_rules_devset.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| rule | band | photos | holds | inseparable | fails | obscuring / leading / both / neither |",
             "|---|---|---|---|---|---|---|"]
    for rule in RULES:
        for name in (*BANDS, "all"):
            group = [r for r in rows if r["rule"] == rule and (name == "all" or r["band"] == name)]
            if not group:
                continue
            count = {v: sum(r["verdict"] == v for r in group) for v in ("holds", "inseparable", "fails")}
            total = max(sum(r["pixels"] for r in group), 1)
            kinds = " / ".join(f"{sum(r[k] for r in group) / total:.1%}" for k in ("obscuring", "leading", "both",
                                                                                   "neither"))
            lines.append(f"| {rule} | {name} | {len(group)} | {count['holds']} ({count['holds'] / len(group):.0%}) | "
                         f"{count['inseparable']} | {count['fails']} | {kinds} |")
    text = f"`python {' '.join(sys.argv)}`\n\n" + "\n".join(lines) + "\n"
    (args.out / "explain_rules_devset.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
