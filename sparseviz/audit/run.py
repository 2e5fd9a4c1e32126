"""Folder audit: the sparse attack over every image of a folder, and a report a person wants to read.

The report answers: how many pixels does it take on these images (the
distribution), which images and which classes are the most fragile, which
classes the flips land in, what the easiest flips look like (thumbnails), and
the per-image table. Unreadable files are skipped and listed, never fatal.
Labels come from class subfolders when the folder has them, else from the
model's own clean prediction; images the model gets wrong are reported, not attacked.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import multiprocessing
import os
import statistics
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..attacks import ATTACKS
from ..attacks.base import AttackResult, to_uint8
from ..images.folders import BenchImage, LoadedFolder
from .bench import machine_info
from ..explain.interpret import explain_pixels
from ..models import ImageClassifier
from ..models.threads import ATTACK_THREADS, attack_threads
from ..views.report import html_table, markdown_table, png_bytes
from . import survival as survival_check
from .summary import SURVIVAL_HEADER, summary_table, survival_table

# Histogram bins for minimal pixel counts: (label, lowest, highest).
PIXEL_BINS = [("1", 1, 1), ("2-5", 2, 5), ("6-10", 6, 10), ("11-20", 11, 20), ("21-50", 21, 50),
              ("51-100", 51, 100), ("101-200", 101, 200), ("201-500", 201, 500), (">500", 501, 10**9)]
AUDIT_COLUMNS = [
    "image", "status", "label_source", "true_label", "true_name", "clean_confidence", "success", "pixels",
    "entries", "adv_label", "adv_name", "adv_confidence", "seconds", "model_calls", "adversarial_png",
    "obscuring", "leading", "both", "neither",
] + survival_check.columns()


@dataclass
class AuditReport:
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    meta: dict[str, Any]

    @property
    def flipped(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.rows if r["success"] == 1), key=lambda r: (r["pixels"], r["image"]))


@dataclass(frozen=True)
class AuditRow:
    """One image's CSV row and the files it owns (path under the output folder -> PNG bytes).

    Files travel as bytes so that whoever writes the output folder (this process, or the
    driver of a distributed run) writes them; workers never need the output folder.
    """

    row: dict[str, Any]
    files: dict[str, bytes]


def _thumbnail(original: torch.Tensor, adversarial: torch.Tensor, min_size: int = 160) -> torch.Tensor:
    """Original | adversarial | changed pixels (dilated in red so a single pixel shows).

    Panels keep the model's resolution (never shrunk, so no changed pixel is lost);
    tiny inputs are enlarged to ``min_size`` wide with nearest-neighbour.
    """
    changed = (to_uint8(original) != to_uint8(adversarial)).any(dim=0, keepdim=True).float()
    grown = F.max_pool2d(changed[None], kernel_size=5, stride=1, padding=2)[0]
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand_as(original)
    marked = torch.where(grown.bool().expand(3, -1, -1), red, original * 0.5)  # dimmed photo, red marks
    panels = [original, adversarial, marked]
    height, width = original.shape[1:]
    size = max(min_size, width)
    scale = size / width
    resized = [F.interpolate(p[None], size=(max(1, round(height * scale)), size), mode="nearest")[0] for p in panels]
    gap = torch.ones(3, resized[0].shape[1], 4)
    return torch.cat([resized[0], gap, resized[1], gap, resized[2]], dim=2)


def image_stem(name: str) -> str:
    """File stem for an image's adversarial and thumbnail: class folders flattened with ``__``."""
    return name.rsplit(".", 1)[0].replace("/", "__")


