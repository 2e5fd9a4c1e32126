"""Gradient-guided local search that shrinks a sparse adversarial example.

Pruning only ever drops pixels, so a solution whose every pixel is needed stays as
it is, even when a smaller set elsewhere in the image would fool the model (on the
bundled photos a random search found 1-pixel solutions where pruning stopped at 5).
This search moves pixels instead. To go from k to k - 1 pixels it drops the
least-needed pixel and then, for a few rounds, swaps a weakly needed pixel for one
of the pixels whose move to a colour corner the gradient says lowers the margin
most; a round keeps the best swap if it lowers the margin, and the level succeeds
as soon as a swap fools the model. Every candidate is checked exactly (forward
pass on the 8-bit image); the gradient only proposes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import ImageClassifier
from .base import is_adversarial, margin


def forward_chunk(device: torch.device) -> int:
    """Images per forward pass when checking many single-image variants.

    On a GPU a large batch is nearly free; on the CPU it is not: EfficientNet-Lite0 at
    224 px on one thread took ~35 ms per image at batch 1 and ~80 ms per image at
    batch 32 (cache misses), so the CPU goes one image at a time.
    """
    return 64 if device.type == "cuda" else 1


def margins_of(
    model: ImageClassifier, batch: torch.Tensor, label: torch.Tensor, target: torch.Tensor | None,
    stop_below: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Margin and adversarial flag of the images in ``batch`` (all variants of one image).

    With ``stop_below``, evaluation stops after the first chunk that holds an
    adversarial image with a margin below it, and only the evaluated images are returned.
    """
    chunk = forward_chunk(batch.device)
    margins, flags = [], []
    for start in range(0, batch.shape[0], chunk):
        with torch.no_grad():
            logits = model(batch[start : start + chunk])
        labels = label.expand(logits.shape[0])
        targets = None if target is None else target.expand(logits.shape[0])
        margins.append(margin(logits, labels, targets))
        flags.append(is_adversarial(logits, labels, targets))
        if stop_below is not None and bool((flags[-1] & (margins[-1] < stop_below)).any()):
            break
    return torch.cat(margins), torch.cat(flags)


def margin_gradient(
    model: ImageClassifier, adversarial: torch.Tensor, label: torch.Tensor, target: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """Gradient (3, H, W) of one image's margin with respect to its pixels, and the margin."""
    probe = adversarial[None].clone().requires_grad_(True)
    value = margin(model(probe), label[None], None if target is None else target[None])
    (gradient,) = torch.autograd.grad(value.sum(), probe)
    return gradient[0], float(value.detach())


def shrink_by_swaps(
    model: ImageClassifier,
    image: torch.Tensor,
    mask: torch.Tensor,
    values: torch.Tensor,
    label: torch.Tensor,
    target: torch.Tensor | None,
    *,
    required: float,
    rounds: int,
    proposals: int,
    max_calls: int,
    spent: Callable[[], bool],
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Look for smaller pixel sets that still fool the model, one pixel fewer at a time.

    ``image`` (3, H, W) is the original, ``mask`` (H, W) the pixels of a solution
    whose colours are in ``values`` (3, H, W, already 8-bit); a solution must beat the
    boundary by ``required`` logits. The search stops once it has spent about
    ``max_calls`` model calls (a level of ``rounds`` costs up to 1 + rounds x (1 +
    proposals)), so a solution of hundreds of pixels cannot keep it busy for minutes.
    ``on_round(calls_spent, best_pixels)`` is called after every round (a progress bar).
    Returns the smallest solution found (the input one if none), and the calls spent.
    """
    calls = 0

    def out_of_budget() -> bool:
        return calls >= max_calls or spent()

    best_mask, best_values = mask.clone(), values.clone()
    while int(best_mask.sum()) > 1 and not out_of_budget():
        adversarial = torch.where(best_mask, best_values, image)
        gradient, _ = margin_gradient(model, adversarial, label, target)
        calls += 1
        candidate, colours = best_mask.clone(), best_values.clone()
        candidate.view(-1)[_least_needed(gradient, image, adversarial, candidate, 1)] = False
        tried = torch.zeros_like(best_mask)
        found = False
        for _ in range(rounds):
            if out_of_budget():
                break
            adversarial = torch.where(candidate, colours, image)
            gradient, current = margin_gradient(model, adversarial, label, target)
            calls += 1
            if current < -required:  # rare: the drop alone already fools it
                found = True
                break
            corners = (gradient < 0).to(image.dtype)  # per channel, the end that lowers the margin
            gain = -(gradient * (corners - image)).sum(dim=0)  # first-order margin drop
            gain = gain.masked_fill(candidate | tried, float("-inf")).flatten()
            additions = gain.topk(min(proposals, gain.numel())).indices
            additions = additions[gain[additions] > float("-inf")]
            if additions.numel() == 0:  # every pixel of the image has been tried at this level
                break
            removals = _least_needed(gradient, image, adversarial, candidate, 2)
            trial_masks, trial_colours = [], []
            for index, added in enumerate(additions):
                trial_mask, trial_colour = candidate.clone(), colours.clone()
                trial_mask.view(-1)[removals[index % removals.numel()]] = False
                trial_mask.view(-1)[added] = True
                trial_colour.view(3, -1)[:, added] = corners.view(3, -1)[:, added]
                trial_masks.append(trial_mask)
                trial_colours.append(trial_colour)
            tried.view(-1)[additions] = True
            trials = torch.stack([torch.where(m, c, image) for m, c in zip(trial_masks, trial_colours)])
            # Best-first order: on the CPU, the first trial that fools ends the round.
            trial_margins, fooled = margins_of(model, trials, label, target, stop_below=-required)
            calls += trial_margins.shape[0]
            pick = int(trial_margins.argmin())
            if float(trial_margins[pick]) < current:
                candidate, colours = trial_masks[pick], trial_colours[pick]
            found = bool(fooled[pick]) and float(trial_margins[pick]) < -required
            if on_round is not None:
                on_round(calls, int(candidate.sum()) if found else int(best_mask.sum()))
            if found:
                break
        if not found:
            break
        best_mask, best_values = candidate, colours
    return best_mask, best_values, calls


def _least_needed(
    gradient: torch.Tensor, image: torch.Tensor, adversarial: torch.Tensor, mask: torch.Tensor, count: int
) -> torch.Tensor:
    """Flat indices of the ``count`` selected pixels whose revert raises the margin least (first order)."""
    need = (gradient * (image - adversarial)).sum(dim=0).masked_fill(~mask, float("inf"))
    return need.flatten().topk(min(count, int(mask.sum())), largest=False).indices
