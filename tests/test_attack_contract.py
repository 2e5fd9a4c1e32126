"""Contracts every registered attack honours, checked through the one registry.

Only the public registry API is used (``ATTACKS[name].run`` and ``.config_type``),
so the same file can be run against an older checkout to see what it broke.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sparseviz.attacks import ATTACKS
from sparseviz.attacks.base import AttackResult, is_adversarial, to_uint8
from sparseviz.models import ImageClassifier
from tests.conftest import clean_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Small settings so every attack runs in well under a second on the tiny model.
FAST: dict[str, dict[str, Any]] = {
    "sparse": {"steps": 30, "tuning_changes": {"patience": 10}},
    "sparsefool": {"max_iter": 10},
    "pgd0": {"steps": 10, "pixels": 256},
    "sparse_rs": {"queries": 60, "pixels": 256, "min_pixels": 4},
    "jsma": {},
    "greedy": {},
    "pgd": {"steps": 50},
    "fgsm": {},
}
# Each sparse attack's own pixel cap (option, value); sparse and sparsefool minimise pixels without a cap.
PIXEL_CAP = {"pgd0": {"pixels": 6, "search": False}, "sparse_rs": {"pixels": 6, "search": False},
             "jsma": {"max_pixels": 6}, "greedy": {"max_pixels": 6}}
# Forward passes one step may make after the stop check that precedes it: most attacks check before
# every forward pass; a SparseFool step is a DeepFool iteration (gradient + check); the sparse attack's
# exact leave-one-out scoring of up to 48 pixels (the tuning's exact_limit) is one step.
STEP_FORWARDS = {"sparse": 48, "sparsefool": 2}
FINALIZE_FORWARDS = 2


def test_registry_covers_every_attack_in_this_file() -> None:
    assert set(FAST) == set(ATTACKS)


def config(name: str, **changes: Any) -> Any:
    return ATTACKS[name].config_type(**{**FAST[name], **changes})


class ForwardCounter:
    """Counts the network's forward passes (a hook removed after the test)."""

    def __init__(self, model: ImageClassifier) -> None:
        self.count = 0
        self.handle = model.network.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1


@pytest.fixture()
def forwards(tiny_model: ImageClassifier):  # type: ignore[no-untyped-def]
    counter = ForwardCounter(tiny_model)
    yield counter
    counter.handle.remove()


