"""JSMA baseline: the attack contract, the paper's pair saliency, the search domain and the pixel budget."""

from __future__ import annotations

import itertools

import pytest
import torch

from sparseviz.attacks.base import AttackProgress, to_uint8
from sparseviz.attacks.jsma import JSMAConfig, _forward_derivatives, best_pair, choose_pair, jsma
from sparseviz.models import ImageClassifier
from tests.conftest import assert_result_contract, clean_labels

FINALIZE_CALLS = 2  # finalize's two forward passes, counted in every result's model_calls


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _targets(model: ImageClassifier, labels: torch.Tensor) -> torch.Tensor:
    """A different wrong class per image, so targeted runs do not all aim at one class."""
    offsets = 1 + torch.arange(labels.numel()) % (model.num_classes - 1)
    return (labels + offsets) % model.num_classes


@pytest.fixture(scope="module")
def more_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.round(torch.rand(12, 3, 32, 32, generator=generator) * 255) / 255


def _brute_force_pair(alpha: torch.Tensor, beta: torch.Tensor, valid: torch.Tensor) -> tuple[int, int, float]:
    """The paper's pair saliency, one pair at a time; the first best pair wins, (-1, -1, 0) if none qualifies."""
    best = (-1, -1, 0.0)
    for p, q in itertools.combinations(range(alpha.numel()), 2):
        if not (valid[p] and valid[q]):
            continue
        gain, rest = alpha[p] + alpha[q], beta[p] + beta[q]
        score = float(gain * rest.abs()) if gain > 0 and rest < 0 else 0.0
        if score > best[2]:
            best = (p, q, score)
    return best


@pytest.mark.parametrize("others", ["all", "rival"])
@pytest.mark.parametrize("max_pixels", [1000, 3])
def test_contract(others: str, max_pixels: int, tiny_model: ImageClassifier, tiny_images: torch.Tensor,
                  more_images: torch.Tensor) -> None:
    images = torch.cat([tiny_images, more_images[:4]])
    pristine = images.clone()
    labels = clean_labels(tiny_model, images)
    snapshots: list[AttackProgress] = []
    result = jsma(tiny_model, images, labels, config=JSMAConfig(max_pixels=max_pixels, others=others),
                  progress=snapshots.append)
    assert torch.equal(images, pristine), "input mutated"
    assert result.attack == "jsma"
    assert_result_contract(tiny_model, images, labels, result)
    assert (result.l0_pixels <= max_pixels).all()
    assert (result.model_calls > FINALIZE_CALLS).all()
    assert snapshots and all(s.phase == "jsma" for s in snapshots)
    assert [s.step for s in snapshots] == list(range(1, len(snapshots) + 1))
    assert bool(snapshots[-1].done.all())
    if max_pixels == 3:  # the budget bites: some images fail and come back untouched
        assert not result.success.all()


def test_best_pair_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    alpha = torch.randn(30, 12, generator=generator)
    beta = torch.randn(30, 12, generator=generator)
    valid = torch.rand(30, 12, generator=generator) > 0.2
    alpha[0] = -alpha[0].abs()  # a row where no pair can qualify
    for sign in (1.0, -1.0):  # push-up uses (alpha, beta), push-down (-alpha, -beta)
        first, second, score = best_pair(sign * alpha, sign * beta, valid)
        for row in range(alpha.shape[0]):
            p, q, expected = _brute_force_pair(sign * alpha[row], sign * beta[row], valid[row])
            assert float(score[row]) == pytest.approx(expected, rel=1e-6)
            if expected > 0:
                assert (int(first[row]), int(second[row])) == (p, q)
    assert float(best_pair(alpha[:1], beta[:1], valid[:1])[2][0]) == 0.0


