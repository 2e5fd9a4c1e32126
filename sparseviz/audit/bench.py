"""Benchmark loop: every attack on the same preprocessed images, one CSV row per image x attack.

Everything is measured on the saved 8-bit PNG: each adversarial image is written,
read back, checked to be bit-identical to the result, and that file is what the
transfer models are asked about. The Markdown/HTML summary records the machine,
the device, the thread count, the load on the machine and every attack's config.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from ..attacks import ATTACKS, options
from ..attacks.base import AttackResult
from ..images.folders import BenchImage
from ..models import ImageClassifier
from ..views.report import html_table, markdown_table, save_verified_png, transfer_fooled


# --- configs ----------------------------------------------------------------------------


def build_config(attack: str, overrides: dict[str, str] | None = None, *, max_seconds: float | None = None) -> Any:
    """An attack's config with string overrides (``{"max_iter": "10"}``, ``{"tuning.patience": "8"}``),
    parsed and checked by its options (see ``options.build``)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}.")
    fixed: dict[str, Any] = {} if max_seconds is None else {"max_seconds": max_seconds}
    return options.build(ATTACKS[attack].config_type, overrides or {}, what=attack, **fixed)


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["sparsefool.max_iter=10", ...]`` -> ``{"sparsefool": {"max_iter": "10"}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        attack, dot, option = key.strip().partition(".")
        if not sep or not dot or not option:
            raise ValueError(f"--set expects ATTACK.OPTION=VALUE (e.g. sparsefool.max_iter=10); got {item!r}.")
        parsed.setdefault(attack, {})[option] = value
    return parsed


# --- the loop ---------------------------------------------------------------------------

CSV_COLUMNS = [
    "image", "attack", "kind", "model", "status", "label_source", "true_label", "true_name", "clean_confidence",
    "target_label", "target_name", "success", "adv_label", "adv_name", "adv_confidence", "l0_pixels", "l0_entries",
    "l2", "linf", "seconds", "model_calls", "model_invocations", "interrupted", "adversarial_png", "band", "float_success",
]


@dataclass
class BenchRun:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    transfer_models: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return CSV_COLUMNS + [f"transfer_{name}" for name in self.transfer_models]


def machine_info(model: ImageClassifier) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = str(model.device)
    if model.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(model.device)})"
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "load_average_start": _load_average(),
    }


