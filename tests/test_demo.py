"""The classroom sentences, presets and server warm-up, on hand-made probabilities and the tiny model."""

from __future__ import annotations

import torch

from conftest import make_tiny_model
from sparseviz.app import demo, warmup
from sparseviz.attacks import SparseConfig
from sparseviz.attacks.base import AttackResult
from sparseviz.images.gallery import bundled_images
from sparseviz.models import imagenet_categories

NAMES = ["espresso", "cup", "soup bowl", "tabby"]


def _probs(*values: float) -> torch.Tensor:
    return torch.tensor(values)


def test_percent_never_shows_a_nonzero_share_as_zero():
    assert demo.percent(0.946) == "95%"
    assert demo.percent(0.004) == "0.4%"
    assert demo.percent(0.0) == "0%"


def test_clean_verdict_says_how_sure_and_the_runner_up():
    line = demo.clean_verdict(_probs(0.946, 0.016, 0.02, 0.018), NAMES)
    assert "**95%** sure this is **espresso**" in line and "runner-up: soup bowl 2%" in line
    assert "Near tie" not in line


def test_near_tie_is_said_next_to_the_result():
    probs = _probs(0.391, 0.346, 0.2, 0.063)  # chelsea: tiger cat 39% / Egyptian cat 35%
    assert demo.is_near_tie(probs)
    assert "Near tie" in demo.clean_verdict(probs, NAMES)
    assert not demo.is_near_tie(_probs(0.5, 0.39, 0.1, 0.01))


def _result(success: bool, pixels: int) -> AttackResult:
    original = torch.zeros(1, 3, 4, 4)
    adversarial = original.clone()
    adversarial.view(1, 3, -1)[0, 0, :pixels] = 1.0
    clean = _probs(0.946, 0.016, 0.02, 0.018)[None]
    adv = _probs(0.276, 0.1, 0.288, 0.336)[None] if success else clean
    return AttackResult("sparse", "m", original, adversarial, torch.tensor([0]), None, torch.tensor([success]),
                        clean, adv, torch.tensor([10]), 1.0)


def test_flip_headline():
    assert demo.flip_headline(_result(True, 3), NAMES) == "espresso 95% -> tabby 34% with 3 pixels"
    assert demo.flip_headline(_result(True, 1), NAMES).endswith("with 1 pixel")
    assert demo.flip_headline(_result(False, 0), NAMES) == "espresso 95%: not fooled"


def test_presets_use_bundled_photos_and_real_classes():
    photos, classes = bundled_images(), set(imagenet_categories())
    assert demo.DEFAULT_PHOTO in photos
    lessons = {(p.target is None, p.sparsity_weight) for p in demo.PRESETS}
    assert any(p.target for p in demo.PRESETS) and len(lessons) >= 3  # a flip, a targeted run, weights high/low
    for preset in demo.PRESETS:
        assert preset.photo in photos
        assert preset.target is None or preset.target in classes


def test_warmup_result_is_the_same_attack(monkeypatch, one_torch_thread):
    """The prefetched default flip equals a fresh attack with the same photo, model and settings."""
    from sparseviz.app import warmup as module
    from sparseviz.attacks import sparse_attack

    model = make_tiny_model()
    monkeypatch.setattr(module, "load_model", lambda name, device="cpu": model)
    monkeypatch.setattr(module, "_FUTURES", {})
    config = SparseConfig(steps=10)
    monkeypatch.setattr(module, "SparseConfig", lambda: config)
    done: list[float] = []
    future = warmup.start(force=True, on_done=lambda outcome, seconds: done.append(seconds))
    assert future is not None
    assert warmup.start(force=True) is future  # once per process
    result = warmup.prefetched(warmup.default_key())
    assert result is not None and warmup.is_ready() and len(done) == 1
    image = warmup.default_image(model)
    fresh = sparse_attack(model, image, model.predict_proba(image).argmax(1), config=config)
    assert torch.equal(result.adversarials, fresh.adversarials)
    other = warmup.WarmKey("chelsea", "tiny", "cpu", config)
    assert warmup.prefetched(other) is None  # only the defaults are prefetched


def test_warmup_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(warmup.DISABLE_ENV, "1")
    assert warmup.start() is None
