"""The swap search: it must find smaller solutions that pruning cannot, and never return a worse one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_result_contract, clean_labels
from sparseviz.attacks.base import AttackProgress
from sparseviz.attacks.sparse import UNTARGETED, SparseConfig, sparse_attack
from sparseviz.attacks.sparse.checks import Checker
from sparseviz.attacks.sparse.swaps import shrink_by_swaps
from sparseviz.models import ImageClassifier

HEAVY = (12, 3)
LIGHT = [(2, 2), (5, 9), (9, 13)]


class WeightedPixels(nn.Module):
    """Class 1 scores the brightness of a few key pixels: one heavy pixel alone flips the
    class, while the light ones are needed three at a time. From three light pixels no
    pixel can be dropped, so only a swap reaches the one-pixel solution."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        weight = torch.full((1, size, size), 0.002)  # a faint pull everywhere, so every pixel has a gradient
        weight[0, HEAVY[0], HEAVY[1]] = 3.5
        for y, x in LIGHT:
            weight[0, y, x] = 1.2
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = (x * 0.5 + 0.5).mean(dim=1)  # undo the wrapper's normalization
        score = (brightness * self.weight).flatten(1).sum(dim=1) - 3.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.fixture(scope="module")
def weighted_model() -> ImageClassifier:
    return ImageClassifier(
        WeightedPixels(), name="weighted", class_names=["off", "on"],
        input_size=16, resize_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
    )


def margins_of(model: ImageClassifier, batch: torch.Tensor, label: torch.Tensor, target: None) -> tuple[torch.Tensor, torch.Tensor]:
    checker = Checker(model, label.reshape(1), target, torch.zeros(1, dtype=torch.long))
    return checker.margins(batch, torch.zeros(batch.shape[0], dtype=torch.long))


def light_solution() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image = torch.zeros(3, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    for y, x in LIGHT:
        mask[y, x] = True
    return image, mask, torch.ones(3, 16, 16)


def test_swaps_reach_the_single_pixel_that_pruning_cannot(weighted_model) -> None:
    image, mask, values = light_solution()
    label = torch.tensor(0)
    adversarial = torch.where(mask, values, image)
    reverted = [torch.where(mask & ~(torch.arange(256).view(16, 16) == y * 16 + x), values, image) for y, x in LIGHT]
    margins, fooled = margins_of(weighted_model, torch.stack([adversarial, *reverted]), label, None)
    assert fooled.tolist() == [True, False, False, False], "the start must be minimal for pruning"

    found, colours, calls = shrink_by_swaps(
        weighted_model, image, mask, values, label, None, required=1e-3, rounds=4, proposals=4, max_calls=100,
        spent=lambda: False,
    )
    assert found.nonzero().tolist() == [list(HEAVY)]
    final = torch.where(found, colours, image)
    assert bool(margins_of(weighted_model, final[None], label, None)[1][0])
    assert 0 < calls <= 100


def test_nothing_to_spend_returns_the_input(weighted_model) -> None:
    image, mask, values = light_solution()
    found, colours, calls = shrink_by_swaps(
        weighted_model, image, mask, values, torch.tensor(0), None, required=1e-3, rounds=4, proposals=4,
        max_calls=0, spent=lambda: False,
    )
    assert calls == 0 and torch.equal(found, mask) and torch.equal(colours, values)


def test_call_budget_is_kept_to_within_one_round(weighted_model) -> None:
    image, mask, values = light_solution()
    _, _, calls = shrink_by_swaps(
        weighted_model, image, mask, values, torch.tensor(0), None, required=1e-3, rounds=4, proposals=4,
        max_calls=3, spent=lambda: False,
    )
    assert 3 <= calls <= 1 + 1 + 4  # the round that crossed the budget finishes (a level start checks the drop too)


def test_sparse_attack_with_swaps_never_uses_more_pixels(tiny_model, tiny_images, one_torch_thread) -> None:
    labels = clean_labels(tiny_model, tiny_images)
    base = SparseConfig(steps=30).retuned(patience=10)
    without = sparse_attack(tiny_model, tiny_images, labels, config=base.retuned(swap_rounds=0))
    swapped = sparse_attack(tiny_model, tiny_images, labels, config=base)
    assert_result_contract(tiny_model, tiny_images, labels, swapped)
    assert torch.equal(swapped.success, without.success)
    assert (swapped.l0_pixels <= without.l0_pixels).all()
    assert (swapped.l0_pixels < without.l0_pixels).any(), "the search should win somewhere (it does on 2 of 4)"
    assert (swapped.model_calls > without.model_calls).all()


def test_sparse_attack_reports_the_swap_phase(tiny_model, tiny_images, one_torch_thread) -> None:
    phases: list[str] = []

    def record(info: AttackProgress) -> None:
        phases.append(info.phase)
        if info.phase == "swap search":
            assert 0 <= info.step <= info.total_steps == UNTARGETED.swap_calls
            assert int(info.best_pixels[0]) >= 1

    image = tiny_images[:1]
    sparse_attack(tiny_model, image, clean_labels(tiny_model, image), config=SparseConfig(steps=30), progress=record)
    assert phases[0] == "optimize"
    assert "swap search" in phases and set(phases) == {"optimize", "swap search"}


def test_more_proposals_than_pixels_is_fine(tiny_model, one_torch_thread) -> None:
    # An 8x8 image has 64 pixels; asking for 500 proposals per round must simply try them all.
    image = torch.full((1, 3, 8, 8), 0.3)
    label = clean_labels(tiny_model, image)
    unpruned = sparse_attack(tiny_model, image, label, config=SparseConfig(steps=20).retuned(prune=False))
    mask, values = unpruned.pixel_mask[0], unpruned.adversarials[0]
    assert int(mask.sum()) > 1  # something to search from
    found, colours, calls = shrink_by_swaps(
        tiny_model, image[0], mask, values, label[0], None, required=1e-3, rounds=3, proposals=500, max_calls=2000,
        spent=lambda: False,
    )
    assert calls > 1 and int(found.sum()) <= int(mask.sum())
    with torch.no_grad():
        assert int(tiny_model(torch.where(found, colours, image[0])[None]).argmax()) != int(label[0])


def test_targeted_runs_skip_the_search_unless_asked(tiny_model, tiny_images, one_torch_thread) -> None:
    image = tiny_images[:1]
    label = clean_labels(tiny_model, image)
    target = (label + 1) % 10
    for changes, expect_search in (({}, False), ({"swap_calls": 60}, True)):
        phases: list[str] = []
        config = SparseConfig(steps=30, tuning_changes=changes)
        result = sparse_attack(tiny_model, image, label, targets=target, config=config,
                               progress=lambda info: phases.append(info.phase))
        assert bool(result.success[0]) and int(result.l0_pixels[0]) > 1
        assert ("swap search" in phases) == expect_search
