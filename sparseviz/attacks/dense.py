"""Dense l-inf baselines (FGSM, PGD): every pixel changes a little.

They are the contrast the app shows next to the sparse attack, and PGD's
direction is what the sparse attack starts from.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass

import torch

from ..models import ImageClassifier
from .base import AttackResult, ProgressCallback, StopCheck, finalize, margin, prepare_inputs


@dataclass(frozen=True)
class PGDConfig:
    epsilon: float = 4 / 255  # l-inf radius; 4/255 is the usual "invisible" budget on ImageNet
    steps: int = 10  # 10 steps of PGD already fool undefended ImageNet models
    step_size: float | None = None  # None: 2.5 * epsilon / steps (Madry et al.)
    random_start: bool = False  # deterministic by default; a random start only helps on defended models
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1]; got {self.epsilon}.")
        if not 1 <= self.steps <= 10_000:
            raise ValueError(f"steps must be in 1..10000; got {self.steps}.")


def pgd_perturbation(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    config: PGDConfig,
) -> torch.Tensor:
    """Run PGD and return the (float, unrounded) adversarial images."""
    step_size = config.step_size if config.step_size is not None else 2.5 * config.epsilon / config.steps
    adversarial = images.clone()
    if config.random_start:
        generator = torch.Generator(device="cpu").manual_seed(config.seed)
        noise = torch.rand(images.shape, generator=generator).to(images.device)
        adversarial = (images + (2 * noise - 1) * config.epsilon).clamp(0, 1)
    for _ in range(config.steps):
        adversarial.requires_grad_(True)
        loss = margin(model(adversarial), labels, targets).sum()
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = adversarial - step_size * gradient.sign()
            adversarial = torch.min(torch.max(adversarial, images - config.epsilon), images + config.epsilon).clamp(0, 1)
    return adversarial.detach()


def pgd(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    config: PGDConfig | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AttackResult:
    """Projected gradient descent in the l-inf ball (Madry et al., 2018).

    PGD is a few fast steps; ``progress`` and ``should_stop`` are accepted so every
    registry attack has one signature, and are not consulted mid-run.
    """
    config = config or PGDConfig()
    start = time.perf_counter()
    images, labels, targets = prepare_inputs(model, images, labels, targets)
    adversarial = pgd_perturbation(model, images, labels, targets, config)
    calls = torch.full((images.shape[0],), config.steps)
    return finalize(
        model, images, adversarial, labels, targets, attack="pgd", model_calls=calls,
        seconds=time.perf_counter() - start, params=asdict(config),
    )


def fgsm(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    config: PGDConfig | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AttackResult:
    """One signed-gradient step of size epsilon (Goodfellow et al., 2015)."""
    epsilon = (config or PGDConfig()).epsilon
    result = pgd(model, images, labels, targets=targets, config=PGDConfig(epsilon=epsilon, steps=1, step_size=epsilon))
    return dataclasses.replace(result, attack="fgsm")
