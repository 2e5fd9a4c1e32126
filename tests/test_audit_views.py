"""Audit figures and picks on a hand-made report: flows, shares, extremes."""

from __future__ import annotations

from sparseviz.audit.run import AUDIT_COLUMNS, AuditReport
from sparseviz.audit.session import extremes, success_rate, thumbnail_path
from sparseviz.views.audit_charts import class_flow, flow_figure, kind_shares, kinds_figure, pixels_figure, rows_table


def _row(image: str, true: str, pixels: int | None, adv: str = "", kinds: tuple[int, int, int, int] = (0, 0, 0, 0),
         status: str = "attacked") -> dict:
    row = {column: "" for column in AUDIT_COLUMNS}
    row.update(image=image, status=status, true_name=true, true_label=0, clean_confidence=0.9, seconds=1.0,
               model_calls=10, adversarial_png=f"adversarials/{image.rsplit('.', 1)[0]}.png")
    if status == "attacked":
        row["success"] = int(pixels is not None)
    if pixels is not None:
        row.update(pixels=pixels, adv_name=adv, adv_confidence=0.4,
                   **dict(zip(("obscuring", "leading", "both", "neither"), kinds)))
    return row


REPORT = AuditReport([
    _row("a.png", "cat", 2, "dog", (1, 1, 0, 0)),
    _row("b.png", "cat", 40, "dog", (10, 20, 0, 10)),
    _row("c.png", "cup", None),
    _row("d.png", "cup", 1, "bowl", (0, 1, 0, 0)),
    _row("e.png", "cup", None, status="misclassified as bowl (not attacked)"),
], [("x.png", "not an image")], {"attack": "sparse", "config": {}})


def test_class_flow_counts_each_pair_and_the_misses():
    assert class_flow(REPORT) == [("cat", "dog", 2), ("cup", "bowl", 1), ("cup", "not fooled", 1)]
    sankey = flow_figure(REPORT).data[0]
    assert list(sankey.node.label) == ["cat", "cup", "bowl ", "dog ", "not fooled "]
    assert sorted(sankey.link.value) == [1, 1, 2]


def test_kind_shares_are_fractions_of_each_images_pixels():
    shares = {s["image"]: s for s in kind_shares(REPORT)}
    assert shares["b.png"]["leading"] == 0.5 and shares["b.png"]["neither"] == 0.25
    assert shares["d.png"]["leading"] == 1.0
    assert len(kinds_figure(REPORT).data) == 4


def test_extremes_and_success_rate():
    assert success_rate(REPORT) == (3, 4)
    most, least = extremes(REPORT, 4)
    assert [r["image"] for r in most] == ["d.png", "a.png"]
    assert [r["image"] for r in least] == ["c.png", "b.png"]  # not fooled first, then most pixels
    assert thumbnail_path(most[0]) == "thumbnails/d.png" and thumbnail_path(least[0]) is None


def test_pixels_figure_and_table():
    figure = pixels_figure(REPORT)
    bars = figure.data[0]
    assert dict(zip(bars.x, bars.y))["not fooled"] == 1 and dict(zip(bars.x, bars.y))["1"] == 1
    assert list(figure.data[1].y) == [0.0, 0.25, 0.5, 0.75]  # ECDF over the 4 attacked images
    table = rows_table(REPORT)
    assert [r["image"] for r in table] == ["d.png", "a.png", "b.png", "c.png", "e.png"]
