"""Plotly figures and tables for an audit report: pure functions of ``AuditReport``.

The same numbers as the report ``sparseviz audit`` writes (its histogram bins, its rows),
drawn for the app's Audit page.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..audit.compare import Comparison, paired_points
from ..audit.intervals import flipped_within
from ..audit.run import AuditReport, pixel_histogram
from ..audit.summary import ECDF_LABEL, attacked_pixels
from .colours import KIND_COLOURS

KINDS = ("obscuring", "leading", "both", "neither")
NOT_FOOLED = "not fooled"


def pixels_figure(report: AuditReport) -> go.Figure:
    """Histogram (the report's bins) and ECDF of the fewest pixels that flipped each image, with its 95% band."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("images per pixel count", ECDF_LABEL.replace(" (", "<br>(")))
    histogram = pixel_histogram(report)
    figure.add_trace(go.Bar(x=[label for label, _ in histogram], y=[count for _, count in histogram],
                            marker_color=["#999999" if label == NOT_FOOLED else "#e45756" for label, _ in histogram],
                            text=[count for _, count in histogram], textposition="outside", name="images"), 1, 1)
    attacked = sum(1 for r in report.rows if r["status"] == "attacked")
    pixels = sorted(r["pixels"] for r in report.flipped)
    if pixels and attacked:
        xs = [0] + pixels
        ys = [0.0] + [(i + 1) / attacked for i in range(len(pixels))]
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line_shape="hv", line=dict(color="#4c78a8", width=3),
                                    name="share flipped"), 1, 2)
        band = flipped_within(attacked_pixels(report.rows), xs)
        figure.add_trace(go.Scatter(x=xs, y=[e.high for e in band], mode="lines", line_shape="hv", line=dict(width=0),
                                    name="95% band (high)", hoverinfo="skip"), 1, 2)
        figure.add_trace(go.Scatter(x=xs, y=[e.low for e in band], mode="lines", line_shape="hv", line=dict(width=0),
                                    fill="tonexty", fillcolor="rgba(76,120,168,0.2)", name="95% band",
                                    hoverinfo="skip"), 1, 2)
        ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if t <= 2 * pixels[-1]]
        figure.update_xaxes(type="log" if pixels[-1] > 50 else "linear", title_text="pixels changed",
                            tickvals=ticks if pixels[-1] > 50 else None, row=1, col=2)
    figure.update_yaxes(title_text="images", rangemode="tozero", row=1, col=1)
    if max([count for _, count in histogram] + [0]) <= 10:
        figure.update_yaxes(dtick=1, row=1, col=1)  # no "0.2 images" ticks on a small audit
    figure.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=2)
    figure.update_layout(height=380, showlegend=False, margin=dict(l=40, r=20, t=50, b=40), font=dict(size=15))
    return figure


def paired_figure(comparison: Comparison, a: str, b: str) -> go.Figure:
    """Pixels to flip each image on model ``a`` (x) and ``b`` (y), images both fooled; the diagonal = equally fragile."""
    points = paired_points(comparison, a, b)
    figure = go.Figure()
    if points:
        top = max(max(x, y) for _, x, y in points) * 1.5
        figure.add_trace(go.Scatter(x=[1, top], y=[1, top], mode="lines", line=dict(color="#aaaaaa", dash="dash"),
                                    name="equally fragile", hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=[x for _, x, _ in points], y=[y for _, _, y in points], mode="markers",
                                    marker=dict(size=12, color="#e45756", opacity=0.75), text=[i for i, _, _ in points],
                                    hovertemplate="%{text}: %{x} vs %{y} px<extra></extra>", name="images"))
    figure.update_xaxes(type="log", dtick=1, title_text=f"pixels on {a}")  # dtick 1: ticks at 1, 10, 100 only
    figure.update_yaxes(type="log", dtick=1, title_text=f"pixels on {b}")
    figure.update_layout(height=420, showlegend=False, margin=dict(l=50, r=20, t=50, b=50), font=dict(size=15),
                         title=f"below the diagonal: {b} needs fewer pixels")
    return figure


