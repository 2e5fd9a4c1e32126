"""Sparse-RS baseline: black-box random search over k pixels (scores only, no gradients).

Croce, Singh, Andriushchenko, Flammarion & Hein, "Sparse-RS: a versatile framework
for query-efficient sparse black-box adversarial attacks", AAAI 2022 (the l0
"pixels" threat model). The state is a set of k pixels, each set to a corner of
the colour cube ({0, 1}^3). Every query swaps a fraction ``alpha_i`` of them for
pixels outside the set with fresh random corners, and keeps the proposal when it
lowers the margin loss. ``alpha_i`` follows the authors' piecewise-constant
schedule (``p_init`` halved and then divided further as the query budget is spent).

The candidate images are 8-bit exact by construction, so success is decided on
the image a user can save. ``search=True`` (default) tries a ladder of budgets
k = ``min_pixels, * growth, ... , pixels`` with ``queries`` per rung and stops at
the first that fools the model; ``search=False`` is the paper's fixed-k attack.
Only the model's logits are used (never a gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import margin
from .pgd0 import LadderConfig, rungs, start_ladder
from .options import option
from .runner import Attack, AttackRun


@dataclass(frozen=True)
class SparseRSConfig(LadderConfig):
    pixels: int = option(512, low=1, high=10_000_000, help="k: the most pixels an image may change")
    queries: int = option(300, low=1, high=10_000_000, help="query budget per rung (the paper: 10,000 at one fixed k)")
    # ~10 s per rung at 224 px on 2 CPU cores
    p_init: float = option(0.3, low=1e-4, high=1.0,
                           help="fraction of the k pixels resampled at first; the authors' value for l0 on ImageNet")
    growth: float = option(2.0, low=1.01, high=100.0,
                           help="ratio between successive budgets: random search needs room, so coarser than PGD-l0")
    seed: int = option(0, low=0, high=2**63 - 1, help="seeds the random search; same seed = same result")


def resample_fraction(query: int, budget: int, p_init: float) -> float:
    """The authors' schedule for ``alpha``, rescaled from a 10,000-query run to ``budget``."""
    progress = int(query / budget * 10_000)
    for limit, divisor in ((10, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15)):
        if progress <= limit:
            return p_init / divisor
    return p_init / 20


def _compose(images: torch.Tensor, where: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Images with pixel indices ``where`` (N, k) set to ``colours`` (N, k, 3)."""
    count, channels, height, width = images.shape
    flat = images.flatten(2).clone()  # (N, 3, H*W)
    flat.scatter_(2, where[:, None, :].expand(-1, channels, -1), colours.transpose(1, 2))
    return flat.view(count, channels, height, width)


def _sparse_rs(run: AttackRun, config: SparseRSConfig) -> torch.Tensor:
    """Sparse-RS over pixels (Croce et al., 2022); batched: one query per image per iteration."""
    images = run.images
    count, _, height, width = images.shape
    device = run.device
    done, best, best_pixels, ladder = start_ladder(run, config)
    total_steps = len(ladder) * config.queries
    step_index = 0
    for budget in rungs(run, ladder, done):
        # Random draws are made per image from its own generator, so an image's
        # result does not depend on its batch mates.
        generators = [torch.Generator().manual_seed(config.seed * 1_000_003 + budget) for _ in range(count)]
        active = (~done).nonzero().squeeze(1)

        def draw_corners(index: torch.Tensor, number: int) -> torch.Tensor:
            return torch.stack([
                torch.randint(0, 2, (number, 3), generator=generators[i]).float() for i in index.tolist()
            ]).to(device)

        def draw_pixels(index: torch.Tensor, number: int, exclude: torch.Tensor | None) -> torch.Tensor:
            scores = torch.stack([torch.rand(height * width, generator=generators[i]) for i in index.tolist()]).to(device)
            if exclude is not None:
                scores.scatter_(1, exclude, -1.0)
            return scores.topk(number, dim=1).indices

        def loss_of(where: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                logits = run.forward(_compose(images[active], where, colours), active)
            return margin(logits, *run.criterion(active))

        where = draw_pixels(active, budget, None)
        colours = draw_corners(active, budget)
        loss = loss_of(where, colours)
        for query in range(1, config.queries + 1):
            step_index += 1
            fooled = loss < 0
            if fooled.any():
                hits = active[fooled]
                best[hits] = _compose(images[hits], where[fooled], colours[fooled])
                best_pixels[hits.cpu()] = budget
                done[hits] = True
                active, where, colours, loss = active[~fooled], where[~fooled], colours[~fooled], loss[~fooled]
            if active.numel() == 0 or query == config.queries or run.spent():
                break
            swaps = max(1, min(budget, int(round(resample_fraction(query, config.queries, config.p_init) * budget))))
            swaps = min(swaps, height * width - budget) if height * width > budget else 0
            proposal_where, proposal_colours = where.clone(), colours.clone()
            if swaps:
                # Which of the k pixels leave: the first ``swaps`` of a random permutation per image.
                slots = torch.stack([
                    torch.randperm(budget, generator=generators[i])[:swaps] for i in active.tolist()
                ]).to(device)
                proposal_where.scatter_(1, slots, draw_pixels(active, swaps, where))
                proposal_colours.scatter_(1, slots[:, :, None].expand(-1, -1, 3), draw_corners(active, swaps))
            proposal_loss = loss_of(proposal_where, proposal_colours)
            accept = proposal_loss < loss
            where = torch.where(accept[:, None], proposal_where, where)
            colours = torch.where(accept[:, None, None], proposal_colours, colours)
            loss = torch.where(accept, proposal_loss, loss)
            if query % 10 == 0:
                run.report(step_index, total_steps, f"k={budget}", best_pixels=best_pixels, current_pixels=budget,
                           done=done)
    return best


sparse_rs = Attack("sparse_rs", SparseRSConfig, _sparse_rs)