def write_files(out: str | Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = Path(out) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def pixel_kind_counts(model: ImageClassifier, result: AttackResult, index: int) -> dict[str, int]:
    """The obscuring/leading labels the audit counts for one flip: the only place the audit picks them."""
    # Obscuring/leading labels from contributions that add up (no maps: cheap enough for a folder).
    return dict(explain_pixels(model, result, index).counts)


@torch.no_grad()
def _probabilities(model: ImageClassifier, image: torch.Tensor) -> torch.Tensor:
    """Softmax of one image on its own, so a row never depends on its batch mates' float rounding."""
    return model(image[None].to(model.device)).softmax(dim=1)[0].cpu()


def audit_batch(model: ImageClassifier, items: Sequence[BenchImage], *, attack: str = "sparse",
                config: Any = None) -> list[AuditRow]:
    """Rows for a batch of images, in order: one attack call for every image the model gets right.

    Both engines build every row here (the local one with batches of one), and every number
    in a row is measured per image, so rows do not depend on how images were batched.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}.")
    spec = ATTACKS[attack]
    config = config if config is not None else spec.config_type()
    names = model.class_names
    rows: list[dict[str, Any]] = []
    files: list[dict[str, bytes]] = []
    attacked: list[int] = []
    for position, item in enumerate(items):
        probs = _probabilities(model, item.image)
        predicted = int(probs.argmax())
        label = item.folder_label if item.folder_label is not None else predicted
        row: dict[str, Any] = {column: "" for column in AUDIT_COLUMNS}
        row.update({
            "image": item.name, "label_source": "folder" if item.folder_label is not None else "clean prediction",
            "true_label": label, "true_name": names[label], "clean_confidence": round(float(probs[label]), 6),
        })
        if predicted != label:
            row["status"] = f"misclassified as {names[predicted]} (not attacked)"
        else:
            attacked.append(position)
        rows.append(row)
        files.append({})
    if attacked:
        images = torch.stack([items[i].image for i in attacked])
        labels = torch.tensor([int(rows[i]["true_label"]) for i in attacked])
        result = spec.run(model, images, labels, config=config)
        for index, position in enumerate(attacked):
            rows[position], files[position] = _attacked_row(model, result, index, rows[position], len(attacked))
    return [AuditRow(row, owned) for row, owned in zip(rows, files)]


def _attacked_row(model: ImageClassifier, result: AttackResult, index: int, row: dict[str, Any],
                  batch: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    summary = result.summary(index, model.class_names)
    success = bool(summary["success"])
    adversarial = result.adversarials[index]
    stem = image_stem(row["image"])
    png = f"adversarials/{stem}.png"
    files = {png: png_bytes(adversarial)}
    probs = _probabilities(model, adversarial)
    adv_label = int(probs.argmax())
    row = dict(row)
    row.update({
        "status": "attacked", "success": int(success),
        "pixels": summary["l0_pixels"] if success else "",
        "entries": summary["l0_entries"] if success else "",
        "adv_label": adv_label if success else "",
        "adv_name": model.class_names[adv_label] if success else "",
        "adv_confidence": round(float(probs[adv_label]), 6) if success else "",
        "seconds": round(result.seconds / batch, 3), "model_calls": summary["model_calls"],
        "adversarial_png": png,
    })
    if success:
        files[f"thumbnails/{stem}.png"] = png_bytes(_thumbnail(result.originals[index], adversarial), check=False)
        if summary["l0_pixels"]:
            row.update(pixel_kind_counts(model, result, index))
        outcomes = survival_check.survival(model, result.originals[index], adversarial, int(row["true_label"]))
        row.update(survival_check.row_values(outcomes, model.class_names))
    return row, files


def build_report(rows: Sequence[dict[str, Any]], skipped: Sequence[tuple[str, str]], meta: dict[str, Any], *,
                 order: Sequence[str] | None = None) -> AuditReport:
    """The report from all rows; ``order`` (image names as listed) puts rows that arrived in any order back in line."""
    rows, skipped = list(rows), list(skipped)
    if order is not None:
        position = {name: index for index, name in enumerate(order)}
        rows.sort(key=lambda r: position.get(r["image"], len(position)))
        skipped.sort(key=lambda s: position.get(s[0], len(position)))
    return AuditReport(rows, skipped, dict(meta))


def default_workers() -> int:
    """Worker processes for a local audit: one per core (each attack runs on one thread)."""
    return max(1, os.cpu_count() or 1)


class AuditWorkerError(ValueError):
    """A local worker process died (killed, out of memory): one line for the user, not a traceback."""


_WORKER: dict[str, Any] = {}  # in a worker process: the model and settings, loaded once


def _worker_start(model: ImageClassifier, attack: str, config: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(model=model, attack=attack, config=config)


def _worker_audit(item: BenchImage) -> list[AuditRow]:
    return audit_batch(_WORKER["model"], [item], attack=_WORKER["attack"], config=_WORKER["config"])


def run_audit(
    model: ImageClassifier,
    folder: LoadedFolder,
    *,
    out: str | Path,
    config: Any = None,
    attack: str = "sparse",
    on_step: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
    threads: int = ATTACK_THREADS,
) -> AuditReport:
    """Attack every image (one at a time) with ``attack``; save adversarials and thumbnails under ``out``.

    Each attack runs with ``threads`` torch threads (default 1, as on Ray, so both engines give
    the same rows); ``workers`` > 1 attacks that many images at once in worker processes (spawned,
    each holding one copy of the model), which is how a local audit uses the cores. A model on a
    GPU always runs here, in this process.
    ``should_stop`` is asked before each image: when it says yes the audit ends there and the
    report covers the images done so far (``meta["stopped"]`` and ``meta["not_run"]`` say so).
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}.")
    if not 1 <= workers <= 1024:
        raise ValueError(f"workers must be in 1..1024; got {workers}.")
    config = config if config is not None else ATTACKS[attack].config_type()
    workers = 1 if model.device.type != "cpu" else min(workers, max(1, len(folder.images)))
    with attack_threads(threads):
        meta = machine_info(model)
        started = time.perf_counter()
        if workers == 1:
            rows, done = _serial(model, folder, out, attack, config, on_step, should_stop)
        else:
            rows, done = _parallel(model, folder, out, attack, config, on_step, should_stop, workers, threads)
    meta.update(audit_meta(model.name, attack, config, folder.layout))
    meta.update({"total_seconds": time.perf_counter() - started, "workers": workers,
                 "stopped": done < len(folder.images), "not_run": len(folder.images) - done})
    return build_report(rows, folder.skipped, meta, order=[item.name for item in folder.images])


