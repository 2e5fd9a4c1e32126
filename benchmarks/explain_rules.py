"""Which labelling rule? Contributions once per photo and split, then every candidate rule's group ablation.

    # after `explain_photos.py attack` has cached the attacks:
    python benchmarks/explain_rules.py contributions --cache bench-out/explain-cache-devset bench-out/explain-cache
    python benchmarks/explain_rules.py rules --out benchmarks/results        # the rule table (cheap: forwards only)
    python benchmarks/explain_rules.py maps --out benchmarks/results         # map agreement per attribution method

``contributions`` splits each cached attack with Integrated Gradients and with Shapley (exact up
to 8 px, sampled up to ``--shapley-max-pixels``) and stores them as JSON under ``--store``
(resumes: done photos are skipped); ``auto`` (the default split) is exact Shapley up to 6 px and
IG above, so it is read from those two. ``rules`` labels the pixels with each candidate rule (a
function of the contributions only: the ablation never chooses a label), runs the group-ablation
forwards of all rules of a photo in one batch, and tabulates per rule and split: label shares,
the per-image test's pass rate (ties and one-pixel attacks count as not holding), the pass rate
on images with >= 2 px, and the mean evidence drop/rise per group. The rule is chosen on the
dev set (``explain-cache-devset``); the skimage crops are reported apart as a held-out check.
``maps`` computes the agreement score (sparseviz.interpret) of each attribution method with the
default split's contributions on photos with >= 3 changed pixels.
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "bench-out" / "explain-rules"
AUTO_EXACT_PIXELS = 6  # SplitConfig.auto_exact_pixels
# (name, label_pixels keyword arguments); "shares r1.25" was the rule before this measurement
RULES: list[tuple[str, dict[str, Any]]] = (
    [(f"shares r{r:g}", {"scale": "shares", "ratio": r}) for r in (1.0, 1.25, 1.5, 2.0, 3.0)]
    + [(f"evidence r{r:g}", {"scale": "evidence", "ratio": r}) for r in (1.0, 1.25, 1.5, 2.0, 3.0)])
SPLITS = ("auto", "integrated_gradients", "shapley")


def _load(folder: Path, model: Any) -> Any:
    from sparseviz.attacks.base import finalize
    from sparseviz.images import load_image, to_tensor

    meta = json.loads((folder / "meta.json").read_text())
    images = [to_tensor(load_image(folder / f).image)[None] for f in ("original.png", "adversarial.png")]
    return finalize(model, images[0], images[1], torch.tensor([meta["label"]]), None, attack="sparse (cached)",
                    model_calls=torch.zeros(1), seconds=0.0, params={})


def _photos(caches: list[Path]) -> list[tuple[str, Path]]:
    return [(f"{cache.name}/{folder.name}", folder) for cache in caches
            for folder in sorted(p for p in cache.iterdir() if (p / "meta.json").exists())]


def contributions_step(args: argparse.Namespace) -> int:
    from sparseviz.explain.contributions import SplitConfig, split
    from sparseviz.explain.hygiene import EvalMode
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    for name, folder in _photos(args.cache):
        meta = json.loads((folder / "meta.json").read_text())
        if not meta["success"] or meta["pixels"] < 1:
            continue
        out = args.store / name
        methods = ["integrated_gradients"] + (["shapley"] if meta["pixels"] <= args.shapley_max_pixels else [])
        todo = [m for m in methods if not (out / f"{m}.json").exists()]
        if not todo:
            continue
        result = _load(folder, model)
        if not bool(result.success[0]):
            print(f"{name}: cached adversarial no longer fools the model, skipped", flush=True)
            continue
        clean, adv = result.originals[0], result.adversarials[0]
        y, a = int(result.labels[0]), int(result.adv_labels[0])
        out.mkdir(parents=True, exist_ok=True)
        for method in todo:
            with EvalMode(model):
                c = split(model, clean, adv, y, a, config=SplitConfig(method=method))
            record = {"photo": name, "true": y, "adv": a, "method": c.method, "note": c.note,
                      "ys": c.ys.tolist(), "xs": c.xs.tolist(), "obscuring": c.obscuring.tolist(),
                      "leading": c.leading.tolist(), "obscuring_se": c.obscuring_se.tolist(),
                      "leading_se": c.leading_se.tolist(), "total_drop": c.total_drop, "total_rise": c.total_rise,
                      "completeness_error": c.completeness_error, "evaluations": c.evaluations, "seconds": c.seconds}
            (out / f"{method}.json").write_text(json.dumps(record))
            print(f"{name} [{c.method}] {c.k} px, err {c.completeness_error:.3f}, {c.seconds:.1f} s", flush=True)
    return 0


def _stored(store: Path) -> dict[str, dict[str, Any]]:
    """photo -> {split -> contributions record}, with ``auto`` derived as the library does it."""
    photos: dict[str, dict[str, Any]] = {}
    for path in sorted(store.glob("*/*/*.json")):
        if path.stem in ("integrated_gradients", "shapley"):
            photos.setdefault(f"{path.parent.parent.name}/{path.parent.name}", {})[path.stem] = json.loads(
                path.read_text())
    for splits in photos.values():
        k = len(splits["integrated_gradients"]["ys"])
        auto = splits.get("shapley") if k <= AUTO_EXACT_PIXELS else splits["integrated_gradients"]
        if auto is not None:
            splits["auto"] = auto
    return photos


def _contributions(record: dict[str, Any]) -> Any:
    from sparseviz.explain.contributions import Contributions

    arrays = {k: np.asarray(record[k]) for k in ("ys", "xs", "obscuring", "leading", "obscuring_se", "leading_se")}
    return Contributions(method=record["method"], **arrays, total_drop=record["total_drop"],
                         total_rise=record["total_rise"], completeness_error=record["completeness_error"],
                         evaluations=record["evaluations"], seconds=record["seconds"], note=record["note"])


def _cache_folder(name: str, caches: list[Path]) -> Path:
    cache_name, photo = name.split("/")
    for cache in caches:
        if cache.name == cache_name:
            return cache / photo
    raise SystemExit(f"{name}: its cache folder is not among --cache")


def rules_step(args: argparse.Namespace) -> int:
    from sparseviz.explain.contributions import KINDS, PixelGame, label_pixels
    from sparseviz.explain.hygiene import EvalMode
    from sparseviz.models import load_model
    from sparseviz.explain.proof import group_ablation, group_masks, separable

    model = load_model("efficientnet_lite0", device="cpu")
    rows: list[dict[str, Any]] = []
    for name, splits in _stored(args.store).items():
        result = _load(_cache_folder(name, args.cache), model)
        clean, adv = result.originals[0], result.adversarials[0]
        y, a = int(result.labels[0]), int(result.adv_labels[0])
        ig = splits["integrated_gradients"]
        game = PixelGame(model, clean, adv, torch.tensor(ig["ys"]), torch.tensor(ig["xs"]), (y, a), 32)
        cases = []  # (split, rule, contributions, labels, (4, k) masks)
        for split_name in SPLITS:
            if split_name not in splits:
                continue
            c = _contributions(splits[split_name])
            assert c.ys.tolist() == ig["ys"] and c.xs.tolist() == ig["xs"]
            for rule, kwargs in RULES:
                labels = label_pixels(c.obscuring, c.leading, **kwargs)
                cases.append((split_name, rule, c, labels, group_masks(labels)))
        unique = {tuple(m.tolist()): None for case in cases for m in case[4]}
        keys = list(unique)
        with EvalMode(model):
            logits = game.logits(torch.tensor(keys, dtype=torch.float32))
            can_separate = separable(game)  # a property of the image, not of the rule (None above 6 px)
        index = {key: i for i, key in enumerate(keys)}
        for split_name, rule, c, labels, masks in cases:
            rows_4 = logits[[index[tuple(m.tolist())] for m in masks]]
            ablation = group_ablation(rows_4, masks, c, y, a, can_separate)
            g = {r.group: r for r in ablation.rows}
            rows.append({"photo": name, "split": split_name, "rule": rule, "pixels": c.k,
                         **{kind: labels.count(kind) for kind in KINDS}, "verdict": ablation.verdict,
                         "holds": int(ablation.holds), **{f"{group}_{what}": getattr(g[group], f"{full}")
                                                          for group in ("obscuring", "leading")
                                                          for what, full in (("drop", "true_drop"), ("rise", "adv_rise"))},
                         "why": "" if ablation.holds else ablation.why})
        print(f"{name}: {len(keys)} group images for {len(cases)} (split, rule) cases", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "explain_rules_cpu.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "why"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    text = rules_table(rows)
    (args.out / "explain_rules_cpu.md").write_text(text)
    print(text)
    return 0


def by_subset(rows: list[dict[str, Any]], dev: str, crops: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) for the dev-set photos and for the rest (the skimage crops), leaving out an empty one."""
    parts = [(dev, [r for r in rows if r["photo"].startswith("explain-cache-devset/")]),
             (crops, [r for r in rows if not r["photo"].startswith("explain-cache-devset/")])]
    return [(title, part) for title, part in parts if part]


