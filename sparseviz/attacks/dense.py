"""Dense l-inf baselines (FGSM, PGD): every pixel changes a little.

They are the contrast the app shows next to the sparse attack, and PGD's
direction is what the sparse attack starts from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import margin, quantize
from .options import option
from .runner import Attack, AttackConfig, AttackRun


@dataclass(frozen=True)
class PGDConfig(AttackConfig):
    epsilon: float = option(4 / 255, low=1e-6, high=1.0,
                            help="l-inf radius; 4/255 is the usual 'invisible' budget on ImageNet")
    steps: int = option(10, low=1, high=10_000, help="PGD steps; 10 already fool undefended ImageNet models")
    step_size: float | None = option(None, low=1e-6, high=1.0, help="step size; none = 2.5 * epsilon / steps (Madry et al.)")
    random_start: bool = option(False, help="start from a random point of the ball; only helps on defended models")
    seed: int = option(0, low=0, high=2**63 - 1, help="seeds the random start; same seed = same result")


def project_linf_8bit(adversarial: torch.Tensor, images: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The 8-bit image nearest ``adversarial`` whose change from ``images`` stays within ``epsilon``.

    ``images`` are 8-bit exact, so the budget in 8-bit steps is ``floor(255 epsilon)``
    (0.0141 allows 3 steps, not the 4 that rounding after the clamp would give).
    """
    steps = math.floor(255 * epsilon + 1e-6)
    change = torch.round((quantize(adversarial) - images) * 255).clamp(-steps, steps)
    return (images + change / 255).clamp(0, 1)


def _pgd(run: AttackRun, config: PGDConfig) -> torch.Tensor:
    """Projected gradient descent in the l-inf ball (Madry et al., 2018); the result is 8-bit and within epsilon."""
    images, labels, targets = run.images, run.labels, run.targets
    step_size = config.step_size if config.step_size is not None else 2.5 * config.epsilon / config.steps
    adversarial = images.clone()
    if config.random_start:
        generator = torch.Generator(device="cpu").manual_seed(config.seed)
        noise = torch.rand(images.shape, generator=generator).to(images.device)
        adversarial = (images + (2 * noise - 1) * config.epsilon).clamp(0, 1)
    everyone = slice(None)
    for step in range(config.steps):
        if run.spent():
            break
        adversarial.requires_grad_(True)
        loss = margin(run.forward(adversarial, everyone), labels, targets).sum()
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = adversarial - step_size * gradient.sign()
            adversarial = torch.min(torch.max(adversarial, images - config.epsilon), images + config.epsilon).clamp(0, 1)
        run.report(step + 1, config.steps, "pgd")
    return project_linf_8bit(adversarial.detach(), images, config.epsilon)


def _fgsm(run: AttackRun, config: PGDConfig) -> torch.Tensor:
    """One signed-gradient step of size epsilon (Goodfellow et al., 2015): PGD with one full step."""
    single = PGDConfig(epsilon=config.epsilon, steps=1, step_size=config.epsilon, max_seconds=config.max_seconds)
    return _pgd(run, single)


pgd = Attack("pgd", PGDConfig, _pgd)
fgsm = Attack("fgsm", PGDConfig, _fgsm)
