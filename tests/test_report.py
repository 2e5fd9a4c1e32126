"""The one measurement/report module: hand-made inputs with hand-computed answers."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from sparseviz.attacks import ATTACKS
from sparseviz.images import load_image, to_tensor, to_uint8
from sparseviz.views.report import (
    attack_report,
    changed_pixels,
    html_table,
    markdown_table,
    save_verified_png,
    top_k,
    transfer_fooled,
)
from tests.conftest import clean_labels, make_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_changed_pixels_in_row_major_order_with_8bit_colours() -> None:
    original = torch.full((3, 4, 5), 10 / 255)
    adversarial = original.clone()
    adversarial[:, 3, 0] = 1.0
    adversarial[2, 1, 4] = 0.2 / 255  # rounds back to 0: a change, though not a visible one
    adversarial[0, 0, 0] = 10.4 / 255  # rounds to the same 8-bit value: not a change
    assert changed_pixels(original, adversarial) == [
        {"y": 1, "x": 4, "before": [10, 10, 10], "after": [10, 10, 0]},
        {"y": 3, "x": 0, "before": [10, 10, 10], "after": [255, 255, 255]},
    ]


def test_top_k_stops_at_the_number_of_classes() -> None:
    rows = top_k(torch.tensor([0.2, 0.7, 0.1]), ["a", "b", "c"], k=5)
    assert [(r["class"], r["index"]) for r in rows] == [("b", 1), ("a", 0), ("c", 2)]
    assert rows[0]["probability"] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("clean", "adversarial", "target", "expected"),
    [(3, 5, None, True), (3, 3, None, False), (4, 5, None, None),  # untargeted, true class 3
     (3, 7, 7, True), (3, 5, 7, False), (7, 7, 7, None)],  # targeted at 7
)
def test_transfer_criterion(clean: int, adversarial: int, target: int | None, expected: bool | None) -> None:
    assert transfer_fooled(clean, adversarial, 3, target) is expected


def test_tables_escape_what_would_break_them() -> None:
    assert markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x/y |"
    assert html_table(["<a>"], [["&"]]) == "<table><tr><th>&lt;a&gt;</th></tr><tr><td>&amp;</td></tr></table>"


def test_verified_png_returns_what_the_file_holds(tmp_path: Path) -> None:
    image = torch.rand(3, 9, 10, generator=torch.Generator().manual_seed(0))
    saved = save_verified_png(image, tmp_path / "sub" / "x.png")
    assert torch.equal(to_uint8(saved), to_uint8(image))
    assert torch.equal(to_uint8(to_tensor(load_image(tmp_path / "sub" / "x.png").image)), to_uint8(image))


def test_attack_report_for_a_model_with_fewer_than_five_classes(tiny_images: torch.Tensor) -> None:
    model = make_tiny_model(seed=2, num_classes=3)
    labels = clean_labels(model, tiny_images[:1])
    result = ATTACKS["greedy"].run(model, tiny_images[:1], labels)
    report = attack_report(result, model.class_names, "x.png", "cpu")
    assert len(report["top5_before"]) == 3 and report["image"] == "x.png"
    assert len(report["changed_pixels"]) == report["l0_pixels"]
    assert report["model_invocations"] >= 2
    json.dumps(report)


def test_app_imports_nothing_from_the_cli_commands() -> None:
    tree = ast.parse((ROOT / "app.py").read_text())
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [m for m in modules if m.startswith("sparseviz.commands")]