def rules_table(rows: list[dict[str, Any]]) -> str:
    """One line per (rule, split): shares, pass rates, mean drop/rise per group; dev set and crops apart."""
    from sparseviz.explain.contributions import KINDS

    lines = ["# Labelling rules: per-image group-ablation test on real photos (EfficientNet-Lite0, default attack)", "",
             "Holds = the obscuring(+both) group lowers the true class's evidence more than the leading(+both) group "
             "AND the leading group raises the adversarial class's more; a tie (both groups the same pixels, e.g. a "
             "one-pixel attack) does NOT hold. 'inseparable' = no two groups of the image's pixels pass the test at "
             "all (every pair of the 2^k subsets measured, images with <= 6 px): no labelling could make it hold. "
             "Drop/rise: centred-logit evidence, mean over images, obscuring group / leading group.", ""]
    for subset, part in by_subset(rows, "dev set (the rule is chosen here)", "skimage crops (held out)"):
        lines += [f"## {subset}: {len({r['photo'] for r in part})} photos", "",
                  "| rule | split | images | obsc / lead / both / **neither** | **holds (all)** | holds, >= 2 px | "
                  "inseparable | holds, separable | drop O / L | rise O / L |", "|---|---|---|---|---|---|---|---|---|---|"]
        for rule, _ in RULES:
            for split_name in SPLITS:
                rs = [r for r in part if r["rule"] == rule and r["split"] == split_name]
                if not rs:
                    continue
                total = sum(r["pixels"] for r in rs)
                shares = " / ".join(f"{sum(r[k] for r in rs) / total:.1%}" for k in KINDS)
                multi = [r for r in rs if r["pixels"] >= 2]
                held = sum(r["holds"] for r in rs)
                lines.append(
                    f"| {rule} | {split_name} | {len(rs)} | {shares} | {held}/{len(rs)} ({held / len(rs):.0%}) | "
                    f"{sum(r['holds'] for r in multi)}/{len(multi)} "
                    f"({sum(r['holds'] for r in multi) / max(len(multi), 1):.0%}) | "
                    f"{sum(r['verdict'] == 'inseparable' for r in rs)} | "
                    f"{held}/{sum(r['verdict'] != 'inseparable' for r in rs)} "
                    f"({held / max(sum(r['verdict'] != 'inseparable' for r in rs), 1):.0%}) | "
                    f"{statistics.fmean(r['obscuring_drop'] for r in rs):.2f} / "
                    f"{statistics.fmean(r['leading_drop'] for r in rs):.2f} | "
                    f"{statistics.fmean(r['obscuring_rise'] for r in rs):.2f} / "
                    f"{statistics.fmean(r['leading_rise'] for r in rs):.2f} |")
        lines.append("")
    from sparseviz.explain.contributions import SplitConfig

    default = SplitConfig()
    chosen = f"{default.label_scale} r{default.label_ratio:g}"
    failed = [r for r in rows if r["rule"] == chosen and r["split"] == "auto" and not r["holds"]]
    lines += [f"## Where the chosen rule ({chosen}, auto split) does not hold", ""]
    lines += [f"- {r['photo']}, {r['pixels']} px, {r['verdict']}: {r['why']}" for r in failed]
    return "\n".join(lines) + "\n"