def _load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def choose_target(label: int, num_classes: int, seed: int, index: int) -> int:
    """A seeded random class other than ``label`` (the usual targeted-attack protocol)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    offset = int(torch.randint(1, num_classes, (1,), generator=generator))
    return (label + offset) % num_classes


def _transfer(
    other: ImageClassifier, original: torch.Tensor, adversarial: torch.Tensor, label: int, target: int | None
) -> int | None:
    """1/0: does ``adversarial`` fool ``other`` too; None when ``other`` gets the clean image 'wrong' already."""
    with torch.no_grad():
        logits = other(torch.stack([original, adversarial]).to(other.device))
    clean, adv = logits.argmax(dim=1).tolist()
    fooled = transfer_fooled(clean, adv, label, target)
    return None if fooled is None else int(fooled)


def run_bench(
    model: ImageClassifier,
    images: Sequence[BenchImage],
    attacks: Sequence[str],
    *,
    out: str | Path,
    configs: dict[str, Any] | None = None,
    targeted: bool = False,
    transfer: Sequence[ImageClassifier] = (),
    batch_size: int = 1,
    seed: int = 0,
    on_step: Callable[[str, str], None] | None = None,
) -> BenchRun:
    """Attack every image with every attack; save each adversarial PNG and one row per pair.

    ``batch_size`` 1 (default) runs each attack per image, so ``seconds`` is the
    honest time for that image; larger batches report the batch time divided evenly.
    ``on_step(image, attack)`` is called after each attack of each image (a progress bar).
    """
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; choose from: {', '.join(ATTACKS)}.")
    if not 1 <= batch_size <= 1024:
        raise ValueError(f"batch_size must be in 1..1024; got {batch_size}.")
    if not images:
        raise ValueError("no usable images to benchmark.")
    out = Path(out)
    configs = dict(configs or {})
    for name in attacks:
        configs.setdefault(name, ATTACKS[name].config_type())
    meta = machine_info(model)
    started = time.perf_counter()

    # Labels: the folder's when there is one, else the model's clean prediction.
    with torch.no_grad():
        clean_probs = torch.cat([
            model(torch.stack([im.image for im in images[i : i + 16]]).to(model.device)).softmax(dim=1).cpu()
            for i in range(0, len(images), 16)
        ])
    plan = []  # (index, image, label, source, target) for images to attack
    rows: list[dict[str, Any]] = []
    for index, item in enumerate(images):
        predicted = int(clean_probs[index].argmax())
        label = item.folder_label if item.folder_label is not None else predicted
        source = "folder" if item.folder_label is not None else "clean prediction"
        if label != predicted:
            for name in attacks:
                rows.append(_row(item.name, name, model, "misclassified (not attacked)", source, label,
                                 float(clean_probs[index, label]), None, None, None))
            continue
        target = choose_target(label, model.num_classes, seed, index) if targeted else None
        plan.append((index, item, label, source, target))

    transfer_names = [other.name for other in transfer]
    used_params: dict[str, dict[str, Any]] = {}
    for name in attacks:
        spec = ATTACKS[name]
        for start in range(0, len(plan), batch_size):
            chunk = plan[start : start + batch_size]
            batch = torch.stack([item.image for _, item, *_ in chunk])
            labels = torch.tensor([label for _, _, label, _, _ in chunk])
            targets = torch.tensor([target for *_, target in chunk]) if targeted else None
            result = spec.run(model, batch, labels, targets=targets, config=configs[name])
            params = dict(result.params)
            float_flags = params.pop("float_success", None)  # SparseFool: its float iterate fooled (authors' check)
            used_params.setdefault(name, params)  # what the attack actually ran with
            for position, (index, item, label, source, target) in enumerate(chunk):
                png = out / "adversarials" / name / (Path(item.name).with_suffix("").as_posix().replace("/", "__") + ".png")
                saved = save_verified_png(result.adversarials[position], png)
                row = _row(item.name, name, model, "attacked", source, label, float(clean_probs[index, label]),
                           target, result, position, seconds=result.seconds / len(chunk), batch=len(chunk))
                row["adversarial_png"] = str(png.relative_to(out))
                if float_flags is not None:
                    row["float_success"] = int(float_flags[position])
                for other in transfer:
                    ok = bool(result.success[position])
                    value = _transfer(other, item.image, saved, label, target) if ok else None
                    row[f"transfer_{other.name}"] = "" if value is None else value
                rows.append(row)
                if on_step is not None:
                    on_step(item.name, name)
    # Rows in image order, attacks in the order asked for.
    order = {item.name: i for i, item in enumerate(images)}
    rank = {name: i for i, name in enumerate(attacks)}
    rows.sort(key=lambda r: (order[r["image"]], rank[r["attack"]]))
    for row in rows:
        for other_name in transfer_names:
            row.setdefault(f"transfer_{other_name}", "")
    meta.update({
        "model": model.name,
        "images": len(images),
        "attacked": len(plan),
        "attacks": list(attacks),
        "targeted": targeted,
        "batch_size": batch_size,
        "seed": seed,
        "transfer": transfer_names,
        "configs": {name: used_params.get(name, dataclasses.asdict(configs[name])) for name in attacks},
        "load_average_end": _load_average(),
        "total_seconds": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    })
    return BenchRun(rows, meta, transfer_names)


def _row(
    image: str, attack: str, model: ImageClassifier, status: str, source: str, label: int, confidence: float,
    target: int | None, result: AttackResult | None, position: int | None = None, seconds: float | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    names = model.class_names
    row: dict[str, Any] = {column: "" for column in CSV_COLUMNS}
    row.update({
        "image": image, "attack": attack, "kind": ATTACKS[attack].kind, "model": model.name, "status": status,
        "label_source": source, "true_label": label, "true_name": names[label], "clean_confidence": round(confidence, 6),
        "band": confidence_band(confidence),
    })
    if target is not None:
        row.update({"target_label": target, "target_name": names[target]})
    if result is not None and position is not None:
        summary = result.summary(position, names)
        row.update({
            "success": int(summary["success"]),
            "adv_label": summary["adv_label"],
            "adv_name": summary["adv_name"],
            "adv_confidence": round(summary["adv_confidence"], 6),
            "l0_pixels": summary["l0_pixels"],
            "l0_entries": summary["l0_entries"],
            "l2": round(summary["l2"], 6),
            "linf": round(summary["linf"], 6),
            "seconds": round(seconds if seconds is not None else summary["seconds"], 4),
            "model_calls": summary["model_calls"],
            # Per image: a batch's sequential calls are shared by its images.
            "model_invocations": round(summary["model_invocations"] / batch, 2),
            "interrupted": int(summary["interrupted"]),
        })
    return row


# --- reports ----------------------------------------------------------------------------


BANDS = (("high", 0.8), ("mid", 0.4), ("low", 0.0))  # clean confidence of the true class (benchmarks/devset.py)


def confidence_band(confidence: float) -> str:
    """high (>= 0.8), mid (>= 0.4) or low: hard and easy photos are reported apart."""
    return next(name for name, low in BANDS if confidence >= low)


def write_csv(run: BenchRun, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=run.columns)
        writer.writeheader()
        writer.writerows(run.rows)
    return path


def _stats(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return f"{statistics.mean(values):.1f}", f"{statistics.median(values):g}", f"{max(values):g}"


def summary_table(run: BenchRun) -> tuple[list[str], list[list[str]]]:
    """One row per attack: the numbers the issue asks for, over the attacked images."""
    header = [
        "attack", "kind", "success", "success of the float iterate", "pixels mean", "pixels median", "pixels max", "entries mean", "entries median",
        "entries max", "median s / image", "median s / successful image", "median model calls",
        "median invocations / image",
    ] + [f"transfer to {name}" for name in run.transfer_models]
    table = []
    for attack in run.meta["attacks"]:
        rows = [r for r in run.rows if r["attack"] == attack and r["status"] == "attacked"]
        won = [r for r in rows if r["success"] == 1]
        pixels = _stats([r["l0_pixels"] for r in won])
        entries = _stats([r["l0_entries"] for r in won])
        calls = statistics.median([r["model_calls"] for r in rows]) if rows else float("nan")
        success = f"{len(won)}/{len(rows)} ({100 * len(won) / max(1, len(rows)):.0f}%)"
        floats = [r.get("float_success", "") for r in rows if r.get("float_success", "") != ""]
        line = [attack, ATTACKS[attack].kind, success, f"{sum(floats)}/{len(floats)}" if floats else "-", *pixels,
                *entries, *_times(rows), f"{calls:g}", _median(rows, "model_invocations")]
        for name in run.transfer_models:
            values = [r[f"transfer_{name}"] for r in won if r[f"transfer_{name}"] != ""]
            line.append(f"{sum(values)}/{len(values)} ({100 * sum(values) / len(values):.0f}%)" if values else "-")
        table.append(line)
    return header, table


def _median(rows: list[dict[str, Any]], column: str, digits: str = "g") -> str:
    return f"{statistics.median(r[column] for r in rows):{digits}}" if rows else "-"


def _times(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Median seconds over all attacked images and over the successful ones only, so an
    attack that gives up early does not look fast."""
    return _median(rows, "seconds", ".2f"), _median([r for r in rows if r["success"] == 1], "seconds", ".2f")


