"""Obscuring vs leading on real photos: the "must show" numbers of issue 13.

    # 1. attack once, cache original.png / adversarial.png / label per photo (slow, done once)
    python benchmarks/explain_photos.py attack --photos bench-out/devset --cache bench-out/explain-cache
    python benchmarks/explain_photos.py attack --crops --cache bench-out/explain-cache   # skimage crops
    # 2. explain every cached photo with each split method and report
    python benchmarks/explain_photos.py explain --cache bench-out/explain-cache --out benchmarks/results
    # 3. (several runs) merge their CSVs into one table
    python benchmarks/explain_photos.py summarize run1/explain_contributions_cpu.csv run2/... --out benchmarks/results

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


def _cached(caches: list[Path], limit: int, offset: int = 0) -> list[tuple[str, Path, dict]]:
    out = []
    for cache in caches:
        for folder in sorted(p for p in cache.iterdir() if (p / "meta.json").exists()):
            meta = json.loads((folder / "meta.json").read_text())
            if meta["success"] and meta["pixels"] > 0:
                out.append((f"{cache.name}/{folder.name}", folder, meta))
    out = out[offset:]
    return out[:limit] if limit else out


def _forward_ms(model: Any) -> float:
    """Median of 5 batch-1 forward passes (ms): the machine's speed right now, for calibration."""
    image = torch.rand(1, 3, model.input_size, model.input_size)
    times = []
    with torch.no_grad():
        for _ in range(5):
            t0 = time.perf_counter()
            model(image)
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def explain_step(args: argparse.Namespace) -> int:
    from sparseviz.attacks.base import finalize
    from sparseviz.explain.contributions import KINDS, SplitConfig
    from sparseviz.images import load_image, to_tensor
    from sparseviz.explain.interpret import ExplainConfig, agreement_score, attribution_maps, explain_pixels
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    photos = _cached(args.cache, args.limit, args.offset)
    rows: list[dict[str, Any]] = []
    for n, (name, folder, meta) in enumerate(photos):
        images = [to_tensor(load_image(folder / f).image)[None] for f in ("original.png", "adversarial.png")]
        result = finalize(model, images[0], images[1], torch.tensor([meta["label"]]), None, attack="sparse (cached)",
                          model_calls=torch.zeros(1), seconds=0.0, params={})
        if not bool(result.success[0]):
            print(f"{name}: cached adversarial no longer fools the model, skipped", flush=True)
            continue
        forward_ms = _forward_ms(model)
        for split_method in args.splits:
            if split_method == "shapley" and args.shapley_max_pixels and meta["pixels"] > args.shapley_max_pixels:
                continue  # sampled Shapley on hundreds of pixels takes minutes on the shared CPU
            config = ExplainConfig(split=SplitConfig(method=split_method))
            e = explain_pixels(model, result, 0, config=config)
            rows_g = {r.group: r for r in e.ablation}
            margin = e.total_drop + e.total_rise
            row: dict[str, Any] = {
                "photo": name, "split": split_method, "split_method": e.split_method, "pixels": len(e.pixels),
                "true": e.true_name, "adv": e.adv_name, **{k: e.counts[k] for k in KINDS},
                "holds": int(e.holds), "verdict": e.verdict, "total_drop": e.total_drop, "total_rise": e.total_rise,
                "completeness_error": e.completeness_error, "relative_error": e.completeness_error / max(margin, 1e-9),
                "best_single_share": e.joint.best_single_share, "alone_flips": e.joint.alone_flips,
                "smallest_flipping_set": e.joint.smallest_flipping_set, "seconds": e.split_seconds,
                "evaluations": e.split_evaluations, "forward_ms": forward_ms,
                "calibrated_seconds": e.split_seconds * args.reference_ms / forward_ms,
            }
            for group in ("obscuring", "leading", "all"):
                g = rows_g[group]
                row.update({f"{group}_n": g.pixels, f"{group}_drop": g.true_drop, f"{group}_rise": g.adv_rise,
                            f"{group}_p_true": g.true_prob, f"{group}_p_adv": g.adv_prob})
            if split_method == args.splits[0] and n < args.maps_limit:
                from sparseviz.explain.contributions import split as split_fn

                clean, adv = result.originals[0], result.adversarials[0]
                y, a = int(result.labels[0]), int(result.adv_labels[0])
                contributions = split_fn(model, clean, adv, y, a, config=config.split)
                for label, method, map_config in map_variants():
                    t0 = time.perf_counter()
                    maps, _ = attribution_maps(model, clean, adv, y, a, method, map_config)
                    score, _ = agreement_score(maps[("clean", "true")][contributions.ys, contributions.xs],
                                               maps[("adv", "adv")][contributions.ys, contributions.xs], contributions)
                    row[f"agree_{label}"] = score
                    row[f"maps_s_{label}"] = time.perf_counter() - t0
            if not e.holds:
                row["why"] = e.holds_why
            rows.append(row)
            _write_csv(rows, args.out / "explain_contributions_cpu.csv")
            print(f"{name} [{split_method}] {len(e.pixels)} px {e.counts} holds={e.holds} "
                  f"err={row['relative_error']:.3f} {e.split_seconds:.1f}s (fwd {forward_ms:.0f} ms)"
                  + "".join(f" {k}={v if v is None else round(v, 2)}" for k, v in row.items() if k.startswith("agree_")),
                  flush=True)
    if not rows:
        print("no cached successful attacks; run the attack step first")
        return 1
    text = summary(rows, args)
    (args.out / "explain_contributions_cpu.md").write_text(text)
    print(text)
    return 0


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """All rows so far (a long run keeps what it measured if it is stopped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    numbers = {"pixels", "obscuring", "leading", "both", "neither", "holds", "alone_flips", "smallest_flipping_set",
               "evaluations", "obscuring_n", "leading_n", "all_n"}
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                elif key in numbers:
                    row[key] = int(value)
                else:
                    try:
                        row[key] = float(value)
                    except ValueError:
                        row[key] = value
            rows.append(row)
    return rows


def summarize_step(args: argparse.Namespace) -> int:
    rows = [row for path in args.csv for row in _read_csv(path)]
    _write_csv(rows, args.out / "explain_contributions_cpu.csv")
    text = summary(rows, args)
    (args.out / "explain_contributions_cpu.md").write_text(text)
    print(text)
    return 0


def map_variants() -> list[tuple[str, str, Any]]:
    from sparseviz.explain.interpret import ExplainConfig

    return [("gradcam_7", "gradcam", ExplainConfig(gradcam_min_size=7)),
            ("gradcam_14", "gradcam", ExplainConfig(gradcam_min_size=14)),
            ("gradcam_28", "gradcam", ExplainConfig(gradcam_min_size=28)),
            ("guided_gradcam_14", "guided_gradcam", ExplainConfig(gradcam_min_size=14)),
            ("guided_gradcam_28", "guided_gradcam", ExplainConfig(gradcam_min_size=28)),
            ("saliency", "saliency", ExplainConfig()),
            ("smoothgrad", "smoothgrad", ExplainConfig()),
            ("integrated_gradients", "integrated_gradients", ExplainConfig())]


AUTO_EXACT_PIXELS = 6  # SplitConfig.auto_exact_pixels


def summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The must-show table, one column per split method."""
    from sparseviz.explain.contributions import KINDS

    by_key = {(r["photo"], r["split"]): r for r in rows}
    if not any(r["split"] == "auto" for r in rows):  # the default, derived: it runs exactly these code paths
        for photo in dict.fromkeys(r["photo"] for r in rows):
            ig, shapley = by_key.get((photo, "integrated_gradients")), by_key.get((photo, "shapley"))
            if ig and (shapley or int(ig["pixels"]) > AUTO_EXACT_PIXELS):
                rows = rows + [{**(shapley if int(ig["pixels"]) <= AUTO_EXACT_PIXELS else ig), "split": "auto"}]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    photos = sorted({r["photo"] for r in rows})
    devset = sum(p.startswith("explain-cache-devset") for p in photos)
    lines = [f"# Obscuring/leading contributions: {len(photos)} real photos ({devset} from the devset, "
             f"{len(photos) - devset} skimage crops), EfficientNet-Lite0, default sparse attack, CPU", "",
             "| | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]

    def line(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn([r for r in rows if r["split"] == s]) for s in splits) + " |")

    def mean(key: str) -> Any:
        return lambda rs: f"{statistics.fmean(float(r[key]) for r in rs):.3f}"

    line("images", lambda rs: str(len(rs)))
    line("changed pixels (total / median / max)", lambda rs: f"{sum(r['pixels'] for r in rs)} / "
         f"{statistics.median(r['pixels'] for r in rs):.0f} / {max(r['pixels'] for r in rs)}")
    for kind in KINDS:
        line(f"share '{kind}'", lambda rs, k=kind: f"{sum(r[k] for r in rs) / sum(r['pixels'] for r in rs):.1%}")
    line("**ablation holds (images)**", lambda rs: f"{sum(r['holds'] for r in rs)}/{len(rs)} "
         f"({sum(r['holds'] for r in rs) / len(rs):.0%})")
    line("holds, images with >= 2 px", lambda rs: (lambda m: f"{sum(r['holds'] for r in m)}/{len(m)} "
         f"({sum(r['holds'] for r in m) / max(len(m), 1):.0%})")([r for r in rs if r["pixels"] >= 2]))
    for subset, prefix in (("dev set", "explain-cache-devset/"), ("skimage crops", "explain-cache/")):
        line(f"holds, {subset} only", lambda rs, p=prefix: (lambda m: f"{sum(r['holds'] for r in m)}/{len(m)}")(
            [r for r in rs if r["photo"].startswith(p)]))
    line("inseparable: no two groups of its pixels pass (all subsets measured, <= 6 px)",
         lambda rs: f"{sum(r.get('verdict') == 'inseparable' for r in rs)}/{len(rs)}")
    line("holds, images not inseparable", lambda rs: (lambda m: f"{sum(r['holds'] for r in m)}/{len(m)} "
         f"({sum(r['holds'] for r in m) / max(len(m), 1):.0%})")([r for r in rs if r.get("verdict") != "inseparable"]))
    for group in ("obscuring", "leading", "all"):
        line(f"mean true-evidence drop, {group} group", mean(f"{group}_drop"))
        line(f"mean adv-evidence rise, {group} group", mean(f"{group}_rise"))
    line("completeness error / margin change (mean / max)", lambda rs: f"{statistics.fmean(r['relative_error'] for r in rs):.3f} / "
         f"{max(r['relative_error'] for r in rs):.3f}")
    line("completeness error, centred logits (mean / max)", lambda rs: f"{statistics.fmean(r['completeness_error'] for r in rs):.3f} / "
         f"{max(r['completeness_error'] for r in rs):.3f}")
    line("best single pixel's share of the flip (median)", lambda rs: f"{statistics.median(r['best_single_share'] for r in rs):.0%}")
    line("images no pixel flips alone", lambda rs: f"{sum(r['alone_flips'] == 0 for r in rs)}/{len(rs)}")
    line("model evaluations per image (median / max)", lambda rs: f"{statistics.median(r['evaluations'] for r in rs):.0f} / "
         f"{max(r['evaluations'] for r in rs)}")
    for label, cap in (("all", 10 ** 9), ("<= 40 px", 40)):
        line(f"seconds, shared CPU, {label} (median / max)", lambda rs, c=cap: (
            lambda m: f"{statistics.median(m):.1f} / {max(m):.1f}" if m else "-")(
            [r["seconds"] for r in rs if r["pixels"] <= c]))
        line(f"seconds calibrated to {args.reference_ms:.0f} ms/forward, {label} (median / max)", lambda rs, c=cap: (
            lambda m: f"{statistics.median(m):.1f} / {max(m):.1f}" if m else "-")(
            [r["calibrated_seconds"] for r in rs if r["pixels"] <= c]))
    line("batch-1 forward during the run, ms (median)", lambda rs: f"{statistics.median(r['forward_ms'] for r in rs):.0f}")
    agree = sorted({k for r in rows for k in r if k.startswith("agree_")})
    if agree:
        lines += ["", "Agreement of the maps with the contributions (mean Spearman over changed pixels, images with "
                  ">= 3 px; 1 = same order, 0 = unrelated):", "", "| maps | mean | median | images | seconds (median) |",
                  "|---|---|---|---|---|"]
        measured = [r for r in rows if r["split"] == "integrated_gradients"]  # maps were measured once per photo
        for key in agree:
            values = [r[key] for r in measured if r.get(key) not in (None, "")]
            secs = [r[key.replace("agree_", "maps_s_")] for r in measured if r.get(key) not in (None, "")]
            if values:
                lines.append(f"| {key[6:]} | {statistics.fmean(values):.2f} | {statistics.median(values):.2f} | "
                             f"{len(values)} | {statistics.median(secs):.1f} |")
    failed = [r for r in rows if not r["holds"]]
    if failed:
        lines += ["", "Where the split does not hold:", ""]
        lines += [f"- {r['photo']} [{r['split']}], {r['pixels']} px: {r.get('why', '')}" for r in failed]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    a = sub.add_parser("attack", help="attack each photo once and cache the 8-bit images")
    a.add_argument("--photos", type=Path, help="folder of photos (e.g. bench-out/devset)")
    a.add_argument("--crops", action="store_true", help="also attack crops of skimage photos")
    a.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "explain-cache")
    a.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    a.set_defaults(handler=attack)
    e = sub.add_parser("explain", help="explain every cached attack and write the summary")
    e.add_argument("--cache", type=Path, nargs="+", default=[ROOT / "bench-out" / "explain-cache"])
    e.add_argument("--splits", nargs="+", default=["integrated_gradients", "shapley"])
    e.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    e.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    e.add_argument("--shapley-max-pixels", type=int, default=0, help="skip the Shapley split above N px (0 = never)")
    e.add_argument("--offset", type=int, default=0, help="skip the first N cached photos (split a run in two)")
    e.add_argument("--maps-limit", type=int, default=10 ** 6, help="measure map agreement on the first N photos")
    e.add_argument("--reference-ms", type=float, default=15.0,
                   help="a batch-1 forward on the idle 2-core CPU (README: about 15 ms), for calibrated seconds")
    e.set_defaults(handler=explain_step)
    m = sub.add_parser("summarize", help="merge the CSVs of several explain runs into one table")
    m.add_argument("csv", type=Path, nargs="+")
    m.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    m.add_argument("--reference-ms", type=float, default=15.0)
    m.set_defaults(handler=summarize_step)
    args = parser.parse_args()
    torch.set_num_threads(1)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
