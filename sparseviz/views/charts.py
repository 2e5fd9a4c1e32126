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

from ..images import to_uint8
from .colours import KIND_COLOURS, RING_COLOUR
from .report import changed_pixels, top_k

def value_of(record: Any, name: str, default: Any = None) -> Any:
    """One value of a record: a dataclass attribute (interpret's records) or a dict key (their JSON)."""
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded like a PNG save."""
    return to_uint8(image.cpu()).permute(1, 2, 0).numpy()


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
        marker=dict(symbol="circle-open", size=16, color=colour, line=dict(width=3)),
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


def top5_bars(clean_probs: torch.Tensor, adv_probs: torch.Tensor, class_names: Sequence[str], k: int = 5) -> go.Figure:
    """Grouped bars: the union of both top-k lists, clean vs adversarial probability."""
    indices: list[int] = []
    for probs in (clean_probs, adv_probs):
        for row in top_k(probs, class_names, k):
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


MAP_CAPTIONS = {
    ("clean", "true"): "where the model saw the true class before the attack",
    ("clean", "adv"): "where the photo already held evidence for the wrong class",
    ("adv", "true"): "true-class evidence left after the attack: obscuring pixels dim it",
    ("adv", "adv"): "wrong-class evidence after the attack: leading pixels light it up",
}


def _ring_hover(record: Any, kind: str) -> str:
    """Hover text for a ringed pixel: where, colour before/after, both contributions."""
    text = f"{kind} (y={int(value_of(record, 'y'))}, x={int(value_of(record, 'x'))})"
    before, after = value_of(record, "before"), value_of(record, "after")
    if before is not None and after is not None:
        text += f"<br>RGB {tuple(before)} -> {tuple(after)}"
    obscuring, leading = value_of(record, "obscuring"), value_of(record, "leading")
    if obscuring is not None and leading is not None:
        text += f"<br>obscuring {float(obscuring):+.3f}, leading {float(leading):+.3f}"
    return text


def maps_grid(maps: Mapping[tuple[str, str], np.ndarray], vmin: float, vmax: float,
              pixels: Sequence[Any] = (), *, photos: Mapping[str, torch.Tensor] | None = None,
              opacity: float = 0.6) -> go.Figure:
    """2x2 attribution maps on ONE colour scale (one colour bar, labelled "shared scale").

    With ``photos`` ({"clean": image, "adv": image}, each (3, H, W) in [0, 1]) each map is drawn
    over its photo at ``opacity`` (0 = photo only, 1 = map only), so a student can relate the
    evidence to the object. The changed pixels are ringed in the colour of their label; hovering
    one shows its colours before/after and both contributions.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}.")
    keys = [("clean", "true"), ("clean", "adv"), ("adv", "true"), ("adv", "adv")]
    figure = make_subplots(rows=2, cols=2, subplot_titles=[f"{MAP_TITLES[k]}<br><sup>{MAP_CAPTIONS[k]}</sup>"
                                                           for k in keys],
                           horizontal_spacing=0.04, vertical_spacing=0.1)
    for n, key in enumerate(keys):
        row, col = divmod(n, 2)
        plane = np.asarray(maps[key], dtype=np.float32)
        if photos is not None:
            figure.add_trace(go.Image(z=to_uint8_hwc(photos[key[0]]), hoverinfo="skip"), row=row + 1, col=col + 1)
        figure.add_trace(go.Heatmap(
            z=plane, zmin=vmin, zmax=vmax, colorscale="Inferno", showscale=n == 0, coloraxis=None,
            opacity=opacity if photos is not None else 1.0,
            colorbar=dict(title=dict(text="shared scale", side="right")),
            hovertemplate="(y=%{y}, x=%{x}) %{z:.3g}<extra></extra>",
        ), row=row + 1, col=col + 1)
        if pixels:  # a white halo under every ring: red and magenta rings stay visible on Inferno's reds
            figure.add_trace(go.Scatter(
                x=[int(value_of(p, "x")) for p in pixels], y=[int(value_of(p, "y")) for p in pixels], mode="markers",
                showlegend=False, hoverinfo="skip", marker=dict(symbol="circle-open", size=12, color="white",
                                                                line=dict(width=4))), row=row + 1, col=col + 1)
        for kind, colour in KIND_COLOURS.items():
            members = [p for p in pixels if pixel_kind(p) == kind]
            if members:
                figure.add_trace(go.Scatter(
                    x=[int(value_of(p, "x")) for p in members], y=[int(value_of(p, "y")) for p in members],
                    mode="markers", name=f"{kind} ({len(members)})", showlegend=n == 0, legendgroup=kind,
                    text=[_ring_hover(p, kind) for p in members], hovertemplate="%{text}<extra></extra>",
                    marker=dict(symbol="circle-open", size=12, color=colour, line=dict(width=2))),
                    row=row + 1, col=col + 1)
        height, width = plane.shape
        figure.update_xaxes(visible=False, range=[-0.5, width - 0.5], row=row + 1, col=col + 1)
        figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], row=row + 1, col=col + 1,
                            scaleanchor=f"x{'' if n == 0 else n + 1}")
    # ~440 px per map: large enough to project and to find a ringed pixel (660 gave ~290 px at 1920x1080)
    figure.update_layout(height=960, margin=dict(l=0, r=0, t=60, b=0), legend=dict(orientation="h", y=-0.03),
                         font=dict(size=15))
    return figure