def test_choose_pair_matches_brute_force_over_both_domains() -> None:
    """With every feature a candidate, the chosen pair is the best of both directions' exhaustive searches."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        alpha = torch.randn(1, 12, generator=generator)
        beta = torch.randn(1, 12, generator=generator)
        current = torch.rand(1, 12, generator=generator)
        current[0, :3], current[0, 3:6] = 1.0, 0.0  # features already at a bound
        free = torch.rand(1, 12, generator=generator) > 0.25
        features, push_up, saliency = choose_pair(alpha, beta, current, free, candidates=12)
        up = _brute_force_pair(alpha[0], beta[0], free[0] & (current[0] < 1))
        down = _brute_force_pair(-alpha[0], -beta[0], free[0] & (current[0] > 0))
        expected = up if up[2] >= down[2] else down
        assert float(saliency[0]) == pytest.approx(expected[2], rel=1e-6)
        if expected[2] > 0:
            assert bool(push_up[0]) == (up[2] >= down[2])
            assert sorted(features[0].tolist()) == list(expected[:2])  # candidates come in ranking order
            pushed_to = 1.0 if push_up[0] else 0.0
            assert free[0, features[0]].all() and (current[0, features[0]] != pushed_to).all()


@pytest.mark.parametrize("others", ["all", "rival"])
def test_derivatives_are_the_papers_alpha_and_beta(others: str, tiny_model: ImageClassifier,
                                                    tiny_images: torch.Tensor) -> None:
    image = tiny_images[:1]
    label = clean_labels(tiny_model, image)
    jacobian = torch.autograd.functional.jacobian(lambda x: tiny_model(x)[0], image).flatten(1)  # (classes, features)
    with torch.no_grad():
        logits = tiny_model(image)[0]
    target = int(logits.clone().index_fill_(0, label, float("-inf")).argmax())  # strongest wrong class
    _, alpha, beta = _forward_derivatives(tiny_model, image, label, None, others)
    assert torch.allclose(alpha[0], jacobian[target], atol=1e-5)
    if others == "all":
        expected = jacobian.sum(dim=0) - jacobian[target]
    else:
        expected = jacobian[int(logits.clone().index_fill_(0, torch.tensor([target]), float("-inf")).argmax())]
    assert torch.allclose(beta[0], expected, atol=1e-4)


def test_pairs_go_to_the_bound_and_touch_fresh_entries(tiny_model: ImageClassifier, more_images: torch.Tensor) -> None:
    """Every iteration sets two never-modified entries to 0 or 1, so entries changed = 2 x iterations exactly."""
    images = more_images[:4]
    labels = clean_labels(tiny_model, images)
    for targets in (None, _targets(tiny_model, labels)):
        result = jsma(tiny_model, images, labels, targets=targets)
        assert result.success.any()
        changed = to_uint8(result.adversarials) != to_uint8(result.originals)
        values = result.adversarials[changed]
        assert ((values == 0) | (values == 1)).all()
        iterations = result.model_calls - FINALIZE_CALLS - 1  # the last forward pass only confirms success
        success = result.success
        assert torch.equal(result.l0_entries[success], 2 * iterations[success])


def test_pixel_budget_cuts_the_same_trajectory(tiny_model: ImageClassifier, tiny_images: torch.Tensor,
                                                more_images: torch.Tensor) -> None:
    """A budget never changes the path, only where it stops: success exactly where the free run needed no more."""
    images = torch.cat([tiny_images, more_images[:4]])
    labels = clean_labels(tiny_model, images)
    free = jsma(tiny_model, images, labels)
    assert free.success.all()
    needed = free.l0_pixels
    assert needed.unique().numel() > 3, "the budgets below must split the images"
    for budget in sorted({int(needed.min()), int(needed.median()), int(needed.max()) - 1}):
        capped = jsma(tiny_model, images, labels, config=JSMAConfig(max_pixels=budget))
        assert torch.equal(capped.success, needed <= budget), budget
        assert (capped.l0_pixels <= budget).all()
        assert torch.equal(capped.adversarials[capped.success], free.adversarials[capped.success])


@pytest.mark.slow  # seconds on a busy 2-core machine: out of the unit tier, still in the default run
def test_targeted_lands_on_target(tiny_model: ImageClassifier, more_images: torch.Tensor) -> None:
    images = more_images[:8]
    labels = clean_labels(tiny_model, images)
    targets = _targets(tiny_model, labels)
    result = jsma(tiny_model, images, labels, targets=targets)
    assert torch.equal(result.adv_labels[result.success], targets[result.success])
    assert int(result.success.sum()) >= 7  # 8 of 8 when written


def test_untargeted_success_rate(tiny_model: ImageClassifier, tiny_images: torch.Tensor,
                                 more_images: torch.Tensor) -> None:
    images = torch.cat([tiny_images, more_images])
    labels = clean_labels(tiny_model, images)
    result = jsma(tiny_model, images, labels)
    assert int(result.success.sum()) >= 14  # 16 of 16 when written
    assert float(result.l0_pixels[result.success].float().median()) < 100


@pytest.mark.slow  # one attack per image and one batched: the slowest tiny-model test
@pytest.mark.parametrize("others, targeted", [("all", False), ("rival", False), ("all", True)])
def test_batched_equals_one_at_a_time(others: str, targeted: bool, tiny_model: ImageClassifier,
                                      more_images: torch.Tensor) -> None:
    images = more_images[:4]  # they finish after different numbers of iterations
    labels = clean_labels(tiny_model, images)
    targets = _targets(tiny_model, labels) if targeted else None
    config = JSMAConfig(others=others)
    batched = jsma(tiny_model, images, labels, targets=targets, config=config)
    for i in range(images.shape[0]):
        alone = jsma(tiny_model, images[i : i + 1], labels[i : i + 1],
                     targets=None if targets is None else targets[i : i + 1], config=config)
        assert torch.equal(alone.adversarials[0], batched.adversarials[i])
        assert int(alone.model_calls[0]) == int(batched.model_calls[i])


def test_stop_request_returns_originals(tiny_model: ImageClassifier, tiny_images: torch.Tensor) -> None:
    labels = clean_labels(tiny_model, tiny_images)
    result = jsma(tiny_model, tiny_images, labels, should_stop=lambda: True)
    assert result.interrupted and not result.success.any()
    assert torch.equal(result.adversarials, tiny_images)
    assert (result.model_calls == FINALIZE_CALLS).all()


@pytest.mark.parametrize(
    "field, bad, message",
    [("max_pixels", 0, r"max_pixels must be a number in \[1, "), ("candidates", 1, r"candidates must be a number in \[2, "),
     ("max_seconds", -1.0, r"max_seconds must be a number in \[0.0, "), ("others", "some", r"others must be one of 'all', 'rival'")],
)
def test_config_validation(field: str, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JSMAConfig(**{field: bad})