def maps_step(args: argparse.Namespace) -> int:
    from benchmarks.explain_photos import map_variants
    from sparseviz.explain.interpret import agreement_score, attribution_maps
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    path = args.out / "explain_agreement_cpu.json"
    done: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() and not args.fresh else []
    seen = {(r["photo"], r["maps"]) for r in done}
    for name, splits in _stored(args.store).items():
        c = _contributions(splits.get("auto") or splits["integrated_gradients"])
        if c.k < 3:
            continue
        result = _load(_cache_folder(name, args.cache), model)
        clean, adv = result.originals[0], result.adversarials[0]
        y, a = int(result.labels[0]), int(result.adv_labels[0])
        for label, method, config in map_variants():
            if (name, label) in seen:
                continue
            t0 = time.perf_counter()
            maps, _ = attribution_maps(model, clean, adv, y, a, method, config)
            score, parts = agreement_score(maps[("clean", "true")][c.ys, c.xs], maps[("adv", "adv")][c.ys, c.xs], c)
            done.append({"photo": name, "pixels": c.k, "split": c.method, "maps": label, "agreement": score,
                         **{f"agreement_{k}": v for k, v in parts.items()}, "seconds": time.perf_counter() - t0})
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done, indent=0))
        print(name, c.k, {r["maps"]: None if r["agreement"] is None else round(r["agreement"], 2)
                          for r in done if r["photo"] == name}, flush=True)
    text = agreement_table(done)
    (args.out / "explain_agreement_cpu.md").write_text(text)
    print(text)
    return 0


