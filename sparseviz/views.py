"""Plotly figure builders for the app: pure functions of tensors, results and explanations.

Nothing here touches Streamlit, loads a model or runs an attack, so every figure can be
unit-tested on a tiny hand-made result.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

# One colour per obscuring/leading kind, used for markers and bars alike.
KIND_COLOURS = {"obscuring": "#1f77b4", "leading": "#d62728", "both": "#9467bd", "neither": "#7f7f7f"}
RING_COLOUR = "#00e5ff"  # cyan rings show on both light and dark photo regions


def field(record: Any, *names: str, default: Any = None) -> Any:
    """Read the first present attribute/key of a dataclass or dict (interpret's records)."""
    for name in names:
        if isinstance(record, Mapping) and name in record:
            return record[name]
        if not isinstance(record, Mapping) and hasattr(record, name):
            return getattr(record, name)
    return default


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded like a PNG save."""
    return torch.round(image.detach().cpu().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()


def changed_pixels(original: torch.Tensor, adversarial: torch.Tensor) -> list[dict[str, Any]]:
    """Every pixel whose 8-bit colour differs: y, x, before and after RGB."""
    before, after = to_uint8_hwc(original), to_uint8_hwc(adversarial)
    ys, xs = np.nonzero((before != after).any(axis=2))
    return [
        {"y": int(y), "x": int(x), "before": before[y, x].tolist(), "after": after[y, x].tolist()}
        for y, x in zip(ys, xs)
    ]


def perturbation_rgb(original: torch.Tensor, adversarial: torch.Tensor) -> np.ndarray:
    """Signed perturbation shown around mid-grey, amplified so that the largest change saturates."""
    delta = (adversarial - original).detach().cpu().permute(1, 2, 0).numpy().astype(np.float32)
    peak = float(np.abs(delta).max())
    scaled = 0.5 + 0.5 * delta / peak if peak > 0 else np.full_like(delta, 0.5)
    return np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _ring_trace(pixels: Sequence[Mapping[str, Any]], name: str, colour: str = RING_COLOUR,
                show_legend: bool = False) -> go.Scatter:
    return go.Scatter(
        x=[p["x"] for p in pixels],
        y=[p["y"] for p in pixels],
        mode="markers",
        marker=dict(symbol="circle-open", size=16, color=colour, line=dict(width=2.5)),
        name=name,
        showlegend=show_legend,
        customdata=[[*p["before"], *p["after"]] for p in pixels],
        hovertemplate=(
            "(y=%{y}, x=%{x})<br>before RGB (%{customdata[0]}, %{customdata[1]}, %{customdata[2]})"
            "<br>after RGB (%{customdata[3]}, %{customdata[4]}, %{customdata[5]})<extra></extra>"
        ),
    )


def attack_triptych(original: torch.Tensor, adversarial: torch.Tensor, *, titles: Sequence[str] | None = None,
                    max_rings: int = 400) -> go.Figure:
    """Clean | amplified signed perturbation | adversarial, each changed pixel ringed, hover = colours."""
    pixels = changed_pixels(original, adversarial)
    titles = list(titles or ("clean", "perturbation (amplified, grey = unchanged)", "adversarial"))
    figure = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.02)
    panels = (to_uint8_hwc(original), perturbation_rgb(original, adversarial), to_uint8_hwc(adversarial))
    for column, panel in enumerate(panels, start=1):
        figure.add_trace(go.Image(z=panel, hoverinfo="skip"), row=1, col=column)
        if pixels and len(pixels) <= max_rings:  # dense attacks change everything: rings would hide the image
            figure.add_trace(_ring_trace(pixels, f"changed pixels ({len(pixels)})", show_legend=column == 1),
                             row=1, col=column)
    height, width = panels[0].shape[:2]
    for column in range(1, 4):
        figure.update_xaxes(visible=False, range=[-0.5, width - 0.5], row=1, col=column)
        figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor=f"x{'' if column == 1 else column}",
                            row=1, col=column)
    figure.update_layout(height=360, margin=dict(l=0, r=0, t=40, b=0), showlegend=bool(pixels),
                         legend=dict(orientation="h", y=-0.02, x=0))
    return figure


def top5_frame(probs: torch.Tensor, class_names: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """Rows {class, probability} for the k most probable classes of one probability vector."""
    values, indices = probs.detach().cpu().topk(k)
    return [{"class": class_names[int(i)], "index": int(i), "probability": float(v)} for v, i in zip(values, indices)]


def top5_bars(clean_probs: torch.Tensor, adv_probs: torch.Tensor, class_names: Sequence[str], k: int = 5) -> go.Figure:
    """Grouped bars: the union of both top-k lists, clean vs adversarial probability."""
    indices: list[int] = []
    for probs in (clean_probs, adv_probs):
        for row in top5_frame(probs, class_names, k):
            if row["index"] not in indices:
                indices.append(row["index"])
    names = [class_names[i] for i in indices]
    figure = go.Figure([
        go.Bar(name="before", x=names, y=[float(clean_probs[i]) for i in indices], marker_color="#4c78a8"),
        go.Bar(name="after", x=names, y=[float(adv_probs[i]) for i in indices], marker_color="#e45756"),
    ])
    figure.update_layout(barmode="group", height=320, margin=dict(l=0, r=0, t=30, b=0),
                         yaxis=dict(title="probability", range=[0, 1], tickformat=".0%"),
                         title="top-5 before and after")
    return figure


MAP_TITLES = {
    ("clean", "true"): "clean image, true class",
    ("clean", "adv"): "clean image, adversarial class",
    ("adv", "true"): "adversarial image, true class",
    ("adv", "adv"): "adversarial image, adversarial class",
}


def maps_grid(maps: Mapping[tuple[str, str], np.ndarray], vmin: float, vmax: float,
              pixels: Sequence[Any] = ()) -> go.Figure:
    """2x2 attribution maps on ONE colour scale (one colour bar, labelled "shared scale")."""
    keys = [("clean", "true"), ("clean", "adv"), ("adv", "true"), ("adv", "adv")]
    figure = make_subplots(rows=2, cols=2, subplot_titles=[MAP_TITLES[k] for k in keys],
                           horizontal_spacing=0.04, vertical_spacing=0.08)
    ys = [int(field(p, "y")) for p in pixels]
    xs = [int(field(p, "x")) for p in pixels]
    for n, key in enumerate(keys):
        row, col = divmod(n, 2)
        plane = np.asarray(maps[key], dtype=np.float32)
        figure.add_trace(go.Heatmap(
            z=plane, zmin=vmin, zmax=vmax, colorscale="Inferno", showscale=n == 0, coloraxis=None,
            colorbar=dict(title=dict(text="shared scale", side="right")),
            hovertemplate="(y=%{y}, x=%{x}) %{z:.3g}<extra></extra>",
        ), row=row + 1, col=col + 1)
        if ys:
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="markers", showlegend=False, hoverinfo="skip",
                                        marker=dict(symbol="circle-open", size=12, color=RING_COLOUR,
                                                    line=dict(width=2))), row=row + 1, col=col + 1)
        height, width = plane.shape
        figure.update_xaxes(visible=False, range=[-0.5, width - 0.5], row=row + 1, col=col + 1)
        figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], row=row + 1, col=col + 1,
                            scaleanchor=f"x{'' if n == 0 else n + 1}")
    figure.update_layout(height=640, margin=dict(l=0, r=0, t=40, b=0))
    return figure


def pixel_kind(record: Any) -> str:
    return str(field(record, "label", "kind", default="neither"))


def pixels_by_kind(image: torch.Tensor, pixels: Sequence[Any]) -> go.Figure:
    """The adversarial image with each changed pixel ringed in its kind's colour."""
    figure = go.Figure(go.Image(z=to_uint8_hwc(image), hoverinfo="skip"))
    for kind, colour in KIND_COLOURS.items():
        members = [p for p in pixels if pixel_kind(p) == kind]
        if not members:
            continue
        rows = [{"y": int(field(p, "y")), "x": int(field(p, "x")),
                 "before": list(field(p, "before")), "after": list(field(p, "after"))} for p in members]
        figure.add_trace(_ring_trace(rows, f"{kind} ({len(rows)})", colour, show_legend=True))
    height, width = image.shape[-2:]
    figure.update_xaxes(visible=False, range=[-0.5, width - 0.5])
    figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x")
    figure.update_layout(height=420, margin=dict(l=0, r=0, t=30, b=0), title="changed pixels by kind",
                         legend=dict(orientation="h", y=-0.02))
    return figure


def pixel_table(pixels: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per changed pixel for st.dataframe."""
    rows = []
    for p in pixels:
        rows.append({
            "y": int(field(p, "y")),
            "x": int(field(p, "x")),
            "before RGB": str(tuple(field(p, "before"))),
            "after RGB": str(tuple(field(p, "after"))),
            "kind": pixel_kind(p),
            "true-class recovery if reverted": field(p, "true_prob_recovery", "causal_true_recovery"),
            "adv-class drop if reverted": field(p, "adv_prob_drop", "causal_adv_drop"),
            "attribution (true)": field(p, "obscuring_score", "attribution_true"),
            "attribution (adv)": field(p, "leading_score", "attribution_adv"),
            "views agree": field(p, "agree", "views_agree"),
        })
    return rows


def ablation_bars(ablation: Sequence[Any]) -> go.Figure:
    """Grouped bars: true-class and adversarial-class probability after reverting each group."""
    groups = [f"{field(r, 'group')} ({field(r, 'pixels')} px)" for r in ablation]
    figure = go.Figure([
        go.Bar(name="true class", x=groups, y=[float(field(r, "true_prob")) for r in ablation], marker_color="#4c78a8"),
        go.Bar(name="adversarial class", x=groups, y=[float(field(r, "adv_prob")) for r in ablation],
               marker_color="#e45756"),
    ])
    figure.update_layout(barmode="group", height=340, margin=dict(l=0, r=0, t=40, b=0),
                         yaxis=dict(title="probability", range=[0, 1], tickformat=".0%"),
                         title="group ablation: which pixels applied")
    return figure


def compare_bars(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Pixels changed per attack on a log axis (sparse vs dense differ by orders of magnitude)."""
    figure = go.Figure(go.Bar(x=[r["attack"] for r in rows], y=[max(1, r["pixels changed"]) for r in rows],
                              text=[r["pixels changed"] for r in rows], marker_color=["#e45756", "#4c78a8"][: len(rows)]))
    figure.update_layout(height=300, margin=dict(l=0, r=0, t=40, b=0), yaxis=dict(type="log", title="pixels changed"),
                         title="pixels changed (log scale)")
    return figure


def load_upload(name: str, data: bytes) -> Any:
    """Load an uploaded file: a ``LoadedImage``, or a one-line error message (never a traceback)."""
    from .images import load_image

    try:
        return load_image(data)
    except ValueError as error:  # ImageLoadError is a ValueError with a one-line message
        message = " ".join(str(error).split()) or type(error).__name__
        return f"{name}: {message}"
    except Exception as error:  # noqa: BLE001 - a decoder bug must still not reach the user as a traceback
        return f"{name}: could not read this file as an image ({type(error).__name__})."
