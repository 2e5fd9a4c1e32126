"""`sparseviz explain` end to end on a bundled photo: JSON, CSV and PNG files whose numbers agree."""

from __future__ import annotations

import csv
import json

import pytest

from sparseviz.cli import main
from sparseviz.images.gallery import bundled_images
from sparseviz.explain.proof import VERDICTS


@pytest.mark.slow
def test_explain_writes_json_csv_and_figures(tmp_path, real_model, capsys) -> None:
    out = tmp_path / "why"
    code = main(["explain", str(bundled_images()["chelsea"]), "--out", str(out), "--method", "saliency"])
    assert code == 0
    data = json.loads((out / "explanation.json").read_text())
    with open(out / "pixels.csv") as handle:
        pixels = list(csv.DictReader(handle))
    assert len(pixels) == len(data["pixels"]) == data["attack"]["l0_pixels"] >= 1
    assert sum(data["counts"].values()) == len(pixels)
    total = sum(float(p["obscuring"]) for p in pixels)
    assert total == pytest.approx(data["total_drop"], abs=data["completeness_error"] + 1e-4)
    assert {r["group"] for r in csv.DictReader(open(out / "ablation.csv"))} == {"clean", "obscuring", "leading", "all"}
    for name in ("maps.png", "pixels.png", "ablation.png", "contributions.png"):
        assert (out / name).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert data["sentence"] in printed and f"split {VERDICTS[data['verdict']]} on this image" in printed
    assert data["holds"] == (data["verdict"] == "holds")
