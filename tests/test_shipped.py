"""The shipped demo results: matched to exactly their runs, rebuilt from the PNG, refused when wrong or stale."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_model
from sparseviz.app import demo, precompute, shipped
from sparseviz.app.settings import Settings
from sparseviz.attacks import SparseConfig
from sparseviz.models import DEFAULT_MODEL

DEFAULT = shipped.all_shipped()[0]


def test_every_preset_has_one_shipped_run_and_the_default_demo_is_first():
    assert DEFAULT.preset == demo.PRESETS[0] and DEFAULT.preset.photo == demo.DEFAULT_PHOTO
    assert DEFAULT.config() == SparseConfig()  # the page's defaults, not a tuned copy
    names = {item.name for item in shipped.all_shipped()}
    for preset in demo.PRESETS:
        assert shipped.Shipped(preset, shipped.demo_settings(preset)).name in names


def test_find_matches_only_the_exact_run():
    settings = shipped.demo_settings(demo.PRESETS[0])
    assert shipped.find("bundled:coffee", DEFAULT_MODEL, settings, quick=False) == DEFAULT
    assert shipped.find("bundled:coffee", DEFAULT_MODEL, settings, quick=True) is None  # quick mode: other pixels
    assert shipped.find("bundled:coffee", "resnet18", settings, quick=False) is None
    assert shipped.find("upload:abc", DEFAULT_MODEL, settings, quick=False) is None
    for other in (Settings(1.0, 100, 1, None, "auto"), Settings(1.0, 50, 0, None, "auto"),
                  Settings(1.0, 100, 0, "banana", "auto")):
        assert shipped.find("bundled:coffee", DEFAULT_MODEL, other, quick=False) is None
    targeted = next(p for p in demo.PRESETS if p.target)
    found = shipped.find(f"bundled:{targeted.photo}", DEFAULT_MODEL, shipped.demo_settings(targeted), quick=False)
    assert found is not None and found.preset.target == targeted.target


@pytest.fixture
def tiny_demo(tmp_path, monkeypatch, one_torch_thread):
    """The default demo made for the tiny model in a temporary folder."""
    monkeypatch.setattr(shipped, "DEMO_DIR", tmp_path)
    model = make_tiny_model()
    item = shipped.Shipped(DEFAULT.preset, Settings(4.0, 30, 0, None, "auto"))
    monkeypatch.setattr(shipped, "config_digest", lambda config, targeted: "tiny")
    result = precompute.regenerate(item, model)
    assert bool(result.success[0])
    shipped.write(item, model, result)
    return item, model, result


def test_a_shipped_result_is_rebuilt_from_its_png(tiny_demo):
    item, model, result = tiny_demo
    rebuilt = shipped.verified(item, model)
    assert torch.equal(rebuilt.adversarials, result.adversarials) and torch.equal(rebuilt.originals, result.originals)
    assert torch.equal(rebuilt.adv_probs, result.adv_probs) and bool(rebuilt.success[0])
    assert rebuilt.summary(0)["l0_pixels"] == result.summary(0)["l0_pixels"]
    assert "checked on this machine" in (shipped.note(rebuilt) or "") and shipped.note(result) is None
    assert not precompute.is_stale(item, result)


def test_numbers_come_from_the_png_not_the_report(tiny_demo):
    item, model, result = tiny_demo
    report = json.loads(item.report.read_text())
    report["result"]["l0_pixels"] = 1
    report["result"]["adv_confidence"] = 0.999
    item.report.write_text(json.dumps(report))
    rebuilt = shipped.verified(item, model)
    assert rebuilt.summary(0)["l0_pixels"] == result.summary(0)["l0_pixels"]
    assert rebuilt.summary(0)["adv_confidence"] == result.summary(0)["adv_confidence"]


@pytest.mark.parametrize("damage", ["png", "json", "missing", "model", "classes"])
def test_a_wrong_or_damaged_demo_is_not_used(tiny_demo, damage):
    item, model, _ = tiny_demo
    if damage == "png":
        item.png.write_bytes(item.png.read_bytes()[:100])
    elif damage == "json":
        item.report.write_text("{not json")
    elif damage == "missing":
        item.png.unlink()
    elif damage == "model":
        model = make_tiny_model(seed=3)  # another network under the same name: other classes here
    else:
        report = json.loads(item.report.read_text())
        report["result"]["adv_label"] = (report["result"]["adv_label"] + 1) % 10
        item.report.write_text(json.dumps(report))
    with pytest.raises(shipped.NotUsable):
        shipped.verified(item, model)


def test_the_digest_covers_the_tuning_a_run_uses(monkeypatch):
    before = shipped.config_digest(DEFAULT.config(), False)
    assert shipped.config_digest(DEFAULT.config().retuned(patience=99), False) != before
    assert shipped.config_digest(DEFAULT.config(), True) != before
    monkeypatch.setattr(SparseConfig, "tuning_for", lambda self, targeted: "another preset")
    assert shipped.config_digest(DEFAULT.config(), False) != before  # a new preset, the config unchanged


def test_a_tuning_change_retires_the_shipped_files(tiny_demo, monkeypatch):
    item, model, _ = tiny_demo
    monkeypatch.setattr(shipped, "config_digest", lambda config, targeted: "changed")
    with pytest.raises(shipped.NotUsable, match="tuning changed"):
        shipped.verified(item, model)


@pytest.mark.slow
def test_shipped_demos_exist_and_hold_on_the_real_model(real_model):
    """What the page does at load: each shipped PNG still fools the model here, into the shipped class."""
    for item in shipped.all_shipped():
        assert item.png.stat().st_size < 150_000 and item.report.stat().st_size < 40_000, item.name
        result = shipped.verified(item, real_model)
        report = json.loads(item.report.read_text())["result"]
        summary = result.summary(0, real_model.class_names)
        assert summary["success"] and summary["l0_pixels"] == report["l0_pixels"], item.name
        if item.preset.target:
            assert summary["adv_name"] == item.preset.target


@pytest.mark.slow
def test_the_shipped_default_demo_is_not_stale(real_model):
    """A fresh run of the default demo, as the page runs it, gives exactly the shipped PNG's pixels.

    Fails after a change to the attack or its tuning: run ``python -m sparseviz.app.precompute``.
    """
    fresh = precompute.regenerate(DEFAULT, real_model)
    assert not precompute.is_stale(DEFAULT, fresh), "stale: run python -m sparseviz.app.precompute"


@pytest.mark.slow
def test_the_page_shows_the_shipped_default_demo_without_a_click():
    """A fresh session on the default photo and settings sees the flip at once, no attack run."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=300).run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    report = json.loads(DEFAULT.report.read_text())["result"]
    assert str(shown["pixels changed"]) == str(report["l0_pixels"])
    assert any("Precomputed with sparseviz" in c.value for c in at.caption)
    assert "job" not in at.session_state or at.session_state["job"].kind != "attack"  # no attack was queued
    targeted = next(number for number, preset in enumerate(demo.PRESETS) if preset.target)
    at.button(key=f"preset_{targeted}").click().run()  # "Try these": the targeted preset, at once too
    assert not at.exception, at.exception
    assert any(demo.PRESETS[targeted].target in m.value for m in at.markdown if "sv-headline" in m.value)
    assert any("Precomputed with sparseviz" in c.value for c in at.caption)
    assert "job" not in at.session_state or at.session_state["job"].kind != "attack"
