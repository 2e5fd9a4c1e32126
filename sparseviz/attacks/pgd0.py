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

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..models import ImageClassifier
from .base import (
    AttackProgress,
    AttackResult,
    ProgressCallback,
    StopCheck,
    prepare_inputs,
    finalize,
    is_adversarial,
    quantize,
)


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` naming the valid range unless ``low <= value <= high``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got {value!r}.")


def budget_ladder(min_pixels: int, pixels: int, growth: float, search: bool) -> list[int]:
    """The pixel budgets tried in order: geometric from ``min_pixels`` up to ``pixels``."""
    if not search:
        return [pixels]
    ladder = []
    budget = float(min(min_pixels, pixels))
    while round(budget) < pixels:
        if not ladder or round(budget) > ladder[-1]:
            ladder.append(int(round(budget)))
        budget *= growth
    return ladder + [pixels]


@dataclass(frozen=True)
class PGD0Config:
    pixels: int = 1024  # k: the most pixels an image may change (the largest budget tried when searching)
    steps: int = 20  # PGD iterations per budget, as in Croce & Hein's experiments
    step_size: float = 0.15  # mean |change| per channel entry of one step: the reference's 120000/255 on an
    # l1-normalised gradient of a 32x32x3 image is 0.153 per entry; expressing it per entry keeps it
    # the same step at any resolution
    random_start: bool = True  # the reference starts from uniform noise in the box, projected to k pixels
    search: bool = True  # try budgets min_pixels, *growth, ... up to pixels; False = one fixed budget k
    min_pixels: int = 1  # the first budget of the ladder: 1, so small flips are not floored by the ladder
    growth: float = 1.5  # ratio between successive budgets: finer = fewer pixels, more time
    max_seconds: float | None = None  # time budget for the whole call; returns what it has
    seed: int = 0  # seeds the random start; same seed = same result

    def __post_init__(self) -> None:
        check_range("pixels", self.pixels, 1, 10_000_000)
        check_range("steps", self.steps, 1, 10_000)
        check_range("step_size", self.step_size, 1e-6, 100.0)
        check_range("min_pixels", self.min_pixels, 1, 10_000_000)
        check_range("growth", self.growth, 1.01, 100.0)
        check_range("seed", self.seed, 0, 2**63 - 1)
        if self.max_seconds is not None:
            check_range("max_seconds", self.max_seconds, 0.0, 1e6)


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


def pgd0(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    config: PGD0Config | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AttackResult:
    """PGD with an l0 pixel budget (Croce & Hein, 2019); batched, images independent."""
    config = config or PGD0Config()
    images, labels, targets = prepare_inputs(model, images, labels, targets)
    count, _, height, width = images.shape
    start = time.perf_counter()
    device = model.device
    entries = 3 * height * width
    calls = torch.zeros(count, dtype=torch.long, device=device)
    with torch.no_grad():
        done = is_adversarial(model(images), labels, targets)
    calls += 1
    best = images.clone()
    best_pixels = torch.full((count,), -1, dtype=torch.long)
    ladder = budget_ladder(config.min_pixels, min(config.pixels, height * width), config.growth, config.search)
    total_steps = len(ladder) * config.steps
    interrupted = False
    step_index = 0
    for budget in ladder:
        if done.all() or interrupted:
            break
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
            if (config.max_seconds is not None and time.perf_counter() - start > config.max_seconds) or (
                should_stop is not None and should_stop()
            ):
                interrupted = True
                break
            adversarial = quantize(x + delta).requires_grad_(True)
            logits = model(adversarial)
            calls[active] += 1
            sub_labels = labels[active]
            sub_targets = None if targets is None else targets[active]
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
                if progress is not None:
                    confidence = torch.full((count,), float("nan"))
                    confidence[active.cpu()] = logits.softmax(dim=1).gather(1, sub_labels[:, None])[:, 0].cpu()
                    progress(AttackProgress(
                        step=step_index, total_steps=total_steps, phase=f"k={budget}",
                        best_pixels=best_pixels.clone(), current_pixels=torch.full((count,), budget),
                        true_confidence=confidence, done=done.cpu(),
                    ))
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
                    sub_targets = None if targets is None else targets[active]
                    fooled = is_adversarial(model(adversarial), labels[active], sub_targets)
                    calls[active] += 1
                    best[active[fooled]] = adversarial[fooled]
                    done[active[fooled]] = True
    return finalize(
        model, images, best, labels, targets, attack="pgd0", model_calls=calls,
        seconds=time.perf_counter() - start, params={**asdict(config), "ladder": ladder}, interrupted=interrupted,
    )