def pixel_kind(record: Any) -> str:
    return str(value_of(record, "label", default="neither"))


def pixels_by_kind(image: torch.Tensor, pixels: Sequence[Any]) -> go.Figure:
    """The adversarial image with each changed pixel ringed in its kind's colour."""
    figure = go.Figure(go.Image(z=to_uint8_hwc(image), hoverinfo="skip"))
    for kind, colour in KIND_COLOURS.items():
        members = [p for p in pixels if pixel_kind(p) == kind]
        if not members:
            continue
        rows = [{"y": int(value_of(p, "y")), "x": int(value_of(p, "x")),
                 "before": list(value_of(p, "before")), "after": list(value_of(p, "after"))} for p in members]
        figure.add_trace(_ring_trace(rows, f"{kind} ({len(rows)})", colour, show_legend=True))
    height, width = image.shape[-2:]
    figure.update_xaxes(visible=False, range=[-0.5, width - 0.5])
    figure.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x")
    figure.update_layout(height=420, margin=dict(l=0, r=0, t=30, b=0), title="changed pixels by kind",
                         legend=dict(orientation="h", y=-0.02))
    return figure


def _number(value: Any) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def _alone(pixel: Any) -> float | None:
    """A pixel's share of the flip when pasted alone; None where it was not measured (large attacks
    paste only their strongest pixels alone: sparseviz.explain.proof.SINGLES_MAX_PIXELS)."""
    return _number(value_of(pixel, "alone_share", default=None))


