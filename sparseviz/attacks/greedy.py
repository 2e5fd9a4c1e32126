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

from dataclasses import dataclass

import torch

from .base import is_adversarial, margin
from .options import option
from .runner import Attack, AttackConfig, AttackRun


@dataclass(frozen=True)
class GreedyConfig(AttackConfig):
    pixels_per_step: int = option(5, low=1, high=100_000, help="pixels added per gradient: 1 is purest and "
                                  "slowest; 5 is the calibration baseline")
    max_pixels: int = option(1500, low=1, high=10_000_000, help="give up beyond this many pixels")
    prune: bool = option(True, help="revert pixels the final image does not need")


def _fools(run: AttackRun, image: torch.Tensor, index: int) -> bool:
    with torch.no_grad():
        return bool(is_adversarial(run.forward(image[None], index), *run.criterion(index))[0])


def _greedy(run: AttackRun, config: GreedyConfig) -> torch.Tensor:
    """Greedy corner pixels by first-order payoff, then pruning; deterministic."""
    images = run.images
    count, _, height, width = images.shape
    adversarials = images.clone()
    limit = min(config.max_pixels, height * width)
    for index in range(count):
        if run.spent():
            break
        x0 = images[index]
        label, target = run.criterion(index)
        current = x0.clone()
        chosen = torch.zeros(height * width, dtype=torch.bool, device=run.device)
        found = False
        while int(chosen.sum()) < limit and not run.spent():
            probe = current[None].clone().requires_grad_(True)
            logits = run.forward(probe, index)
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
            run.report(int(chosen.sum()), limit, f"image {index + 1}/{count}", current_pixels=int(chosen.sum()))
        if not found and not run.spent():
            found = _fools(run, current, index)
        if found and config.prune and not run.spent():
            # Least useful first: the smallest first-order loss from reverting each pixel.
            probe = current[None].clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(margin(run.forward(probe, index), label, target).sum(), probe)
            revert_cost = (gradient[0] * (x0 - current)).sum(dim=0).flatten()
            order = chosen.nonzero().squeeze(1)
            order = order[revert_cost[order].argsort()]
            for pixel in order.tolist():
                if run.spent():
                    break
                y, x = divmod(pixel, width)
                trial = current.clone()
                trial[:, y, x] = x0[:, y, x]
                if _fools(run, trial, index):
                    current = trial
        if found:
            adversarials[index] = current
    return adversarials


greedy = Attack("greedy", GreedyConfig, _greedy)