def band_table(run: BenchRun) -> tuple[list[str], list[list[str]]]:
    """The main numbers per attack and clean-confidence band (high / mid / low)."""
    header = [
        "attack", "band", "success", "pixels median", "pixels max", "median s / image", "median s / successful image",
        "median invocations / image",
    ]
    table = []
    for attack in run.meta["attacks"]:
        for band, _ in BANDS:
            rows = [r for r in run.rows if r["attack"] == attack and r["status"] == "attacked" and r["band"] == band]
            if not rows:
                continue
            won = [r for r in rows if r["success"] == 1]
            _, median, largest = _stats([r["l0_pixels"] for r in won])
            table.append([attack, band, f"{len(won)}/{len(rows)}", median, largest, *_times(rows),
                          _median(rows, "model_invocations")])
    return header, table


def head_to_head(run: BenchRun, reference: str = "sparse") -> tuple[list[str], list[list[str]]]:
    """Every other attack against ``reference``, image by image: the ratios a claim needs.

    Medians of per-image ratios (the other attack's seconds / the reference's) say
    "how much faster on a typical image" without letting one slow image decide; the
    pixel comparison is restricted to images both attacks fooled, so a baseline that
    only succeeds on easy images does not look sparser than it is.
    """
    header = [
        "attack", "both fooled", f"pixels median ({reference} / attack), both fooled",
        f"{reference} fewer / equal / more pixels", f"time ratio attack / {reference}: median per image",
        "same, on images both fooled", "ratio of median times",
    ]
    by_image: dict[str, dict[str, dict[str, Any]]] = {}
    for row in run.rows:
        if row["status"] == "attacked":
            by_image.setdefault(row["attack"], {})[row["image"]] = row
    if reference not in by_image:
        return header, []
    mine = by_image[reference]
    table = []
    for attack in run.meta["attacks"]:
        if attack == reference or attack not in by_image:
            continue
        theirs = by_image[attack]
        shared = sorted(set(mine) & set(theirs))
        both = [name for name in shared if mine[name]["success"] == 1 and theirs[name]["success"] == 1]
        ratios = [theirs[n]["seconds"] / mine[n]["seconds"] for n in shared if mine[n]["seconds"] > 0]
        both_ratios = [theirs[n]["seconds"] / mine[n]["seconds"] for n in both if mine[n]["seconds"] > 0]
        fewer = sum(mine[n]["l0_pixels"] < theirs[n]["l0_pixels"] for n in both)
        equal = sum(mine[n]["l0_pixels"] == theirs[n]["l0_pixels"] for n in both)
        pixels = (
            f"{statistics.median(mine[n]['l0_pixels'] for n in both):g} / {statistics.median(theirs[n]['l0_pixels'] for n in both):g}"
            if both else "-"
        )
        own_median = statistics.median(mine[n]["seconds"] for n in shared) if shared else 0.0
        median_ratio = statistics.median(theirs[n]["seconds"] for n in shared) / own_median if own_median else float("nan")
        table.append([
            attack, f"{len(both)}/{len(shared)}", pixels, f"{fewer} / {equal} / {len(both) - fewer - equal}",
            f"{statistics.median(ratios):.2f}x" if ratios else "-",
            f"{statistics.median(both_ratios):.2f}x" if both_ratios else "-",
            f"{median_ratio:.2f}x",
        ])
    return header, table