def _serial(model: ImageClassifier, folder: LoadedFolder, out: str | Path, attack: str, config: Any,
            on_step: Callable[[str], None] | None, should_stop: Callable[[], bool] | None
            ) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    done = 0
    for item in folder.images:
        if should_stop is not None and should_stop():
            break
        done += 1
        for finished in audit_batch(model, [item], attack=attack, config=config):
            write_files(out, finished.files)
            rows.append(finished.row)
        if on_step is not None:
            on_step(item.name)
    return rows, done


def _parallel(model: ImageClassifier, folder: LoadedFolder, out: str | Path, attack: str, config: Any,
              on_step: Callable[[str], None] | None, should_stop: Callable[[], bool] | None, workers: int,
              threads: int) -> tuple[list[dict[str, Any]], int]:
    """Images in worker processes, at most ``workers`` in flight so that a stop is honoured between images."""
    rows: list[dict[str, Any]] = []
    done = 0
    pending = list(folder.images)
    running: dict[Future[list[AuditRow]], str] = {}
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                             initargs=(model, attack, config, threads)) as pool:
        while pending or running:
            while pending and len(running) < workers and not (should_stop is not None and should_stop()):
                item = pending.pop(0)
                running[pool.submit(_worker_audit, item)] = item.name
                done += 1
            if not running:
                break
            finished = next(iter(_first_done(running)))
            name = running.pop(finished)
            try:
                audited_rows = finished.result()
            except BrokenProcessPool:
                raise AuditWorkerError(f"a worker process died while attacking {name} (out of memory?); "
                                       f"{len(rows)} images were done. Try fewer --workers.") from None
            for audited in audited_rows:
                write_files(out, audited.files)
                rows.append(audited.row)
            if on_step is not None:
                on_step(name)
            if should_stop is not None and should_stop():
                pending.clear()
    return rows, done


def _first_done(running: dict[Future[list[AuditRow]], str]) -> set[Future[list[AuditRow]]]:
    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
    return finished


