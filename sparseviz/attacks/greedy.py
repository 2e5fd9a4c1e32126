"""Greedy first-order baseline: add the best few pixels per gradient step, then prune.

The plainest sparse attack, used to calibrate the others: at each step take one
gradient of the margin at the current image, score every untouched pixel by the
first-order margin drop of setting it to its best colour-cube corner (each
channel to 0 or 1, whichever the gradient prefers), and set the
``pixels_per_step`` best. Stop once the 8-bit image fools the model, then try
reverting the chosen pixels one at a time (least useful first) and keep every
revert that leaves the image adversarial.

Steps depend on the image, so images are attacked one at a time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..models import ImageClassifier
from .base import (
    AttackProgress,
    AttackResult,
    ProgressCallback,
    StopCheck,
    prepare_inputs,
    finalize,
    is_adversarial,
    margin,
)
from .pgd0 import check_range


@dataclass(frozen=True)
class GreedyConfig:
    pixels_per_step: int = 5  # pixels added per gradient: 1 is purest and slowest; 5 is the calibration baseline
    max_pixels: int = 1500  # give up beyond this many pixels
    prune: bool = True  # revert pixels the final image does not need
    max_seconds: float | None = None  # time budget per image

    def __post_init__(self) -> None:
        check_range("pixels_per_step", self.pixels_per_step, 1, 100_000)
        check_range("max_pixels", self.max_pixels, 1, 10_000_000)
        if self.max_seconds is not None:
            check_range("max_seconds", self.max_seconds, 0.0, 1e6)


def _fools(model: ImageClassifier, image: torch.Tensor, label: torch.Tensor, target: torch.Tensor | None) -> bool:
    with torch.no_grad():
        return bool(is_adversarial(model(image[None]), label, target)[0])


def greedy(
    model: ImageClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    config: GreedyConfig | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AttackResult:
    """Greedy corner pixels by first-order payoff, then pruning; deterministic."""
    config = config or GreedyConfig()
    images, labels, targets = prepare_inputs(model, images, labels, targets)
    count, _, height, width = images.shape
    start = time.perf_counter()
    device = model.device
    calls = torch.zeros(count, dtype=torch.long)
    adversarials = images.clone()
    interrupted = False
    limit = min(config.max_pixels, height * width)
    for index in range(count):
        image_start = time.perf_counter()
        x0 = images[index]
        label = labels[index : index + 1]
        target = None if targets is None else targets[index : index + 1]
        current = x0.clone()
        chosen = torch.zeros(height * width, dtype=torch.bool, device=device)
        found = False
        while int(chosen.sum()) < limit:
            if (should_stop is not None and should_stop()) or (
                config.max_seconds is not None and time.perf_counter() - image_start > config.max_seconds
            ):
                interrupted = True
                break
            probe = current[None].clone().requires_grad_(True)
            logits = model(probe)
            calls[index] += 1
            if bool(is_adversarial(logits.detach(), label, target)[0]):
                found = True
                break
            (gradient,) = torch.autograd.grad(margin(logits, label, target).sum(), probe)
            gradient = gradient[0]
            corners = (gradient < 0).float()
            payoff = -(gradient * (corners - current)).sum(dim=0).flatten()
            payoff[chosen] = float("-inf")
            take = payoff.topk(min(config.pixels_per_step, limit - int(chosen.sum()))).indices
            chosen[take] = True
            flat = current.flatten(1)
            flat[:, take] = corners.flatten(1)[:, take]
            current = flat.view_as(current)
            if progress is not None:
                progress(AttackProgress(
                    step=int(chosen.sum()), total_steps=limit, phase=f"image {index + 1}/{count}",
                    best_pixels=torch.full((count,), -1), current_pixels=torch.full((count,), int(chosen.sum())),
                    true_confidence=torch.full((count,), float("nan")), done=torch.zeros(count, dtype=torch.bool),
                ))
        if not found and not interrupted:
            found = _fools(model, current, label, target)
            calls[index] += 1
        if found and config.prune:
            # Least useful first: the smallest first-order loss from reverting each pixel.
            probe = current[None].clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(margin(model(probe), label, target).sum(), probe)
            calls[index] += 1
            revert_cost = (gradient[0] * (x0 - current)).sum(dim=0).flatten()
            order = chosen.nonzero().squeeze(1)
            order = order[revert_cost[order].argsort()]
            for pixel in order.tolist():
                if config.max_seconds is not None and time.perf_counter() - image_start > config.max_seconds:
                    interrupted = True
                    break
                y, x = divmod(pixel, width)
                trial = current.clone()
                trial[:, y, x] = x0[:, y, x]
                calls[index] += 1
                if _fools(model, trial, label, target):
                    current = trial
        if found:
            adversarials[index] = current
    return finalize(
        model, images, adversarials, labels, targets, attack="greedy", model_calls=calls,
        seconds=time.perf_counter() - start, params=asdict(config), interrupted=interrupted,
    )