def _notes(run: BenchRun, skipped: Sequence[tuple[str, str]]) -> list[str]:
    meta = run.meta
    notes = [
        f"Model `{meta['model']}`, {'targeted (a seeded random class per image)' if meta['targeted'] else 'untargeted'}, "
        f"{meta['attacked']} of {meta['images']} images attacked, batch size {meta['batch_size']}, seed {meta['seed']}.",
        "Every number is measured on the saved 8-bit PNG (written, read back, checked bit-identical).",
        "Pixels = pixels with any channel changed; entries = changed channel values. Pixel and entry statistics "
        "are over successful attacks only; seconds and model calls over all attacked images.",
        "Model calls = forward passes per image (with or without a backward pass), including the two clean/final checks.",
        "Invocations = sequential network calls (what a GPU's latency follows), per image: a batch's calls divided "
        "by its images. Seconds per successful image: the median over the images the attack fooled only. "
        "Success of the float iterate (SparseFool): the unrounded image fooled the model at some outer iteration, "
        "the authors' criterion; success counts only the saved 8-bit image.",
    ]
    sources = {r["label_source"] for r in run.rows}
    if "clean prediction" in sources:
        notes.append("Images without a folder label: the true label is the model's own clean prediction.")
    missed = sorted({r["image"] for r in run.rows if r["status"].startswith("misclassified")})
    if missed:
        notes.append(f"Misclassified by the model against their folder label, so not attacked: {', '.join(missed)}.")
    if run.transfer_models:
        notes.append(
            "Transfer: the saved adversarial PNG (same crop, no resizing) given to each other model; counted over "
            "the attack's successes on images that other model classifies as the true label when clean "
            "(targeted: that it does not already call the target)."
        )
    if skipped:
        notes.append("Skipped files: " + "; ".join(f"{name} ({reason})" for name, reason in skipped) + ".")
    return notes