def class_flow(report: AuditReport) -> list[tuple[str, str, int]]:
    """(true class, class it became or "not fooled", images), most frequent first."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in report.rows:
        if row["status"] == "attacked":
            counts[(row["true_name"], row["adv_name"] if row["success"] == 1 else NOT_FOOLED)] += 1
    return [(source, target, n) for (source, target), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def flow_figure(report: AuditReport) -> go.Figure:
    """Sankey from true classes (left) to the classes the flips land in (right)."""
    flows = class_flow(report)
    left = sorted({source for source, _, _ in flows})
    right = sorted({target for _, target, _ in flows})
    labels = left + [f"{name} " for name in right]  # a trailing space keeps a class on both sides two nodes
    index = {name: i for i, name in enumerate(left)}
    index.update({name: len(left) + i for i, name in enumerate(right)})
    colours = ["#4c78a8"] * len(left) + ["#999999" if name == NOT_FOOLED else "#e45756" for name in right]
    figure = go.Figure(go.Sankey(
        node=dict(label=labels, color=colours, pad=14, thickness=18),
        link=dict(source=[index[s] for s, _, _ in flows], target=[len(left) + right.index(t) for _, t, _ in flows],
                  value=[n for _, _, n in flows],
                  color=["rgba(153,153,153,0.35)" if t == NOT_FOOLED else "rgba(228,87,86,0.3)" for _, t, _ in flows]),
    ))
    figure.update_layout(height=max(320, 28 * max(len(left), len(right))), margin=dict(l=10, r=10, t=30, b=10),
                         font=dict(size=15), title="true class -> class after the attack")
    return figure


def kind_shares(report: AuditReport) -> list[dict[str, Any]]:
    """Per flipped image: the share of its changed pixels in each obscuring/leading kind (causal view)."""
    shares = []
    for row in report.flipped:
        counts = {kind: int(row[kind]) if row.get(kind) not in ("", None) else 0 for kind in KINDS}
        total = sum(counts.values())
        if total:
            shares.append({"image": row["image"], "pixels": row["pixels"],
                           **{kind: counts[kind] / total for kind in KINDS}})
    return shares


def kinds_figure(report: AuditReport) -> go.Figure:
    """Stacked horizontal bars: what each flipped image's changed pixels do (obscure, lead, both, neither)."""
    shares = kind_shares(report)
    names = [f"{s['image']} ({s['pixels']} px)" for s in shares]
    figure = go.Figure([
        go.Bar(y=names, x=[s[kind] for s in shares], name=kind, orientation="h", marker_color=KIND_COLOURS[kind])
        for kind in KINDS
    ])
    figure.update_layout(barmode="stack", height=max(260, 34 * len(shares) + 110), xaxis=dict(tickformat=".0%", range=[0, 1]),
                         yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=40, b=60), font=dict(size=15),
                         legend=dict(orientation="h", y=-0.12, yanchor="top"), title="obscuring / leading share of each image's pixels")
    return figure


def rows_table(report: AuditReport) -> list[dict[str, Any]]:
    """The per-image table the page shows: the CSV's main columns, fooled first, fewest pixels first."""
    def order(row: dict[str, Any]) -> tuple:
        return (row["success"] != 1, row["pixels"] if row["pixels"] != "" else 0, row["image"])

    return [{
        "image": r["image"], "true class": r["true_name"], "clean confidence": r["clean_confidence"],
        "status": ("fooled" if r["success"] == 1 else "not fooled") if r["status"] == "attacked" else r["status"],
        "pixels": r["pixels"] if r["pixels"] != "" else None, "becomes": r["adv_name"] or None,
        "adversarial confidence": r["adv_confidence"] if r["adv_confidence"] != "" else None,
        **{kind: r.get(kind) if r.get(kind) not in ("", None) else None for kind in KINDS},
        "seconds": r["seconds"] if r["seconds"] != "" else None,
    } for r in sorted(report.rows, key=order)]


__all__ = ["paired_figure", "class_flow", "flow_figure", "kind_shares", "kinds_figure", "pixels_figure", "rows_table"]