def audit_meta(model_name: str, attack: str, config: Any, layout: str) -> dict[str, Any]:
    """What the report says about the run besides the machine (shared by both engines)."""
    return {"model": model_name, "attack": attack, "config": dataclasses.asdict(config), "layout": layout,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def pixel_histogram(report: AuditReport) -> list[tuple[str, int]]:
    counts = [(label, sum(low <= r["pixels"] <= high for r in report.flipped)) for label, low, high in PIXEL_BINS]
    failed = sum(1 for r in report.rows if r["status"] == "attacked" and r["success"] == 0)
    return counts + ([("not fooled", failed)] if failed else [])


def fragile_classes(report: AuditReport) -> list[tuple[str, int, int, float]]:
    """(class, images attacked, images flipped, median pixels of the flips), most fragile first."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in report.rows:
        if row["status"] == "attacked":
            by_class.setdefault(row["true_name"], []).append(row)
    table = []
    for name, rows in by_class.items():
        flips = [r["pixels"] for r in rows if r["success"] == 1]
        table.append((name, len(rows), len(flips), statistics.median(flips) if flips else float("inf")))
    return sorted(table, key=lambda t: (t[3], -t[2], t[0]))


def adversarial_classes(report: AuditReport) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Most frequent classes the flips land in, and most frequent (from -> to) pairs."""
    landed = Counter(r["adv_name"] for r in report.flipped)
    pairs = Counter(f"{r['true_name']} -> {r['adv_name']}" for r in report.flipped)
    return landed.most_common(10), pairs.most_common(10)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return markdown_table(header, rows).splitlines()


def write_audit(report: AuditReport, out: str | Path, *, easiest: int = 8) -> tuple[Path, Path, Path]:
    """``audit.csv``, ``report.md`` and ``report.html`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "audit.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=AUDIT_COLUMNS)
        writer.writeheader()
        writer.writerows(report.rows)

    attacked = [r for r in report.rows if r["status"] == "attacked"]
    flipped = report.flipped
    missed = [r for r in report.rows if r["status"].startswith("misclassified")]
    pixels = [r["pixels"] for r in flipped]
    meta = report.meta
    overview = [
        f"{len(report.rows) + len(report.skipped)} files: {len(attacked)} attacked, {len(missed)} already misclassified "
        f"(not attacked), {len(report.skipped)} unreadable or unusable (skipped).",
        f"Fooled: {len(flipped)}/{len(attacked)}" + (f"; minimal pixels median {statistics.median(pixels):g}, "
                                                     f"min {min(pixels)}, max {max(pixels)}." if pixels else "."),
        f"Model `{meta['model']}`, attack `{meta['attack']}`, untargeted; labels from "
        f"{'class folders' if meta['layout'] == 'class folders' else 'the model’s own clean prediction'}.",
        f"Every number is measured on the saved 8-bit PNG. Device {meta['device']}, {meta['cpu']}, "
        f"torch threads {meta['torch_threads']}; {meta['total_seconds'] / 60:.1f} min in all ({meta['date']}).",
    ]
    if meta.get("stopped"):
        overview.insert(1, f"Stopped by the user: {meta['not_run']} image(s) not attacked, not in this report.")
    histogram = pixel_histogram(report)
    most = max([count for _, count in histogram] + [1])
    classes = fragile_classes(report)
    landed, pairs = adversarial_classes(report)
    fragile = flipped[:10]
    easy = flipped[:easiest]
    per_image_header = ["image", "true class", "clean conf.", "status", "pixels", "adversarial class", "adv. conf.", "seconds"]
    per_image = [
        [r["image"], r["true_name"], f"{r['clean_confidence']:.2f}", r["status"] if r["status"] != "attacked" else
         ("fooled" if r["success"] == 1 else "not fooled"), r["pixels"], r["adv_name"],
         f"{r['adv_confidence']:.2f}" if r["adv_confidence"] != "" else "", r["seconds"]]
        for r in sorted(report.rows, key=lambda r: (r["success"] != 1, r["pixels"] if r["pixels"] != "" else 0, r["image"]))
    ]

    summary = summary_table(report.rows)
    survived = survival_table(report.rows)
    summary_note = ("95% intervals: percentile bootstrap over images (2000 resamples, seeded). \"Flipped with at "
                    "most k pixels\" is one minus the robust accuracy at budget k.")
    md = ["# sparseviz audit", ""] + [f"- {line}" for line in overview] + [""]
    md += ["## Summary", "", summary_note, ""] + _md_table(["measure", "value [95% interval]"], summary) + [""]
    md += ["## Does it survive everyday processing?", "", survival_check.LIMIT_TEXT, ""]
    md += _md_table(SURVIVAL_HEADER, survived) + [""]
    md += ["## How many pixels it takes", ""]
    md += [f"`{label:>10}` {'#' * round(30 * count / most)} {count}" for label, count in histogram] + [""]
    md += ["## Most fragile images", ""] + _md_table(
        ["image", "true class", "pixels", "becomes"], [[r["image"], r["true_name"], r["pixels"], r["adv_name"]] for r in fragile]) + [""]
    md += ["## Most fragile classes", ""] + _md_table(
        ["class", "images", "fooled", "median pixels"],
        [[c, n, f, "-" if f == 0 else f"{m:g}"] for c, n, f, m in classes[:15]]) + [""]
    md += ["## Where the flips land", ""] + _md_table(["adversarial class", "images"], landed) + [""]
    md += _md_table(["true -> adversarial", "images"], pairs) + [""]
    md += ["## The easiest flips", "", "Original | adversarial | changed pixels (enlarged, red).", ""]
    for r in easy:
        stem = image_stem(r["image"])
        md += [f"**{r['image']}**: {r['true_name']} -> {r['adv_name']} with {r['pixels']} pixels", "",
               f"![{r['image']}](thumbnails/{stem}.png)", ""]
    md += ["## Every image", ""] + _md_table(per_image_header, per_image) + [""]
    if report.skipped:
        md += ["## Skipped files", ""] + [f"- {name}: {reason}" for name, reason in report.skipped] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    bars = "".join(
        f"<tr><td>{html.escape(label)}</td><td><div style='background:#c33;height:1em;width:{12 * count / most:.2f}em'>"
        f"</div></td><td>{count}</td></tr>" for label, count in histogram
    )
    thumbs = "".join(
        f"<figure><img src='thumbnails/{html.escape(image_stem(r['image']))}.png' "
        f"alt='{html.escape(r['image'])}'><figcaption>{html.escape(r['image'])}: {html.escape(r['true_name'])} &rarr; "
        f"{html.escape(r['adv_name'])}, {r['pixels']} px</figcaption></figure>" for r in easy
    )
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sparseviz audit</title><style>"
        "body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .5em}th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
        "img{image-rendering:pixelated}</style></head><body><h1>sparseviz audit</h1>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in overview) + "</ul>",
        f"<h2>Summary</h2><p>{html.escape(summary_note)}</p>"
        + html_table(["measure", "value [95% interval]"], summary),
        f"<h2>Does it survive everyday processing?</h2><p>{html.escape(survival_check.LIMIT_TEXT)}</p>"
        + html_table(SURVIVAL_HEADER, survived),
        f"<h2>How many pixels it takes</h2><table>{bars}</table>",
        "<h2>Most fragile images</h2>" + html_table(
            ["image", "true class", "pixels", "becomes"], [[r["image"], r["true_name"], r["pixels"], r["adv_name"]] for r in fragile]),
        "<h2>Most fragile classes</h2>" + html_table(
            ["class", "images", "fooled", "median pixels"], [[c, n, f, "-" if f == 0 else f"{m:g}"] for c, n, f, m in classes[:15]]),
        "<h2>Where the flips land</h2>" + html_table(["adversarial class", "images"], landed)
        + html_table(["true -> adversarial", "images"], pairs),
        f"<h2>The easiest flips</h2><p>Original | adversarial | changed pixels (enlarged, red).</p>{thumbs}",
        "<h2>Every image</h2>" + html_table(per_image_header, per_image),
    ]
    if report.skipped:
        page.append("<h2>Skipped files</h2><ul>" + "".join(
            f"<li>{html.escape(name)}: {html.escape(reason)}</li>" for name, reason in report.skipped) + "</ul>")
    page.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(page))
    return csv_path, md_path, html_path


__all__ = ["AUDIT_COLUMNS", "AuditReport", "AuditRow", "BenchImage", "audit_batch", "build_report", "default_workers", "run_audit", "write_audit", "pixel_histogram", "fragile_classes", "adversarial_classes"]