def _machine_lines(meta: dict[str, Any]) -> list[str]:
    return [
        f"CPU: {meta['cpu']} ({meta['cpu_count']} logical cores), torch threads {meta['torch_threads']}",
        f"Device: {meta['device']}; {meta['platform']}; Python {meta['python']}; torch {meta['torch']}",
        f"Load average (1/5/15 min) at start: {meta['load_average_start']}; at end: {meta['load_average_end']}",
        f"Date: {meta['date']}; total wall time {meta['total_seconds'] / 60:.1f} min",
    ]


def write_summary(run: BenchRun, out: str | Path, *, skipped: Sequence[tuple[str, str]] = (), command: str | None = None) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.html`` side by side in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, table = summary_table(run)
    notes = _notes(run, skipped)
    machine = _machine_lines(run.meta)
    configs = run.meta["configs"]
    md = ["# sparseviz benchmark", ""]
    if command:
        md += ["```", command, "```", ""]
    md += [markdown_table(header, table), ""]
    bands_header, bands = band_table(run)
    md += ["## By clean-confidence band (high >= 0.8 > mid >= 0.4 > low)", "", markdown_table(bands_header, bands), ""]
    md += [f"- {note}" for note in notes] + [""]
    versus_header, versus = head_to_head(run)
    if versus:
        md += ["## Head to head with `sparse`", "", markdown_table(versus_header, versus), ""]
        md += ["- Time ratios above 1 mean the other attack took longer than `sparse` on the same image.", ""]
    md += ["## Machine", ""] + [f"- {line}" for line in machine] + [""]
    md += ["## Attack settings", ""] + [f"- `{name}`: `{configs[name]}`" for name in configs] + [""]
    md_path = out / "summary.md"
    md_path.write_text("\n".join(md))

    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sparseviz benchmark</title>",
        "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>",
        "<h1>sparseviz benchmark</h1>",
    ]
    if command:
        body.append(f"<pre>{html.escape(command)}</pre>")
    body.append(html_table(header, table))
    body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    body.append("<h2>By clean-confidence band</h2>" + html_table(bands_header, bands))
    if versus:
        body.append("<h2>Head to head with <code>sparse</code></h2>" + html_table(versus_header, versus))
    body.append("<h2>Machine</h2><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in machine) + "</ul>")
    body.append("<h2>Attack settings</h2><ul>" + "".join(
        f"<li><code>{html.escape(name)}</code>: <code>{html.escape(str(configs[name]))}</code></li>" for name in configs
    ) + "</ul></body></html>")
    html_path = out / "summary.html"
    html_path.write_text("\n".join(body))
    return md_path, html_path
