"""The app's plotly figure builders on hand-made tensors (no model, no Streamlit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseviz.views import charts as views
from sparseviz.views.report import png_bytes
from sparseviz.images import load_upload
from sparseviz.views.report import changed_pixels, top_k


def _pair():
    original = torch.full((3, 8, 10), 100 / 255)
    adversarial = original.clone()
    adversarial[:, 2, 3] = torch.tensor([1.0, 0.0, 0.0])
    adversarial[1, 5, 7] = 0.0
    return original, adversarial


def test_changed_pixels_lists_each_pixel_with_colours():
    original, adversarial = _pair()
    pixels = changed_pixels(original, adversarial)
    assert [(p["y"], p["x"]) for p in pixels] == [(2, 3), (5, 7)]
    assert pixels[0]["before"] == [100, 100, 100] and pixels[0]["after"] == [255, 0, 0]
    assert pixels[1]["after"] == [100, 0, 100]


def test_perturbation_is_signed_around_grey():
    original, adversarial = _pair()
    panel = views.perturbation_rgb(original, adversarial)
    assert panel.shape == (8, 10, 3) and panel.dtype == np.uint8
    assert tuple(panel[0, 0]) == (128, 128, 128)  # unchanged = mid grey
    assert panel[2, 3, 0] == 255 and panel[2, 3, 1] == 45  # largest change saturates; -100 of peak 155 -> 45
    assert tuple(views.perturbation_rgb(original, original)[0, 0]) == (128, 128, 128)


def test_triptych_rings_every_changed_pixel_with_hover():
    original, adversarial = _pair()
    figure = views.attack_triptych(original, adversarial)
    rings = [t for t in figure.data if t.type == "scatter"]
    assert len(rings) == 3  # one ring trace per panel
    assert all(list(zip(r.y, r.x)) == [(2, 3), (5, 7)] for r in rings)
    assert "before RGB" in rings[0].hovertemplate and "after RGB" in rings[0].hovertemplate
    assert list(rings[0].customdata[0]) == [100, 100, 100, 255, 0, 0]
    assert sum(t.type == "image" for t in figure.data) == 3


def test_triptych_without_changes_has_no_rings():
    original, _ = _pair()
    figure = views.attack_triptych(original, original)
    assert not [t for t in figure.data if t.type == "scatter"]


def test_top5_bars_union_of_classes():
    names = [f"c{i}" for i in range(8)]
    clean = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.01, 0.01])
    adv = torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9])
    figure = views.top5_bars(clean, adv, names)
    assert "c7" in figure.data[0].x and "c0" in figure.data[0].x
    rows = top_k(clean, names)
    assert [r["class"] for r in rows] == ["c0", "c1", "c2", "c3", "c4"]


def test_maps_grid_one_shared_scale():
    maps = {(a, b): np.random.default_rng(0).random((6, 6)).astype(np.float32)
            for a in ("clean", "adv") for b in ("true", "adv")}
    pixels = [{"y": 1, "x": 2, "before": (0, 0, 0), "after": (1, 1, 1), "label": "leading"}]
    figure = views.maps_grid(maps, 0.0, 2.0, pixels)
    heatmaps = [t for t in figure.data if t.type == "heatmap"]
    assert len(heatmaps) == 4
    assert {(h.zmin, h.zmax) for h in heatmaps} == {(0.0, 2.0)}
    assert sum(bool(h.showscale) for h in heatmaps) == 1
    assert heatmaps[0].colorbar.title.text == "shared scale"


def test_maps_grid_draws_each_map_over_its_photo_with_ring_hover():
    maps = {(a, b): np.full((6, 6), 0.5, dtype=np.float32) for a in ("clean", "adv") for b in ("true", "adv")}
    clean = torch.zeros(3, 6, 6)
    adv = clean.clone()
    adv[:, 1, 2] = 1.0
    pixels = [{"y": 1, "x": 2, "before": (0, 0, 0), "after": (255, 255, 255), "label": "obscuring",
               "obscuring": 0.75, "leading": -0.125}]
    figure = views.maps_grid(maps, 0.0, 1.0, pixels, photos={"clean": clean, "adv": adv}, opacity=0.4)
    photos = [t for t in figure.data if t.type == "image"]
    heatmaps = [t for t in figure.data if t.type == "heatmap"]
    assert len(photos) == 4 and {h.opacity for h in heatmaps} == {0.4}
    # the adversarial panels show the adversarial photo (the changed pixel is white there only)
    assert [int(p.z[1][2][0]) for p in photos] == [0, 0, 255, 255]
    rings = [t for t in figure.data if t.type == "scatter" and t.marker.color != "white"]
    halos = [t for t in figure.data if t.type == "scatter" and t.marker.color == "white"]
    assert len(halos) == 4 and all(h.hoverinfo == "skip" for h in halos)  # a halo under each map's rings
    assert "obscuring +0.750, leading -0.125" in rings[0].text[0] and "(255, 255, 255)" in rings[0].text[0]
    with pytest.raises(ValueError, match="opacity"):
        views.maps_grid(maps, 0.0, 1.0, pixels, photos={"clean": clean, "adv": adv}, opacity=1.5)


def test_pixel_views_accept_dicts_and_dataclasses():
    from dataclasses import dataclass

    @dataclass
    class Record:
        y: int
        x: int
        before: tuple
        after: tuple
        label: str
        obscuring: float = 0.3
        leading: float = 0.1
        obscuring_se: float = 0.0
        leading_se: float = 0.0
        alone_share: float = 0.2

    records = [Record(1, 1, (0, 0, 0), (9, 9, 9), "obscuring"),
               {"y": 2, "x": 2, "before": (0, 0, 0), "after": (5, 5, 5), "label": "leading",
                "obscuring": -0.05, "leading": 0.6, "obscuring_se": 0.01, "leading_se": 0.02, "alone_share": 0.4}]
    table = views.pixel_table(records)
    assert [r["kind"] for r in table] == ["obscuring", "leading"]
    assert table[1]["leading (adv-class evidence rise)"] == 0.6 and table[1]["± leading"] == 0.02
    figure = views.pixels_by_kind(torch.zeros(3, 4, 4), records)
    assert {t.name.split(" ")[0] for t in figure.data if t.type == "scatter"} == {"obscuring", "leading"}
    chart = views.contribution_chart(records)
    assert [list(t.y) for t in chart.data] == [[-0.05, 0.3], [0.6, 0.1]]  # sorted by total contribution
    assert chart.data[1].error_y.visible and "± " in chart.data[0].hovertemplate
    joint = views.joint_action_bars(records)
    assert list(joint.data[0].y) == [0.4, 0.2, 1.0]
    # a large attack pastes only its strongest pixels alone: the others are "not measured", never 0%
    records.append(Record(3, 3, (0, 0, 0), (1, 1, 1), "both", alone_share=float("nan")))
    assert views.pixel_table(records)[2]["alone: share of the flip"] is None
    joint = views.joint_action_bars(records)
    assert list(joint.data[0].y) == [0.4, 0.2, 1.0] and list(joint.data[0].x)[-1] == "all 3 together"
    assert "not measured" in [row[9] for row in views.contribution_chart(records).data[0].customdata]


def test_ablation_bars_grouped():
    rows = [{"group": g, "pixels": n, "true_prob": t, "adv_prob": a, "true_drop": d, "adv_rise": r}
            for g, n, t, a, d, r in (("clean", 0, 0.8, 0.1, 0.0, 0.0), ("obscuring", 2, 0.5, 0.2, 1.5, 0.2),
                                     ("all", 3, 0.1, 0.7, 2.0, 3.0))]
    figure = views.ablation_bars(rows)
    assert figure.layout.barmode == "group" and len(figure.data) == 2
    assert list(figure.data[0].y) == [1.5, 2.0] and list(figure.data[1].y) == [0.2, 3.0]
    assert list(figure.data[1].text) == ["p=20%", "p=70%"]


def test_load_upload_returns_one_line_error():
    message = load_upload("junk.png", b"\x00\x01not an image at all" * 10)
    assert isinstance(message, str) and "\n" not in message and message.startswith("junk.png:")


def test_closeups_frame_each_changed_pixel_before_and_after():
    original, adversarial = _pair()
    figure = views.pixel_closeups(original, adversarial, radius=2)
    assert sum(t.type == "image" for t in figure.data) == 4  # 2 pixels x (before, after)
    frames = [(s.x0 + 0.5, s.y0 + 0.5) for s in figure.layout.shapes]
    assert sorted(frames) == sorted([(3, 2), (3, 2), (7, 5), (7, 5)])
    assert views.pixel_closeups(original, original).layout.title.text == "no changed pixels"


def test_closeups_keep_the_largest_changes():
    original, adversarial = _pair()
    figure = views.pixel_closeups(original, adversarial, max_pixels=1)
    assert [(s.x0 + 0.5, s.y0 + 0.5) for s in figure.layout.shapes] == [(3, 2), (3, 2)]  # (2,3) moved 410 levels


def test_sweep_figure_marks_failures():
    from sparseviz.audit.experiments import SweepPoint

    points = [SweepPoint(w, ok, px, px * 3, 1, conf, 0.1, 1.0, False)
              for w, ok, px, conf in ((0.5, True, 9, 0.8), (1.0, True, 4, 0.6), (4.0, False, 0, 0.5))]
    figure = views.sweep_figure(points)
    bars = figure.data[0]
    assert list(bars.text) == ["9", "4", "failed"] and list(bars.y) == [9, 4, 0]
    assert figure.data[1].y[2] is None  # no confidence plotted for a failed weight
    assert [r["fooled"] for r in views.sweep_table(points)] == [True, True, False]


def test_transfer_table_verdicts():
    from sparseviz.audit.experiments import TransferRow

    rows = [TransferRow("a", 1, "cat", 2, "dog", 0.9, 0.1, True, ""),
            TransferRow("b", 1, "cat", 1, "cat", 0.9, 0.8, False, ""),
            TransferRow("c", 3, "fox", 3, "fox", 0.1, 0.1, None, "already disagrees on the clean image")]
    table = views.transfer_table(rows)
    assert [r["fooled too"] for r in table] == ["yes", "no", "n/a"]
    assert table[0]["true class, clean"] == "90.0%"


def test_png_bytes_are_the_measured_8bit_values():
    import io

    from PIL import Image

    original, adversarial = _pair()
    data = png_bytes(adversarial)
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(decoded, views.to_uint8_hwc(adversarial))
    assert decoded[2, 3].tolist() == [255, 0, 0]
