"""Survival under everyday processing: transforms keep shape and 8-bit range, one model call per image,
a clean image stays clean, and the audit's CSV and report carry the columns and the table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sparseviz.audit import survival
from sparseviz.audit.run import AUDIT_COLUMNS, run_audit, write_audit
from sparseviz.attacks import SparseConfig
from sparseviz.images import save_png
from sparseviz.images.folders import load_folder
from sparseviz.images.processing import EVERYDAY, half_and_back, jpeg, median3, process_all
from sparseviz.models import count_invocations
from tests.conftest import make_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(count: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(count, 3, size, size, generator=generator) * 255) / 255


def test_every_transform_keeps_shape_range_and_8_bits() -> None:
    images = _images(2, 30)
    for name, (_, transform) in EVERYDAY.items():
        out = transform(images)
        assert out.shape == images.shape, name
        assert out.min() >= 0 and out.max() <= 1, name
        assert torch.equal(torch.round(out * 255) / 255, out), f"{name} is not 8-bit exact"
    assert process_all(images).shape == (len(EVERYDAY) * 2, 3, 30, 30)


def test_transforms_do_what_they_say() -> None:
    flat = torch.full((1, 3, 16, 16), 0.4)
    flat = torch.round(flat * 255) / 255
    spiked = flat.clone()
    spiked[0, :, 8, 8] = 1.0  # one changed pixel: the sparse attack's kind
    assert torch.equal(median3(spiked), flat), "a 3x3 median removes an isolated pixel"
    assert torch.allclose(half_and_back(flat), flat), "a flat image survives a resize"
    assert (jpeg(75)(_images(1)) != _images(1)).any(), "JPEG q75 is lossy"
    with pytest.raises(ValueError, match="quality"):
        jpeg(0)
    with pytest.raises(ValueError, match="expected float images"):
        median3(torch.zeros(3, 8, 8))


def test_one_model_call_and_a_clean_image_stays_clean() -> None:
    model = make_tiny_model()
    image = _images(1)[0]
    label = int(model(image[None]).argmax())
    with count_invocations() as count:
        outcomes = survival.survival(model, image, image, label)  # "adversarial" = the clean image itself
    assert count.value == 1
    assert [o.transform for o in outcomes] == list(EVERYDAY)
    for outcome in outcomes:
        assert outcome.fools == (not outcome.clean_ok)  # same image both ways: same answer
        assert outcome.image.shape == image.shape
    stays = [o for o in outcomes if o.clean_ok]
    assert stays and all(not o.fools for o in stays)
    with pytest.raises(ValueError, match="one size"):
        survival.survival(model, image, _images(1, 16)[0], label)


def test_audit_csv_and_report_carry_survival(tmp_path: Path) -> None:
    model = make_tiny_model()
    generator = torch.Generator().manual_seed(3)
    for i in range(3):
        save_png(torch.rand(3, 32, 32, generator=generator), tmp_path / "in" / f"p{i}.png")
    report = run_audit(model, load_folder(tmp_path / "in", model), out=tmp_path / "out", config=SparseConfig(steps=15))
    write_audit(report, tmp_path / "out")
    with (tmp_path / "out" / "audit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(survival.columns()) <= set(rows[0]) and list(rows[0]) == AUDIT_COLUMNS
    flips = [r for r in rows if r["success"] == "1"]
    assert flips
    for row in flips:
        for name in EVERYDAY:
            assert row[f"survives_{name}"] in ("0", "1") and row[f"class_{name}"].startswith("class")
            assert (row[f"class_{name}"] != row["true_name"]) == (row[f"survives_{name}"] == "1")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Does it survive everyday processing?" in text and "expected to break" in text
    for title, _ in EVERYDAY.values():
        assert title in text and title in (tmp_path / "out" / "report.html").read_text()
