"""Colour refinement, and the refine-and-prune cycles that alternate it with pruning.

The optimisation keeps the first binary success, barely past the boundary, where hardly
any pixel can go. Re-optimising the kept pixels' colours for margin buys the slack that
lets the next prune remove more. Which sets are refined when is the tuning's
(``refine_min``, ``refine_first_min``, ``large_set``, ``cycle_gain``); the reasons are in
``benchmarks/results/tuning.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..base import is_adversarial, margin, quantize
from .checks import Checker
from .config import SparseTuning
from .optimize import to_logit
from .prune import prune_batch


def refine_colours(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, selected: torch.Tensor, *,
    tuning: SparseTuning, required: float, spent: Callable[[], bool],
) -> torch.Tensor:
    """Re-optimise the ``selected`` images' kept colours for margin, so that the next prune can drop more.

    All selected images step together (one network call per step, soft and 8-bit images
    in one batch): ``refine_steps`` steps, twice that for sets over ``large_set`` pixels,
    whose first-order prune needs the slack most. Returns colours that still fool the
    model by ``required`` (the input colours where no step did).
    """
    values = values.clone()
    if selected.numel() == 0:
        return values
    x, mask = images[selected], masks[selected, None]
    large = mask.flatten(1).sum(dim=1) > tuning.large_set
    colour_logits = to_logit(values[selected], eps=0.01).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([colour_logits], lr=tuning.value_lr)
    best = torch.full((selected.numel(),), float("inf"), device=images.device)
    everyone = torch.arange(selected.numel(), device=images.device)
    for step in range(2 * tuning.refine_steps):
        rows = everyone if step < tuning.refine_steps else everyone[large]
        if spent() or rows.numel() == 0:
            break
        owners = selected[rows]
        labels = checker.labels[owners]
        targets = None if checker.targets is None else checker.targets[owners]
        colours = torch.sigmoid(colour_logits[rows])
        adversarial = torch.where(mask[rows], colours, x[rows])
        logits = checker.model(torch.cat([adversarial, quantize(adversarial.detach())]))
        checker.charge(torch.cat([owners, owners]))
        soft, hard = logits[: rows.numel()], logits[rows.numel() :]
        with torch.no_grad():
            hard_margin = margin(hard, labels, targets)
            better = is_adversarial(hard, labels, targets) & (hard_margin < best[rows]) & (hard_margin < -required)
            best[rows[better]] = hard_margin[better]
            values[owners[better]] = quantize(colours.detach()[better])
        optimizer.zero_grad()
        margin(soft, labels, targets).sum().backward()
        optimizer.step()
    return values


def refine_and_prune(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, *,
    tuning: SparseTuning, required: float, spent: Callable[[], bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune every image's solution, then re-optimise its colours and prune again while that pays.

    Large sets (over ``refine_first_min``) are refined before the first prune too; small ones
    lose most of their pixels to a plain prune, and the first cycle refines what is left.
    Sets of at most ``refine_min`` pixels are left to exact pruning and the swap search.
    """
    pixels = masks.flatten(1).sum(dim=1)
    if tuning.refine_steps and not spent():
        first = (pixels > tuning.refine_first_min).nonzero().squeeze(1)
        values = refine_colours(checker, images, masks, values, first, tuning=tuning, required=required, spent=spent)
    masks = prune_batch(checker, images, masks, values, required=required, spent=spent, tuning=tuning)
    for cycle in range(tuning.refine_cycles):
        before, pixels = pixels, masks.flatten(1).sum(dim=1)
        # Another cycle only after one that paid: a share of the pixels, and more than one.
        paid = (pixels <= (1 - tuning.cycle_gain) * before) & (before - pixels >= 2)
        chosen = (pixels > tuning.refine_min) & (paid | (cycle == 0))
        if not tuning.refine_steps or spent() or not chosen.any():
            break
        values = refine_colours(checker, images, masks, values, chosen.nonzero().squeeze(1), tuning=tuning,
                                required=required, spent=spent)
        masks = prune_batch(checker, images, masks, values, required=required, spent=spent, tuning=tuning, only=chosen)
    return masks, values