def pixel_table(pixels: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per changed pixel for st.dataframe: both contributions (with standard errors) and its label."""
    return [{
        "y": int(value_of(p, "y")),
        "x": int(value_of(p, "x")),
        "before RGB": str(tuple(value_of(p, "before"))),
        "after RGB": str(tuple(value_of(p, "after"))),
        "kind": pixel_kind(p),
        "obscuring (true-class evidence drop)": _number(value_of(p, "obscuring")),
        "± obscuring": _number(value_of(p, "obscuring_se")),
        "leading (adv-class evidence rise)": _number(value_of(p, "leading")),
        "± leading": _number(value_of(p, "leading_se")),
        "alone: share of the flip": _alone(p),
    } for p in pixels]


def contribution_chart(pixels: Sequence[Any], *, max_pixels: int = 60) -> go.Figure:
    """Per-pixel bars: obscuring (true-class evidence drop) and leading (adversarial rise), with errors.

    Pixels sorted by total contribution; the ``max_pixels`` largest are drawn. Hover gives
    the location, the colour before/after, both contributions with their standard errors,
    the label and what the pixel does alone.
    """
    ranked = sorted(pixels, key=lambda p: -(float(value_of(p, "obscuring", default=0.0))
                                           + float(value_of(p, "leading", default=0.0))))[:max_pixels]
    names = [f"({int(value_of(p, 'y'))},{int(value_of(p, 'x'))}) {pixel_kind(p)}" for p in ranked]
    custom = [[int(value_of(p, "y")), int(value_of(p, "x")), str(tuple(value_of(p, "before"))), str(tuple(value_of(p, "after"))),
               float(value_of(p, "obscuring", default=0.0)), float(value_of(p, "obscuring_se", default=0.0) or 0.0),
               float(value_of(p, "leading", default=0.0)), float(value_of(p, "leading_se", default=0.0) or 0.0),
               pixel_kind(p), "not measured" if _alone(p) is None else f"{_alone(p):.0%} of the flip"] for p in ranked]
    hover = ("(y=%{customdata[0]}, x=%{customdata[1]}) %{customdata[8]}<br>colour %{customdata[2]} -> "
             "%{customdata[3]}<br>obscuring %{customdata[4]:.3f} ± %{customdata[5]:.3f}<br>leading "
             "%{customdata[6]:.3f} ± %{customdata[7]:.3f}<br>alone: %{customdata[9]}<extra></extra>")
    figure = go.Figure()
    for name, key, colour in (("obscuring: true-class evidence drop", "obscuring", KIND_COLOURS["obscuring"]),
                              ("leading: adversarial evidence rise", "leading", KIND_COLOURS["leading"])):
        errors = [float(value_of(p, f"{key}_se", default=0.0) or 0.0) for p in ranked]
        figure.add_trace(go.Bar(
            name=name, x=names, y=[float(value_of(p, key, default=0.0)) for p in ranked], marker_color=colour,
            error_y=dict(type="data", array=[e if e == e else 0.0 for e in errors], visible=any(e > 0 for e in errors)),
            customdata=custom, hovertemplate=hover))
    figure.update_layout(barmode="group", height=360, margin=dict(l=0, r=0, t=40, b=0),
                         title=f"what each changed pixel contributes (centred logits; {len(ranked)} of {len(pixels)} "
                               f"largest shown)",
                         yaxis=dict(title="evidence (centred logit)"), xaxis=dict(showticklabels=len(ranked) <= 30),
                         legend=dict(orientation="h", y=1.02, x=0))
    return figure


def ablation_bars(ablation: Sequence[Any]) -> go.Figure:
    """Group ablation: clean image + only one group; true-class evidence drop and adversarial rise.

    Probabilities are in the hover and the bar text.
    """
    rows = [r for r in ablation if value_of(r, "group") != "clean"]
    groups = [f"{value_of(r, 'group')} ({value_of(r, 'pixels')} px)" for r in rows]
    figure = go.Figure()
    for name, key, prob, colour in (("true-class evidence drop", "true_drop", "true_prob", "#4c78a8"),
                                    ("adversarial-class evidence rise", "adv_rise", "adv_prob", "#e45756")):
        probs = [float(value_of(r, prob, default=float("nan"))) for r in rows]
        figure.add_trace(go.Bar(
            name=name, x=groups, y=[float(value_of(r, key, default=0.0)) for r in rows], marker_color=colour,
            text=[f"p={p:.0%}" for p in probs], textposition="outside",
            hovertemplate=f"%{{x}}<br>{name}: %{{y:.3f}}<br>%{{text}}<extra></extra>"))
    figure.update_layout(barmode="group", height=340, margin=dict(l=0, r=0, t=40, b=0),
                         yaxis=dict(title="change vs clean (centred logit)"),
                         title="group ablation: clean image + only these pixels")
    return figure


def joint_action_bars(pixels: Sequence[Any], *, max_pixels: int = 20) -> go.Figure:
    """Each pixel alone vs all of them together, as a share of the flip (the joint-action picture)."""
    measured = [p for p in pixels if _alone(p) is not None]
    ranked = sorted(measured, key=lambda p: -(_alone(p) or 0.0))[:max_pixels]
    names = [f"({int(value_of(p, 'y'))},{int(value_of(p, 'x'))})" for p in ranked] + [f"all {len(pixels)} together"]
    values = [_alone(p) or 0.0 for p in ranked] + [1.0]
    colours = [KIND_COLOURS.get(pixel_kind(p), "#999999") for p in ranked] + ["#333333"]
    figure = go.Figure(go.Bar(x=names, y=values, marker_color=colours, text=[f"{v:.0%}" for v in values],
                              textposition="outside", hovertemplate="%{x}: %{y:.0%} of the flip<extra></extra>"))
    figure.update_layout(height=300, margin=dict(l=0, r=0, t=40, b=0), title="alone vs together: share of the flip",
                         yaxis=dict(tickformat=".0%", range=[min(0.0, min(values) * 1.2), 1.2]))
    return figure


def compare_bars(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Pixels changed per attack on a log axis (sparse vs dense differ by orders of magnitude)."""
    figure = go.Figure(go.Bar(x=[r["attack"] for r in rows], y=[max(1, r["pixels changed"]) for r in rows],
                              text=[r["pixels changed"] for r in rows], marker_color=["#e45756", "#4c78a8"][: len(rows)]))
    figure.update_layout(height=300, margin=dict(l=0, r=0, t=40, b=0), yaxis=dict(type="log", title="pixels changed"),
                         title="pixels changed (log scale)")
    return figure


def pixel_closeups(original: torch.Tensor, adversarial: torch.Tensor, *, radius: int = 5,
                   max_pixels: int = 8) -> go.Figure:
    """Zoomed insets: a (2r+1)-pixel crop around each changed pixel, before (top) and after (bottom).

    A 224x224 image shrinks each pixel below one screen pixel; here each is ~10 screen
    pixels wide, framed, with its RGB values on hover. Shows the ``max_pixels`` pixels
    with the largest change.
    """
    pixels = changed_pixels(original, adversarial)
    pixels.sort(key=lambda p: -sum(abs(a - b) for a, b in zip(p["before"], p["after"])))
    pixels = pixels[:max_pixels]
    if not pixels:
        figure = go.Figure()
        figure.update_layout(height=80, title="no changed pixels", margin=dict(l=0, r=0, t=40, b=0))
        return figure
    before, after = to_uint8_hwc(original), to_uint8_hwc(adversarial)
    height, width = before.shape[:2]
    side = 2 * radius + 1
    titles = [f"(y={p['y']}, x={p['x']})" for p in pixels] + [""] * len(pixels)
    figure = make_subplots(rows=2, cols=len(pixels), subplot_titles=titles, horizontal_spacing=0.01,
                           vertical_spacing=0.04, row_titles=["before", "after"])
    for column, p in enumerate(pixels, start=1):
        top = min(max(p["y"] - radius, 0), max(height - side, 0))
        left = min(max(p["x"] - radius, 0), max(width - side, 0))
        for row, panel in enumerate((before, after), start=1):
            crop = panel[top:top + side, left:left + side]
            figure.add_trace(go.Image(z=crop, x0=left, y0=top, dx=1, dy=1,
                                      hovertemplate="(y=%{y}, x=%{x}) RGB %{z}<extra></extra>"), row=row, col=column)
            figure.add_shape(type="rect", x0=p["x"] - 0.5, x1=p["x"] + 0.5, y0=p["y"] - 0.5, y1=p["y"] + 0.5,
                             line=dict(color=RING_COLOUR, width=2), row=row, col=column)
            figure.update_xaxes(visible=False, range=[left - 0.5, left + side - 0.5], row=row, col=column)
            figure.update_yaxes(visible=False, range=[top + side - 0.5, top - 0.5], row=row, col=column)
    figure.update_layout(height=300 if len(pixels) <= 4 else 240, margin=dict(l=0, r=30, t=40, b=0),
                         title=dict(text=f"close-up of the {len(pixels)} most changed pixels", x=0))
    figure.update_annotations(font_size=11)
    return figure


def sweep_figure(points: Sequence[Any]) -> go.Figure:
    """Pixels (bars) and adversarial confidence (line) per sparsity weight; failures marked on the axis."""
    weights = [f"{float(value_of(p, 'sparsity_weight')):g}" for p in points]
    success = [bool(value_of(p, "success")) for p in points]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Bar(
        x=weights, y=[int(value_of(p, "pixels")) if ok else 0 for p, ok in zip(points, success)],
        text=[str(int(value_of(p, "pixels"))) if ok else "failed" for p, ok in zip(points, success)],
        textposition="outside", name="pixels changed", marker_color=["#e45756" if ok else "#c9ccd3" for ok in success],
    ), secondary_y=False)
    figure.add_trace(go.Scatter(
        x=weights, y=[float(value_of(p, "adv_confidence")) if ok else None for p, ok in zip(points, success)],
        mode="lines+markers", name="adversarial-class confidence", line=dict(color="#4c78a8", width=3),
    ), secondary_y=True)
    figure.add_trace(go.Scatter(
        x=weights, y=[float(value_of(p, "true_prob_after")) for p in points], mode="lines+markers",
        name="true-class probability after", line=dict(color="#4c78a8", width=2, dash="dot"),
    ), secondary_y=True)
    top = max([int(value_of(p, "pixels")) for p in points] + [1])
    figure.update_layout(height=360, margin=dict(l=0, r=0, t=40, b=0), title="sparsity weight sweep",
                         legend=dict(orientation="h", y=-0.2), bargap=0.35)
    figure.update_xaxes(title="sparsity weight", type="category")
    figure.update_yaxes(title="pixels changed", range=[0, top * 1.25], secondary_y=False)
    figure.update_yaxes(title="probability", range=[0, 1], tickformat=".0%", secondary_y=True, showgrid=False)
    return figure


