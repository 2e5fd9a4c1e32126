"""PGD-l0 baseline: projected gradient descent with a pixel budget k.

Croce & Hein, "Sparse and Imperceivable Adversarial Attacks", ICCV 2019 (the
``L0`` attack of their ``pgd_attacks`` code). Each step ascends the cross-entropy
along its gradient normalised to unit l1 norm, then projects the perturbation
onto {at most k pixels changed, image inside [0, 1]}:

- clip every channel to the box;
- keep the k pixels whose (unclipped) squared perturbation minus its squared
  out-of-box part is largest, zero the rest.

Differences from the authors' code, each on purpose:

- The k kept pixels are chosen with ``topk`` (the reference thresholds with
  ``>=``, which can keep more than k pixels on ties).
- Every iterate is rounded to 8 bits after projection, so the image the model is
  asked about is the one a user can save (rounding only ever reverts pixels, so
  the budget still holds).
- ``search=True`` (default) runs the attack on a ladder of budgets
  ``min_pixels, min_pixels * growth, ... , pixels`` and stops at the first that
  fools the model, so the pixel count is comparable with minimal-l0 attacks.
  ``search=False`` is the paper's fixed-budget attack.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import is_adversarial, quantize
from .options import option
from .runner import Attack, AttackConfig, AttackRun


def budget_ladder(min_pixels: int, pixels: int, growth: float, search: bool) -> list[int]:
    """The pixel budgets tried in order: geometric from ``min_pixels`` up to ``pixels``."""
    if not search:
        return [pixels]
    ladder: list[int] = []
    budget = float(min(min_pixels, pixels))
    while round(budget) < pixels:
        if not ladder or round(budget) > ladder[-1]:
            ladder.append(int(round(budget)))
        budget *= growth
    return ladder + [pixels]


@dataclass(frozen=True)
class LadderConfig(AttackConfig):
    """The pixel-budget ladder shared by PGD-l0 and Sparse-RS."""

    pixels: int = option(1024, low=1, high=10_000_000,
                         help="k: the most pixels an image may change (the largest budget tried when searching)")
    search: bool = option(True, help="try budgets min_pixels, *growth, ... up to pixels; false = one fixed budget k")
    min_pixels: int = option(1, low=1, high=10_000_000,
                             help="the first budget of the ladder: 1, so small flips are not floored by the ladder")
    growth: float = option(1.5, low=1.01, high=100.0,
                           help="ratio between successive budgets: finer = fewer pixels, more time")


def start_ladder(run: AttackRun, config: LadderConfig) -> tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, list[int]
]:
    """What a budget-ladder search starts from: which images are already adversarial, the best
    images and pixel counts so far, and the ladder (also recorded in the result's params)."""
    count, _, height, width = run.images.shape
    _, done = run.already_adversarial()
    ladder = budget_ladder(config.min_pixels, min(config.pixels, height * width), config.growth, config.search)
    run.params["ladder"] = ladder
    return done, run.images.clone(), torch.full((count,), -1, dtype=torch.long), ladder


def rungs(run: AttackRun, ladder: list[int], done: torch.Tensor) -> Iterator[int]:
    """The ladder's budgets, while some image is still to be fooled and the time budget lasts."""
    for budget in ladder:
        if done.all() or run.spent():
            return
        yield budget


@dataclass(frozen=True)
class PGD0Config(LadderConfig):
    steps: int = option(20, low=1, high=10_000, help="PGD iterations per budget, as in Croce & Hein's experiments")
    step_size: float = option(0.15, low=1e-6, high=100.0, help="mean |change| per channel entry of one step")
    # The reference's 120000/255 on an l1-normalised gradient of a 32x32x3 image is 0.153 per entry;
    # expressing it per entry keeps it the same step at any resolution.
    random_start: bool = option(True, help="start from uniform noise in the box, projected to k pixels (the reference)")
    seed: int = option(0, low=0, high=2**63 - 1, help="seeds the random start; same seed = same result")


def project_l0_box(delta: torch.Tensor, images: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest perturbation with at most ``k`` changed pixels and ``images + delta`` in [0, 1].

    Per pixel, the squared norm that survives clipping to the box decides which
    k pixels are kept (Croce & Hein, Lemma 3); ties are broken by ``topk``.
    """
    count, _, height, width = delta.shape
    low, high = -images, 1.0 - images
    outside = torch.minimum(torch.minimum(high - delta, delta - low), torch.zeros_like(delta))
    gain = (delta.pow(2) - outside.pow(2)).sum(dim=1).flatten(1)  # (N, H*W)
    keep = torch.zeros_like(gain, dtype=torch.bool)
    keep.scatter_(1, gain.topk(min(k, height * width), dim=1).indices, True)
    clipped = torch.maximum(torch.minimum(delta, high), low)
    return clipped * keep.view(count, 1, height, width)


def _loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Per-image cross-entropy to ascend: away from the label, or toward the target."""
    if targets is None:
        return F.cross_entropy(logits, labels, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


def _pgd0(run: AttackRun, config: PGD0Config) -> torch.Tensor:
    """PGD with an l0 pixel budget (Croce & Hein, 2019); batched, images independent."""
    images = run.images
    count, _, height, width = images.shape
    device = run.device
    entries = 3 * height * width
    done, best, best_pixels, ladder = start_ladder(run, config)
    total_steps = len(ladder) * config.steps
    step_index = 0
    for budget in rungs(run, ladder, done):
        # One noise pattern per rung for every image, so an image's result does not depend on its batch.
        generator = torch.Generator().manual_seed(config.seed + budget)
        active = (~done).nonzero().squeeze(1)
        x = images[active]
        if config.random_start:
            noise = torch.rand((1, 3, height, width), generator=generator).to(device)
            delta = project_l0_box(noise - x, x, budget)
        else:
            delta = torch.zeros_like(x)
        for _ in range(config.steps):
            step_index += 1
            if run.spent():
                break
            adversarial = quantize(x + delta).requires_grad_(True)
            logits = run.forward(adversarial, active)
            sub_labels, sub_targets = run.criterion(active)
            (gradient,) = torch.autograd.grad(_loss(logits, sub_labels, sub_targets).sum(), adversarial)
            with torch.no_grad():
                fooled = is_adversarial(logits, sub_labels, sub_targets)
                if fooled.any():
                    hits = active[fooled]
                    best[hits] = adversarial[fooled].detach()
                    changed = (adversarial[fooled] != x[fooled]).any(dim=1).flatten(1).sum(dim=1)
                    best_pixels[hits.cpu()] = changed.cpu()
                    done[hits] = True
                keep = ~fooled
                run.report(step_index, total_steps, f"k={budget}", best_pixels=best_pixels, current_pixels=budget,
                           true_confidence=run.confidence_of(logits, active), done=done)
                if not keep.any():
                    break
                active, x, gradient, delta = active[keep], x[keep], gradient[keep], delta[keep]
                adversarial = adversarial.detach()[keep]
                # l1-normalised ascent step (step_size is per entry on average), then project.
                scale = gradient.abs().flatten(1).sum(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
                step = config.step_size * entries * gradient / scale
                delta = project_l0_box(adversarial - x + step, x, budget)
        else:
            # The last projected iterate of the rung has not been checked yet.
            with torch.no_grad():
                if active.numel():
                    adversarial = quantize(x + delta)
                    sub_labels, sub_targets = run.criterion(active)
                    fooled = is_adversarial(run.forward(adversarial, active), sub_labels, sub_targets)
                    best[active[fooled]] = adversarial[fooled]
                    done[active[fooled]] = True
    return best


pgd0 = Attack("pgd0", PGD0Config, _pgd0)
