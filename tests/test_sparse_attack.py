"""Contract and correctness tests for the reparameterized sparse attack."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sparseviz.attacks import ATTACKS
from sparseviz.attacks.base import to_uint8
from sparseviz.attacks.sparse import TARGETED, UNTARGETED, SparseConfig, SparseTuning, sparse_attack
from sparseviz.models import ImageClassifier

FAST = SparseConfig(steps=30).retuned(patience=10)


class PixelDetector(nn.Module):
    """Class 1 fires when enough of a few known pixels are bright; everything else is a weak distractor.

    logit1 - logit0 = strength * sum(brightness of key pixels) + 0.01 * mean(image) - bias,
    so the minimal attack from a black image is exactly ``needed`` of the key pixels.
    """

    def __init__(self, key_pixels: list[tuple[int, int]], needed: int, size: int = 16) -> None:
        super().__init__()
        weight = torch.zeros(1, 3, size, size)
        for y, x in key_pixels:
            weight[0, :, y, x] = 1.0
        self.register_buffer("weight", weight)
        self.register_buffer("needed", torch.tensor(float(needed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.5 + 0.5  # undo the wrapper's normalization (mean 0.5, std 0.5)
        # A key pixel counts as lit when all three channels are near white.
        lit = (x * self.weight).sum(dim=1).flatten(1).sum(dim=1) / 3.0
        score = 4.0 * (lit - (self.needed - 0.5)) + 0.01 * x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(score), score], dim=1)


def detector_model(key_pixels: list[tuple[int, int]], needed: int) -> ImageClassifier:
    return ImageClassifier(
        PixelDetector(key_pixels, needed), name="detector", class_names=["off", "on"],
        input_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
    )


@pytest.mark.parametrize("needed", [1, 2])
def test_finds_the_known_minimal_pixel_set(needed: int) -> None:
    keys = [(3, 4), (10, 12), (7, 1)]
    model = detector_model(keys, needed)
    black = torch.zeros(1, 3, 16, 16)
    result = sparse_attack(model, black, torch.tensor([0]), config=FAST)
    assert bool(result.success[0])
    assert int(result.l0_pixels[0]) == needed
    changed = {tuple(p) for p in result.pixel_mask[0].nonzero().tolist()}
    assert changed <= set(keys)


def test_result_contract_on_tiny_model(tiny_model: ImageClassifier, tiny_images: torch.Tensor) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    before = tiny_images.clone()
    result = sparse_attack(tiny_model, tiny_images, labels, config=FAST)
    assert torch.equal(tiny_images, before), "inputs must not be mutated"
    assert result.adversarials.shape == tiny_images.shape
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    assert torch.equal(result.adversarials, to_uint8(result.adversarials).float() / 255), "8-bit exact"
    # success re-checked by a fresh evaluation of the returned images
    fresh = tiny_model.predict_proba(result.adversarials).argmax(1)
    assert torch.equal(result.success, fresh != labels)
    assert result.success.all()
    # failed images would be returned unchanged; successful ones change at least one pixel
    assert (result.l0_pixels[result.success] >= 1).all()
    assert (result.l0_entries >= result.l0_pixels).all() and (result.l0_entries <= 3 * result.l0_pixels).all()
    assert (result.model_calls > 0).all()
    assert all(p.grad is None for p in tiny_model.parameters())
    assert not tiny_model.training


def test_same_seed_same_result_and_seed_matters_only_through_config(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    first = sparse_attack(tiny_model, tiny_images, labels, config=FAST)
    second = sparse_attack(tiny_model, tiny_images, labels, config=FAST)
    assert torch.equal(first.adversarials, second.adversarials)


def test_batch_independence(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    batched = sparse_attack(tiny_model, tiny_images, labels, config=FAST)
    for index in range(tiny_images.shape[0]):
        alone = sparse_attack(tiny_model, tiny_images[index : index + 1], labels[index : index + 1], config=FAST)
        assert torch.equal(alone.adversarials[0], batched.adversarials[index])


def test_targeted_reaches_the_target(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    targets = (labels + 3) % tiny_model.num_classes
    result = sparse_attack(tiny_model, tiny_images, labels, targets=targets, config=dataclasses.replace(FAST, steps=60))
    assert torch.equal(result.success, result.adv_labels == targets)
    assert result.success.float().mean() >= 0.75


def test_relaxed_view_follows_the_attack_kind_unless_the_tuning_says_otherwise(tiny_model, tiny_images) -> None:
    # The untargeted preset descends on the 8-bit image alone (1 model call per step); the
    # targeted one adds the soft-gated image (2 per step); an explicit change wins over both.
    assert not UNTARGETED.relaxed_view and TARGETED.relaxed_view
    images = tiny_images[:2]
    labels = tiny_model.predict_proba(images).argmax(1)
    targets = (labels + 3) % tiny_model.num_classes
    steps = 4
    config = SparseConfig(steps=steps).retuned(patience=10_000, prune=False, settle_steps=0)
    untargeted = sparse_attack(tiny_model, images, labels, config=config)
    targeted = sparse_attack(tiny_model, images, labels, targets=targets, config=config)
    forced = sparse_attack(tiny_model, images, labels, config=config.retuned(relaxed_view=True))
    # Same fixed overhead (start and final checks) in all three runs, so the step cost shows in the difference.
    assert (targeted.model_calls - untargeted.model_calls).tolist() == [steps] * 2
    assert torch.equal(forced.model_calls, targeted.model_calls)


def test_the_preset_matches_the_kind_and_an_explicit_tuning_or_change_wins() -> None:
    assert UNTARGETED != TARGETED
    assert (SparseTuning.untargeted(), SparseTuning.targeted()) == (UNTARGETED, TARGETED)
    # A targeted run shrinks hundreds of pixels for longer: more patience, settle steps, a warmer end.
    assert TARGETED.patience > UNTARGETED.patience and TARGETED.settle_steps > UNTARGETED.settle_steps
    assert TARGETED.temperature_end > UNTARGETED.temperature_end
    assert (SparseConfig().tuning_for(False), SparseConfig().tuning_for(True)) == (UNTARGETED, TARGETED)
    mine = dataclasses.replace(UNTARGETED, patience=7)
    assert SparseConfig(tuning=mine).tuning_for(True) == mine  # explicit: the same for both kinds
    changed = SparseConfig().retuned(patience=3)
    assert changed.tuning_for(True) == dataclasses.replace(TARGETED, patience=3)  # a change keeps the rest of the preset
    assert changed.tuning_for(False) == dataclasses.replace(UNTARGETED, patience=3)
    assert SparseConfig(tuning=mine).retuned(patience=3).tuning_for(False).patience == 3
    assert SparseConfig(tuning_changes={"patience": 3}) == changed  # a mapping or pairs, stored the same way
    assert changed.total_steps_for(True) == changed.steps + TARGETED.settle_steps
    hash(changed)  # configs key caches (warm-up, jobs)


def test_unknown_or_invalid_tuning_is_refused_with_a_clear_message(tiny_model, tiny_images) -> None:
    with pytest.raises(ValueError, match="SparseTuning has no field 'nope'; fields: mask_lr"):
        SparseConfig().retuned(nope=1)
    with pytest.raises(ValueError, match="sparse has no option 'patience'"):
        sparse_attack(tiny_model, tiny_images[:1], torch.tensor([0]), patience=3)
    with pytest.raises(ValueError, match="patience must be a number in"):
        SparseConfig().retuned(patience=0)
    with pytest.raises(ValueError, match="temperature_end"):
        SparseTuning(temperature_start=0.5, temperature_end=0.8)
    with pytest.raises(ValueError, match="tuning must be a SparseTuning"):
        SparseConfig(tuning={"patience": 3})  # type: ignore[arg-type]


def test_the_result_records_the_tuning_it_ran_on(tiny_model, tiny_images) -> None:
    image = tiny_images[:1]
    label = tiny_model.predict_proba(image).argmax(1)
    config = SparseConfig(steps=3).retuned(prune=False)
    result = sparse_attack(tiny_model, image, label, targets=(label + 1) % 10, config=config)
    assert result.params["tuning"] == dataclasses.asdict(config.tuning_for(True))
    assert result.params["steps"] == 3


def test_already_misclassified_image_is_left_alone(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    wrong = (labels + 1) % tiny_model.num_classes
    result = sparse_attack(tiny_model, tiny_images, wrong, config=FAST)
    assert result.success.all()
    assert (result.l0_pixels == 0).all()


def test_stop_request_returns_what_it_has_marked(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    seen: list[int] = []
    result = sparse_attack(
        tiny_model, tiny_images, labels, config=FAST,
        progress=lambda info: seen.append(info.step), should_stop=lambda: len(seen) >= 3,
    )
    assert result.interrupted
    assert seen == [1, 2, 3]
    fresh = tiny_model.predict_proba(result.adversarials).argmax(1)
    assert torch.equal(result.success, fresh != labels)


def test_sparsity_weight_trades_pixels_for_confidence() -> None:
    # Each lit key pixel adds 4 logits; 3 are needed to cross the boundary (margin -2).
    # Weight 1 stops at the boundary; weight 0.1 asks for ln(10) logits (capped at kappa=2)
    # of confidence and so pays one more pixel for a more confident flip.
    keys = [(y, x) for y in range(2, 14, 3) for x in range(2, 14, 3)]
    model = detector_model(keys, 3)
    black = torch.zeros(1, 3, 16, 16)
    counts, confidences = [], []
    for weight in (0.1, 1.0, 4.0):
        result = sparse_attack(model, black, torch.tensor([0]), config=dataclasses.replace(FAST, sparsity_weight=weight))
        assert bool(result.success[0])
        counts.append(int(result.l0_pixels[0]))
        confidences.append(float(result.adv_confidence[0]))
    assert counts == [4, 3, 3]
    assert confidences[0] > confidences[1]
    assert SparseConfig(sparsity_weight=0.0).required_margin(UNTARGETED) > SparseConfig(sparsity_weight=0.5).required_margin(UNTARGETED)


@pytest.mark.parametrize("field, value", [("steps", 0), ("sparsity_weight", -1.0), ("sparsity_weight", float("nan")),
                                          ("seed", -1)])
def test_impossible_parameters_are_refused_with_the_valid_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SparseConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("mask_lr", 0.0), ("patience", 0), ("swap_proposals", 0), ("swap_rounds", -1),
                                          ("exact_cap", -1), ("cycle_gain", 1.5), ("relaxed_view", "yes")])
def test_impossible_tuning_is_refused_with_the_valid_range(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SparseTuning(**{field: value})
    with pytest.raises(ValueError, match=field):
        SparseConfig(tuning_changes={field: value})


def test_bad_images_are_refused(tiny_model) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        sparse_attack(tiny_model, torch.zeros(3, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sparse_attack(tiny_model, torch.full((1, 3, 32, 32), 255.0), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels"):
        sparse_attack(tiny_model, torch.zeros(1, 3, 32, 32), torch.tensor([0, 1]))


def test_registered_for_cli_app_and_bench() -> None:
    assert ATTACKS["sparse"].run is sparse_attack
    assert ATTACKS["sparse"].config_type is SparseConfig