def agreement_table(rows: list[dict[str, Any]]) -> str:
    lines = ["# Agreement of attribution maps with the contributions (photos with >= 3 changed px)", "",
             "Score = mean of two Spearman correlations over the changed pixels: map(clean, true class) vs obscuring "
             "contributions and map(adversarial, adversarial class) vs leading (default split). 1 = same order, "
             "0 = unrelated. +- = standard error of the mean over images. gradcam_N = Grad-CAM on the last stage "
             "with maps at least N wide (Lite0: 7 = conv_head level, 14 = blocks.4, 28 = blocks.2).", ""]
    for subset, part_rows in by_subset(rows, "dev set", "skimage crops"):
        lines += [f"## {subset}: {len({r['photo'] for r in part_rows})} photos", "",
                  "| maps | images | mean +- SE | median | share of images >= 0.3 | obscuring part (mean) | "
                  "leading part (mean) | seconds (median) |", "|---|---|---|---|---|---|---|---|"]
        for label in dict.fromkeys(r["maps"] for r in part_rows):
            rs = [r for r in part_rows if r["maps"] == label and r["agreement"] is not None]
            if len(rs) < 2:
                continue
            values = [r["agreement"] for r in rs]

            def part(key: str, rs: list[dict[str, Any]] = rs) -> str:
                known = [r[key] for r in rs if r.get(key) is not None]
                return f"{statistics.fmean(known):.2f}" if known else "-"

            se = statistics.stdev(values) / len(values) ** 0.5
            lines.append(f"| {label} | {len(rs)} | {statistics.fmean(values):.2f} +- {se:.2f} | "
                         f"{statistics.median(values):.2f} | {sum(v >= 0.3 for v in values) / len(values):.0%} | "
                         f"{part('agreement_obscuring')} | {part('agreement_leading')} | "
                         f"{statistics.median(r['seconds'] for r in rs):.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    caches = [ROOT / "bench-out" / "explain-cache-devset", ROOT / "bench-out" / "explain-cache"]
    for step, handler in (("contributions", contributions_step), ("rules", rules_step), ("maps", maps_step)):
        p = sub.add_parser(step)
        p.add_argument("--cache", type=Path, nargs="+", default=caches, help="attack caches of explain_photos.py")
        p.add_argument("--store", type=Path, default=STORE, help="where the contributions are kept")
        p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
        p.add_argument("--shapley-max-pixels", type=int, default=40, help="Shapley split only up to N px")
        p.add_argument("--fresh", action="store_true", help="maps: recompute instead of resuming")
        p.set_defaults(handler=handler)
    args = parser.parse_args()
    torch.set_num_threads(1)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