def check_result(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None, result: AttackResult) -> None:
    """Shape kept, in the box, 8-bit exact, success equal to a fresh forward, originals where it failed."""
    assert result.adversarials.shape == images.shape
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    assert torch.equal(to_uint8(result.adversarials).float() / 255, result.adversarials), "not 8-bit exact"
    with torch.no_grad():
        fresh = is_adversarial(model(result.adversarials), labels, targets)
    assert torch.equal(fresh, result.success)
    assert torch.equal(result.adversarials[~result.success], images[~result.success])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_refuses_bad_inputs_with_a_clear_message(name, tiny_model, tiny_images) -> None:
    run = ATTACKS[name].run
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    with pytest.raises(ValueError, match="true class"):
        run(tiny_model, tiny_images, labels, targets=labels.clone())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        run(tiny_model, tiny_images[0], labels[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run(tiny_model, tiny_images * 255, labels)
    with pytest.raises(ValueError, match="labels"):
        run(tiny_model, tiny_images, labels[:2])
    with pytest.raises(ValueError, match="no option 'bogus'"):
        run(tiny_model, tiny_images, labels, bogus=1)


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_result_contract_and_no_side_effects(name: str, targeted: bool, tiny_model, tiny_images) -> None:
    images = tiny_images.clone().requires_grad_(True)
    labels = clean_labels(tiny_model, tiny_images)
    targets = (labels + 1) % tiny_model.num_classes if targeted else None
    result = ATTACKS[name].run(tiny_model, images, labels, targets=targets, config=config(name))
    assert torch.equal(images.detach(), tiny_images), "input mutated"
    assert images.grad is None and images.requires_grad, "input's autograd state touched"
    assert not tiny_model.training and not any(p.requires_grad for p in tiny_model.parameters())
    check_result(tiny_model, tiny_images, labels, targets, result)
    assert result.attack == name
    if not targeted:
        assert bool(result.success.any()), f"{name} should fool the untrained tiny model somewhere"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_same_seed_same_result(name: str, tiny_model, tiny_images) -> None:
    labels = clean_labels(tiny_model, tiny_images)
    first = ATTACKS[name].run(tiny_model, tiny_images, labels, config=config(name))
    second = ATTACKS[name].run(tiny_model, tiny_images, labels, config=config(name))
    assert torch.equal(first.adversarials, second.adversarials)
    assert torch.equal(first.model_calls, second.model_calls)


@pytest.mark.parametrize("name", list(PIXEL_CAP))
def test_sparse_attacks_honour_their_pixel_cap(name: str, tiny_model, tiny_images) -> None:
    labels = clean_labels(tiny_model, tiny_images)
    cap = config(name, **PIXEL_CAP[name])
    result = ATTACKS[name].run(tiny_model, tiny_images, labels, config=cap)
    limit = min(value for key, value in PIXEL_CAP[name].items() if key != "search")
    assert (result.l0_pixels <= limit).all()


@pytest.mark.parametrize("epsilon", [4 / 255, 0.0141, 0.5 / 255])
@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_dense_attacks_stay_within_epsilon_after_8bit_rounding(name: str, epsilon: float, tiny_model, tiny_images) -> None:
    """0.0141 is 3.6/255: rounding the clamped image to 8 bits must not reach 4/255."""
    labels = clean_labels(tiny_model, tiny_images)
    result = ATTACKS[name].run(tiny_model, tiny_images, labels, config=config(name, epsilon=epsilon))
    attempted = ATTACKS[name].run(tiny_model, tiny_images, labels, config=config(name, epsilon=epsilon))
    assert torch.equal(result.adversarials, attempted.adversarials)
    assert float(result.linf.max()) <= epsilon + 1e-7


@pytest.mark.parametrize("name", list(ATTACKS))
def test_max_seconds_zero_stops_before_the_search(name: str, tiny_model, tiny_images, forwards) -> None:
    labels = clean_labels(tiny_model, tiny_images[:2])
    forwards.count = 0
    result = ATTACKS[name].run(tiny_model, tiny_images[:2], labels, config=config(name, max_seconds=0.0))
    assert result.interrupted
    # At most a pre-check (or first-order start), one step, and finalize.
    assert forwards.count <= 1 + STEP_FORWARDS.get(name, 1) + FINALIZE_FORWARDS
    check_result(tiny_model, tiny_images[:2], labels, None, result)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_should_stop_is_honoured_within_one_step(name: str, tiny_model, tiny_images, forwards) -> None:
    """A stop requested after n forward passes ends the run at the next step, in every phase."""
    images = tiny_images[:2]
    labels = clean_labels(tiny_model, images)
    forwards.count = 0
    ATTACKS[name].run(tiny_model, images, labels, config=config(name))
    total = forwards.count
    for stop_after in sorted({0, 1, total // 3, total // 2, (3 * total) // 4, total - FINALIZE_FORWARDS - 1}):
        forwards.count = 0
        result = ATTACKS[name].run(tiny_model, images, labels, config=config(name),
                                   should_stop=lambda: forwards.count >= stop_after)
        after = forwards.count - stop_after  # forward passes since the stop was requested
        assert after <= STEP_FORWARDS.get(name, 1) + FINALIZE_FORWARDS + (stop_after == 0), (
            f"{name} ran {after} forward passes after a stop requested at pass {stop_after} of {total}"
        )
        if stop_after <= total // 2 and stop_after < total - FINALIZE_FORWARDS:  # search steps were left
            assert result.interrupted, f"stop after {stop_after} of {total} forwards not reported"
        check_result(tiny_model, images, labels, None, result)
