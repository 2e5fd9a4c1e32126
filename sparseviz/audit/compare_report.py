"""The files of a multi-model audit: ``comparison.csv``, ``report.md`` and ``report.html`` at the top,
each model's own audit (``audit.csv``, its report, adversarials) in a subfolder named after it."""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any, Sequence

from ..images.processing import EVERYDAY
from ..views.report import html_table, markdown_table
from .compare import (
    PAIR_HEADER, Comparison, pair_table, paired_points, transfer_header, transfer_table,
)
from .run import AuditReport
from .summary import summary_estimates, survival_estimates

MODELS_HEADER = ["model", "fooled / attacked", "success rate [95% CI]", "median pixels [95% CI]", "report"]


def models_table(reports: dict[str, AuditReport]) -> list[list[Any]]:
    """One row per model: its success rate and median pixels with their intervals."""
    table = []
    for name, report in reports.items():
        attacked = sum(1 for r in report.rows if r["status"] == "attacked")
        estimates = {label: estimate for label, estimate, _ in summary_estimates(report.rows, budgets=())}
        rate, median = list(estimates.values())[:2]
        table.append([name, f"{len(report.flipped)}/{attacked}", rate.percent(), median.text("{:g}"),
                      f"{name}/report.html"])
    return table


def survival_by_model(reports: dict[str, AuditReport]) -> tuple[list[str], list[list[Any]]]:
    """Share of each model's flips that still fool it after each everyday transform."""
    header = ["processing"] + [f"{name}: still fooled [95% CI]" for name in reports]
    columns = {name: survival_estimates(report.rows) for name, report in reports.items()}
    rows = []
    for index, (title, _) in enumerate(EVERYDAY.values()):
        rows.append([title] + [f"{columns[name][index][2].percent()} of {columns[name][index][1]}" for name in reports])
    return header, rows


def scatter_svg(points: Sequence[tuple[str, float, float]], a: str, b: str, size: int = 360) -> str:
    """A paired scatter plot (log axes, the diagonal = equally fragile) as inline SVG: no script in the report."""
    import math

    pad = 48
    if not points:
        return f"<p>No image was fooled on both {html.escape(a)} and {html.escape(b)}.</p>"
    top = max(max(x, y) for _, x, y in points)
    span = math.log10(max(top, 1) * 2)

    def place(value: float) -> float:
        return (size - 2 * pad) * math.log10(max(value, 1)) / span

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' role='img' "
             f"aria-label='pixels on {html.escape(a)} against {html.escape(b)}'>",
             f"<rect x='{pad}' y='{pad}' width='{size - 2 * pad}' height='{size - 2 * pad}' fill='none' stroke='#ccc'/>",
             f"<line x1='{pad}' y1='{size - pad}' x2='{size - pad}' y2='{pad}' stroke='#aaa' stroke-dasharray='4'/>"]
    for tick in (1, 10, 100, 1000, 10000):
        if tick > 2 * top and tick > 1:
            break
        offset = place(tick)
        parts += [f"<text x='{pad + offset}' y='{size - pad + 16}' font-size='11' text-anchor='middle'>{tick}</text>",
                  f"<text x='{pad - 6}' y='{size - pad - offset + 4}' font-size='11' text-anchor='end'>{tick}</text>"]
    for image, x, y in points:
        parts.append(f"<circle cx='{pad + place(x):.1f}' cy='{size - pad - place(y):.1f}' r='5' fill='#e45756' "
                     f"fill-opacity='0.7'><title>{html.escape(image)}: {x:g} vs {y:g} px</title></circle>")
    parts += [f"<text x='{size / 2}' y='{size - 8}' font-size='13' text-anchor='middle'>pixels on "
              f"{html.escape(a)}</text>",
              f"<text x='14' y='{size / 2}' font-size='13' text-anchor='middle' transform='rotate(-90 14 {size / 2})'>"
              f"pixels on {html.escape(b)}</text>", "</svg>"]
    return "".join(parts)


NOTE = ("Paired over the images both models attacked (labels: each model's own clean prediction unless the folder "
        "has class folders). Median difference over images both fooled; \"needs fewer\" counts a model not fooled "
        "as needing more. 95% intervals: percentile bootstrap over images (2000 resamples, seeded). Transfer: "
        "model A's saved adversarial PNG shown to model B at A's input size, counted only where B gets A's clean "
        "image right.")


def write_comparison(comparison: Comparison, reports: dict[str, AuditReport], out: str | Path,
                     seconds: float | None = None) -> tuple[Path, Path, Path]:
    """``comparison.csv``, ``report.md`` and ``report.html`` in ``out`` (each model's audit is in ``out/<model>/``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "comparison.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=comparison.columns)
        writer.writeheader()
        writer.writerows(comparison.rows)
    models = models_table(reports)
    pairs = pair_table(comparison)
    matrix = transfer_table(comparison)
    survival_header, survival = survival_by_model(reports)
    timing = [] if seconds is None else [f"{seconds / 60:.1f} min in all."]
    md = ["# sparseviz audit: models compared", "", NOTE, *timing, "",
          "## Each model", "", markdown_table(MODELS_HEADER, models), "",
          "## Which model is more fragile?", "", markdown_table(PAIR_HEADER, pairs), "",
          "## Cross-transfer", "", markdown_table(transfer_header(comparison), matrix), "",
          "## Does it survive everyday processing?", "", markdown_table(survival_header, survival), "",
          "## Every image", "", markdown_table(comparison.columns, [list(r.values()) for r in comparison.rows]), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    scatters = "".join(
        f"<figure>{scatter_svg(paired_points(comparison, p.a, p.b), p.a, p.b)}<figcaption>pixels to flip each image "
        f"on {html.escape(p.a)} (x) and {html.escape(p.b)} (y); below the diagonal: {html.escape(p.b)} is more "
        f"fragile</figcaption></figure>" for p in comparison.pairs)
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sparseviz audit: models compared</title><style>"
        "body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .5em}th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
        "</style></head><body><h1>sparseviz audit: models compared</h1>",
        f"<p>{html.escape(NOTE)} {' '.join(timing)}</p>",
        "<h2>Each model</h2>" + html_table(MODELS_HEADER, models),
        "<h2>Which model is more fragile?</h2>" + html_table(PAIR_HEADER, pairs) + scatters,
        "<h2>Cross-transfer</h2>" + html_table(transfer_header(comparison), matrix),
        "<h2>Does it survive everyday processing?</h2>" + html_table(survival_header, survival),
        "<h2>Every image</h2>" + html_table(comparison.columns, [list(r.values()) for r in comparison.rows]),
        "</body></html>",
    ]
    html_path = out / "report.html"
    html_path.write_text("\n".join(page))
    return csv_path, md_path, html_path


__all__ = ["MODELS_HEADER", "models_table", "scatter_svg", "survival_by_model", "write_comparison"]
