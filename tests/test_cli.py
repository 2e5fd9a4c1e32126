"""The `sparseviz` console script end to end: real model, bundled photo, saved files re-checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparseviz.attacks.base import to_uint8
from sparseviz.cli import main
from sparseviz.images.gallery import bundled_images
from sparseviz.images import load_image, to_tensor

REPORT_KEYS = {
    "model", "image", "true_label", "true_name", "true_confidence", "adv_label", "adv_name", "adv_confidence",
    "target_label", "success", "l0_pixels", "l0_entries", "l2", "linf", "seconds", "model_calls", "seed", "params",
}


@pytest.fixture(scope="module")
def chelsea() -> Path:
    return bundled_images()["chelsea"]


@pytest.mark.slow
def test_attack_writes_files_whose_numbers_match_the_saved_pngs(tmp_path, chelsea, real_model, capsys) -> None:
    out = tmp_path / "run"
    code = main(["attack", str(chelsea), "--out", str(out), "--seed", "3", "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["success"] is True and report["target_label"] is None and report["seed"] == 3

    original = to_uint8(to_tensor(load_image(out / "original.png").image))
    adversarial = to_uint8(to_tensor(load_image(out / "adversarial.png").image))
    assert original.shape == (3, 224, 224)
    changed = (original != adversarial)
    assert report["l0_pixels"] == int(changed.any(0).sum()) >= 1
    assert report["l0_entries"] == int(changed.sum())
    assert len(report["changed_pixels"]) == report["l0_pixels"]
    probs = real_model.predict_proba(adversarial.float()[None] / 255)[0]
    assert int(probs.argmax()) == report["adv_label"] != report["true_label"]
    assert abs(float(probs.max()) - report["adv_confidence"]) < 1e-4
    mask = to_uint8(to_tensor(load_image(out / "mask.png").image))
    assert int((mask[0] > 0).sum()) == report["l0_pixels"]
    assert "fooled" in capsys.readouterr().out


@pytest.mark.system  # a targeted run on the real model takes about half a minute
def test_targeted_attack_by_class_name(tmp_path, chelsea) -> None:
    out = tmp_path / "targeted"
    code = main(["attack", str(chelsea), "--out", str(out), "--target", "tabby", "--quiet"])
    report = json.loads((out / "report.json").read_text())
    assert report["target_label"] == 281 and report["target_name"] == "tabby"
    assert code == 0 and report["success"] and report["adv_label"] == 281


@pytest.mark.parametrize(
    "args, message",
    [
        (["attack", "missing.png", "--out", "x"], "not found"),
        (["attack", "{photo}", "--out", "x", "--model", "nope"], "unknown model 'nope'"),
        (["attack", "{photo}", "--out", "x", "--target", "not a class"], "unknown class"),
        (["attack", "{photo}", "--out", "x", "--target", "5000"], "out of range"),
        (["attack", "{photo}", "--out", "x", "--steps", "0"], "steps must be"),
        (["attack", "{photo}", "--out", "x", "--sparsity-weight", "-2"], "sparsity_weight must be"),
        (["attack", "{photo}", "--out", "x", "--device", "tpu"], "unknown device"),
        (["predict", "{junk}"], "junk.png"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path, chelsea, capsys) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    argv = [a.format(photo=chelsea, junk=junk) for a in args]
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert message in err[0]


def test_cuda_without_gpu_says_so(tmp_path, chelsea, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["predict", str(chelsea), "--device", "cuda"]) == 2
    assert "no GPU" in capsys.readouterr().err


def test_models_lists_the_offline_default(capsys) -> None:
    assert main(["models"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("efficientnet_lite0"))
    assert "weights available" in line


@pytest.mark.slow
def test_same_seed_gives_a_byte_identical_png(tmp_path, chelsea) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["attack", str(chelsea), "--out", str(out), "--steps", "10", "--seed", "7", "--quiet"]) in (0, 1)
        outputs.append((out / "adversarial.png").read_bytes())
    assert outputs[0] == outputs[1]