def sweep_table(points: Sequence[Any]) -> list[dict[str, Any]]:
    return [{
        "sparsity weight": float(value_of(p, "sparsity_weight")),
        "fooled": bool(value_of(p, "success")),
        "pixels changed": int(value_of(p, "pixels")),
        "channel entries": int(value_of(p, "entries")),
        "adversarial confidence": round(float(value_of(p, "adv_confidence")), 4),
        "true-class probability after": round(float(value_of(p, "true_prob_after")), 4),
        "seconds": round(float(value_of(p, "seconds")), 2),
    } for p in points]


def transfer_table(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per other model: its clean and adversarial prediction and whether it was fooled."""
    def verdict(fooled: Any) -> str:
        return "n/a" if fooled is None else ("yes" if fooled else "no")

    def percent(value: Any) -> str:
        return "" if value is None else f"{float(value):.1%}"

    return [{
        "model": value_of(r, "model"),
        "fooled too": verdict(value_of(r, "fooled")),
        "clean prediction": value_of(r, "clean_name") or "",
        "adversarial prediction": value_of(r, "adv_name") or "",
        "true class, clean": percent(value_of(r, "true_prob_clean")),
        "true class, adversarial": percent(value_of(r, "true_prob_adv")),
        "note": value_of(r, "note") or "",
    } for r in rows]
