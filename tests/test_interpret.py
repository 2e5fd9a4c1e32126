"""Interpretation: known-answer obscuring/leading, shared scale, eval mode, hooks, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from sparseviz.attacks.base import finalize
from sparseviz.explain.interpret import (
    ExplainConfig,
    explain,
    explain_pixels,
    find_cam_layer,
    guided_backprop_coverage,
    hooks_on,
    spearman,
)
from sparseviz.models import ImageClassifier

SIZE = 16


class TwoRegionNet(nn.Module):
    """Class 0 = red in the top-left 4x4 block, class 1 = green in the bottom-right 4x4 block.

    ``colour`` picks red and green into two channels, ReLU keeps them, fixed region masks
    weigh them (0.2 per unit of red, 1.0 per unit of green). Other classes sit far below.
    """

    def __init__(self) -> None:
        super().__init__()
        self.colour = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.colour.weight.zero_()
            self.colour.weight[0, 0] = 1.0  # red
            self.colour.weight[1, 1] = 1.0  # green
        self.act = nn.ReLU()
        masks = torch.zeros(2, SIZE, SIZE)
        masks[0, :4, :4] = 0.2
        masks[1, -4:, -4:] = 1.0
        self.register_buffer("masks", masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.act(self.colour(x))
        evidence = (features * self.masks).flatten(2).sum(2)  # (N, 2)
        rest = torch.full((x.shape[0], 3), -20.0, device=x.device)
        return torch.cat([evidence, rest], dim=1)


def two_region_model() -> ImageClassifier:
    return ImageClassifier(
        TwoRegionNet(), name="two-region", class_names=["red-tl", "green-br", "c2", "c3", "c4"],
        input_size=SIZE, resize_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), cam_layer="act",
    )


OBSCURING = [(0, 0), (1, 2), (2, 3), (3, 1)]
LEADING = [(12, 12), (13, 15), (14, 13), (15, 14)]


def two_region_result(model: ImageClassifier):
    """Red 0.8 on the top-left block (class 0). Remove red at OBSCURING, add green 0.6 at LEADING.

    Hand-computed logits: clean z0 = 0.2*0.8*16 = 2.56, z1 = 0; adversarial z0 = 0.2*0.8*12 = 1.92,
    z1 = 4*0.6 = 2.4 (fooled). Logit scale = max(2.56-1.92, 2.4) = 2.4. One obscuring revert
    recovers 0.16 (0.067 of the scale), one leading revert drops z1 by 0.6 (0.25 of the scale).
    On the maps the 16 red pixels tie above the 240 zeros: percentile rank 240/256 = 0.94 >= 0.9.
    """
    clean = torch.zeros(1, 3, SIZE, SIZE)
    clean[0, 0, :4, :4] = 0.8
    clean[0, 2] = 0.3  # blue is ignored by the model
    adv = clean.clone()
    for y, x in OBSCURING:
        adv[0, 0, y, x] = 0.0
    for y, x in LEADING:
        adv[0, 1, y, x] = 0.6
    return finalize(model, clean, adv, torch.tensor([0]), None, attack="hand", model_calls=torch.zeros(1),
                    seconds=0.0, params={})


@pytest.fixture(scope="module")
def region_model() -> ImageClassifier:
    return two_region_model()


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam", "saliency", "smoothgrad"])
def test_known_regions_give_known_contributions_and_labels(region_model, method):
    result = two_region_result(region_model)
    assert bool(result.success[0])
    exp = explain(region_model, result, method=method)
    by_pos = {(p.y, p.x): p for p in exp.pixels}
    assert set(by_pos) == set(OBSCURING) | set(LEADING)
    # centred logits over 5 classes: e_0 = 0.8 z_0 - 0.2 z_1 + const (and symmetrically for e_1), so
    # removing 0.8 red (z_0 -0.16) lowers e_0 by 0.128 and raises e_1 by 0.032; adding 0.6 green
    # (z_1 +0.6) raises e_1 by 0.48 and lowers e_0 by 0.12.
    for pos in OBSCURING:
        assert by_pos[pos].label == "obscuring", by_pos[pos]
        assert by_pos[pos].obscuring == pytest.approx(0.128, abs=1e-3)
        assert by_pos[pos].leading == pytest.approx(0.032, abs=1e-3)
    for pos in LEADING:
        assert by_pos[pos].label == "leading", by_pos[pos]
        assert by_pos[pos].obscuring == pytest.approx(0.12, abs=1e-3)
        assert by_pos[pos].leading == pytest.approx(0.48, abs=1e-3)
    assert sum(p.obscuring for p in exp.pixels) == pytest.approx(exp.total_drop, abs=1e-3)
    assert exp.completeness_error < 1e-3
    # group ablation: obscuring alone lowers the true class more, leading alone raises the adversarial class more
    obsc, lead = exp.ablation_row("obscuring"), exp.ablation_row("leading")
    assert obsc.true_drop == pytest.approx(4 * 0.128, abs=1e-3) and lead.true_drop == pytest.approx(4 * 0.12, abs=1e-3)
    assert lead.adv_rise > obsc.adv_rise and exp.holds
    assert exp.ablation_row("all").predicted == 1
    assert exp.agreement is not None and -1 <= exp.agreement <= 1
    if method == "integrated_gradients":  # the maps sit exactly on the red/green evidence
        assert exp.agreement == pytest.approx(1.0)
    assert "4 pixels" in exp.sentence and "hide 'red-tl' evidence" in exp.sentence


def test_shared_colour_scale_is_shared(region_model):
    exp = explain(region_model, two_region_result(region_model), method="gradcam")
    assert set(exp.maps) == {("clean", "true"), ("clean", "adv"), ("adv", "true"), ("adv", "adv")}
    assert exp.vmin == 0.0
    assert exp.vmax == pytest.approx(max(float(m.max()) for m in exp.maps.values()))
    assert all(float(m.min()) >= exp.vmin and float(m.max()) <= exp.vmax for m in exp.maps.values())


def test_failed_attack_is_refused(region_model):
    clean = torch.zeros(1, 3, SIZE, SIZE)
    clean[0, 0, :8, :8] = 0.5
    result = finalize(region_model, clean, clean.clone(), torch.tensor([0]), None, attack="hand",
                      model_calls=torch.zeros(1), seconds=0.0, params={})
    with pytest.raises(ValueError, match="not fooled"):
        explain(region_model, result)


def test_eval_mode_enforced_and_restored(region_model):
    result = two_region_result(region_model)
    seen = []
    handle = region_model.network.act.register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        region_model.network.training = True  # someone flipped a flag behind the wrapper's back
        explain_pixels(region_model, result)
    finally:
        handle.remove()
    assert seen and not any(seen)
    assert region_model.network.training is True
    region_model.network.training = False


def test_no_hooks_left_even_after_an_error(region_model, monkeypatch):
    result = two_region_result(region_model)
    for method in ("gradcam", "guided_gradcam", "integrated_gradients", "saliency", "smoothgrad"):
        explain(region_model, result, method=method)
        assert list(hooks_on(region_model)) == []
    import captum.attr

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(captum.attr.LayerAttribution, "interpolate", boom)
    with pytest.raises(RuntimeError, match="boom"):
        explain(region_model, result, method="gradcam")
    assert list(hooks_on(region_model)) == []


def test_guided_backprop_caveat_detected(region_model, tiny_model):
    relus, others = guided_backprop_coverage(region_model)
    assert relus == 1 and others == []
    six = ImageClassifier(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(4, 3)), name="six", class_names=["a", "b", "c"], input_size=8,
                          resize_size=8, mean=(0, 0, 0), std=(1, 1, 1), cam_layer="0")
    assert guided_backprop_coverage(six)[1] == ["ReLU6"]
    with torch.no_grad():  # class 0 = mean red, class 1 = 1 - mean red
        conv, linear = six.network[0], six.network[4]
        conv.weight.zero_(), conv.bias.zero_(), linear.weight.zero_(), linear.bias.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        linear.weight[0, 0], linear.weight[1, 0], linear.bias[1], linear.bias[2] = 1.0, -1.0, 1.0, -5.0
    clean = torch.full((1, 3, 8, 8), 0.8)
    found = clean.clone()
    found[0, 0, :4] = 0.0  # mean red 0.4: class 1 wins
    label = 0
    result = finalize(six, clean, found, torch.tensor([label]), None, attack="hand", model_calls=torch.zeros(1),
                      seconds=0.0, params={})
    exp = explain(six, result, method="guided_gradcam")
    assert any("ReLU6" in w for w in exp.warnings)
    with pytest.raises(ValueError, match="ReLU6"):
        explain(six, result, method="guided_gradcam", config=ExplainConfig(strict_guided=True))


def test_real_model_guided_caveat(real_model):
    relus, others = guided_backprop_coverage(real_model)
    assert "ReLU6" in others or relus == 0


def _tiny_results(tiny_model, tiny_images):
    """One-pixel-ish hand attacks on the tiny model: push a 4x4 block until it flips."""
    results = []
    for i in range(len(tiny_images)):
        clean = tiny_images[i : i + 1]
        label = int(tiny_model.predict_proba(clean).argmax())
        for value in (0.0, 1.0):
            for size in (4, 8, 12, 16):
                adv = clean.clone()
                adv[0, :, :size, :size] = value
                result = finalize(tiny_model, clean, adv, torch.tensor([label]), None, attack="hand",
                                  model_calls=torch.zeros(1), seconds=0.0, params={})
                if bool(result.success[0]):
                    results.append(result)
                    break
            else:
                continue
            break
    return results


def test_concurrent_calls_equal_serial(tiny_model, tiny_images):
    results = _tiny_results(tiny_model, tiny_images)
    if len(results) < 2:
        pytest.skip("tiny model did not flip")
    methods = ["gradcam", "guided_gradcam", "integrated_gradients", "smoothgrad"]
    jobs = [(r, m) for r in results[:2] for m in methods]
    serial = [explain(tiny_model, r, method=m) for r, m in jobs]
    parallel: list = [None] * len(jobs)
    errors: list = []

    def work(k: int) -> None:
        try:
            parallel[k] = explain(tiny_model, *jobs[k][:1], method=jobs[k][1])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(serial, parallel):
        for key in a.maps:
            np.testing.assert_allclose(a.maps[key], b.maps[key], rtol=1e-5, atol=1e-7)
        assert [p.as_dict() for p in a.pixels] == [p.as_dict() for p in b.pixels]
    assert list(hooks_on(tiny_model)) == []


def test_inputs_not_mutated(region_model):
    result = two_region_result(region_model)
    before = result.adversarials.clone(), result.originals.clone()
    explain(region_model, result, method="integrated_gradients", config=ExplainConfig(ig_steps=8, ig_batch_size=3))
    assert torch.equal(before[0], result.adversarials) and torch.equal(before[1], result.originals)
    assert result.originals.grad is None


def test_json_and_figures_written(region_model, tmp_path):
    import json

    from PIL import Image

    from sparseviz.commands.explain import write_explanation
    from sparseviz.views.figures import save_figures

    result = two_region_result(region_model)
    exp = explain(region_model, result, method="gradcam")
    data = json.loads(write_explanation(exp, tmp_path / "explanation.json").read_text())
    assert len(data["pixels"]) == 8 and data["colour_range"] == [exp.vmin, exp.vmax]
    assert {row["group"] for row in data["ablation"]} == {"clean", "all", "obscuring", "leading"}
    assert data["holds"] is True and data["sentence"] == exp.sentence and data["joint"]["pixels"] == 8
    paths = save_figures(exp, result, tmp_path)
    assert [p.name for p in paths] == ["maps.png", "pixels.png", "ablation.png", "contributions.png"]
    assert all(Image.open(p).size[0] > 100 for p in paths)
    cheap = explain_pixels(region_model, result)
    assert cheap.maps == {} and cheap.agreement is None
    assert [p.label for p in cheap.pixels] == [p.label for p in exp.pixels]
    json.dumps(cheap.to_dict())  # NaN-free


def test_spearman_agreement_rule():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 2]), np.array([1.0, 2])) is None  # too few pixels
    assert spearman(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])) is None  # a flat map ranks nothing


def test_gradcam_layer_is_finer_than_the_default(real_model):
    name = find_cam_layer(real_model, 14)
    seen = {}
    layer = real_model.network.get_submodule(name)
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    try:
        with torch.no_grad():
            real_model(torch.zeros(1, 3, 224, 224))
    finally:
        handle.remove()
    assert seen["shape"][-1] >= 14 > 7
    assert list(hooks_on(real_model)) == []
