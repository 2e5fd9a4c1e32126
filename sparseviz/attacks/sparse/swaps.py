"""Gradient-guided local search that shrinks sparse adversarial examples, all images at once.

Pruning only ever drops pixels, so a solution whose every pixel is needed stays as
it is, even when a smaller set elsewhere in the image would fool the model (on the
bundled photos a random search found 1-pixel solutions where pruning stopped at 5).
This search moves pixels instead. To go from k to k - 1 pixels it drops the
least-needed pixel and then, for a few rounds, swaps a weakly needed pixel for one
of the pixels whose move to a colour corner the gradient says lowers the margin
most; a round keeps the best swap if it lowers the margin, and the level succeeds
as soon as a swap fools the model. Every candidate is checked exactly (forward
pass on the 8-bit image); the gradient only proposes.

A round costs two network calls for the whole batch, whatever its size: one
gradient at every image's current candidate, one forward pass over every image's
proposals. Images never wait for each other, and an image's result does not depend
on its batch mates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ...models import ImageClassifier
from .checks import Checker

_Variant = tuple[torch.Tensor, torch.Tensor]  # (mask (H, W), colours (3, H, W))


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
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One image's search (see :func:`shrink_batch`); returns its mask, colours and model calls."""
    calls = torch.zeros(1, dtype=torch.long, device=image.device)
    checker = Checker(model, label.reshape(1), None if target is None else target.reshape(1), calls)
    masks, colours = shrink_batch(
        checker, image[None], mask[None], values[None], required=required, rounds=rounds, proposals=proposals,
        max_calls=max_calls, spent=spent,
    )
    return masks[0], colours[0], int(calls[0])


@dataclass
class _Search:
    """Per image: the best solution, the candidate one pixel smaller being worked on, and the bookkeeping."""

    best_masks: torch.Tensor
    best_values: torch.Tensor
    candidates: torch.Tensor
    colours: torch.Tensor
    tried: torch.Tensor  # pixels already proposed at this level
    current: torch.Tensor  # the candidate's margin (inf: not known yet)
    level_rounds: torch.Tensor
    starting: torch.Tensor  # a new level begins: drop a pixel first
    stopped: torch.Tensor
    spent_calls: torch.Tensor

    @classmethod
    def start(cls, masks: torch.Tensor, values: torch.Tensor) -> _Search:
        count, device = masks.shape[0], masks.device
        return cls(
            best_masks=masks.clone(), best_values=values.clone(), candidates=masks.clone(), colours=values.clone(),
            tried=torch.zeros_like(masks), current=torch.full((count,), float("inf"), device=device),
            level_rounds=torch.zeros(count, dtype=torch.long, device=device),
            starting=torch.ones(count, dtype=torch.bool, device=device), stopped=~masks.flatten(1).any(dim=1),
            spent_calls=torch.zeros(count, dtype=torch.long, device=device),
        )


@dataclass
class _Trials:
    """The variants of one round, of every image, checked in one call."""

    rows: list[torch.Tensor] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    variants: list[_Variant] = field(default_factory=list)


def shrink_batch(
    checker: Checker,
    images: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    *,
    required: float,
    rounds: int,
    proposals: int,
    max_calls: int,
    spent: Callable[[], bool],
    on_round: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Look for smaller pixel sets that still fool the model, one pixel fewer at a time.

    ``images`` (N, 3, H, W) are the originals, ``masks`` (N, H, W) the pixels of each
    solution (an empty mask: nothing to search) and ``values`` (N, 3, H, W, 8-bit) their
    colours; a solution must beat the boundary by ``required`` logits. An image stops
    once it has spent ``max_calls`` model calls (a round costs 1 + ``proposals``, plus 1
    at the start of a level; the round that crosses the budget finishes), when a level
    fails ``rounds`` times, or at one pixel. ``on_round(calls, best_pixels)`` follows
    every round. Returns the smallest solutions found (the input ones where none).
    """
    state = _Search.start(masks, values)
    while not spent():
        pixels = state.best_masks.flatten(1).sum(dim=1)
        active = (~state.stopped & (state.spent_calls < max_calls) & (pixels > 1)).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        # One gradient call: at the solution for images starting a level (to choose the pixel to
        # drop), at the current candidate for the others.
        rows = torch.where(
            state.starting[active, None, None, None],
            torch.where(state.best_masks[active, None], state.best_values[active], images[active]),
            torch.where(state.candidates[active, None], state.colours[active], images[active]),
        )
        gradients, margins = checker.gradients(rows, active)
        state.spent_calls[active] += 1
        trials = _Trials()
        for position, index in enumerate(active.tolist()):
            _propose(state, trials, index, images[index], gradients[position], margins[position], proposals)
        if not trials.rows:
            continue
        _keep_best_trials(checker, state, trials, required, rounds)
        if on_round is not None:
            on_round(state.spent_calls, state.best_masks.flatten(1).sum(dim=1))
    return state.best_masks, state.best_values


def _propose(state: _Search, trials: _Trials, index: int, image: torch.Tensor, gradient: torch.Tensor,
             margin: torch.Tensor, proposals: int) -> None:
    """Add image ``index``'s variants of this round to ``trials``: at a new level the candidate
    itself (its margin, and maybe a success), then up to ``proposals`` swaps into the pixels
    whose move to a colour corner lowers the margin most (first order), none tried before."""
    variants: list[_Variant] = []
    if state.starting[index]:
        candidate, colour = state.best_masks[index].clone(), state.best_values[index].clone()
        adversarial = torch.where(candidate, colour, image)
        candidate.view(-1)[_least_needed(gradient, image, adversarial, candidate, 1)] = False
        state.candidates[index], state.colours[index] = candidate, colour
        state.tried[index] = False
        state.level_rounds[index] = 0
        state.current[index] = float("inf")
        variants.append((candidate, colour))
    else:
        state.current[index] = margin
    candidate, colour = state.candidates[index], state.colours[index]
    adversarial = torch.where(candidate, colour, image)
    corners = (gradient < 0).to(image.dtype)  # per channel, the end that lowers the margin
    gain = -(gradient * (corners - image)).sum(dim=0)  # first-order margin drop
    gain = gain.masked_fill(candidate | state.tried[index], float("-inf")).flatten()
    additions = gain.topk(min(proposals, gain.numel())).indices
    additions = additions[gain[additions] > float("-inf")]
    if additions.numel() == 0 and not variants:  # every pixel has been tried at this level
        state.stopped[index] = True
        return
    removals = _least_needed(gradient, image, adversarial, candidate, 2)
    for number, added in enumerate(additions):
        trial_mask, trial_colour = candidate.clone(), colour.clone()
        trial_mask.view(-1)[removals[number % removals.numel()]] = False
        trial_mask.view(-1)[added] = True
        trial_colour.view(3, -1)[:, added] = corners.view(3, -1)[:, added]
        variants.append((trial_mask, trial_colour))
    state.tried[index].view(-1)[additions] = True
    for trial_mask, trial_colour in variants:
        trials.rows.append(torch.where(trial_mask, trial_colour, image))
        trials.variants.append((trial_mask, trial_colour))
        trials.owners.append(index)


def _keep_best_trials(checker: Checker, state: _Search, trials: _Trials, required: float, rounds: int) -> None:
    """Check every trial in one call; per image, move to the best variant if it lowers the margin,
    and start the next level from it if it fools the model (else count a failed round)."""
    owners = torch.tensor(trials.owners, device=state.best_masks.device)
    trial_margins, fooled = checker.margins(torch.stack(trials.rows), owners)
    state.spent_calls.index_add_(0, owners, torch.ones_like(owners))
    fooled = fooled & (trial_margins < -required)
    for index in owners.unique().tolist():
        rows_of = (owners == index).nonzero().squeeze(1)
        pick = int(rows_of[trial_margins[rows_of].argmin()])
        if float(trial_margins[pick]) < float(state.current[index]):
            state.candidates[index], state.colours[index] = trials.variants[pick]
            state.current[index] = trial_margins[pick]
        state.starting[index] = False
        if bool(fooled[pick]):  # one pixel fewer: the next level starts from here
            state.best_masks[index], state.best_values[index] = state.candidates[index], state.colours[index]
            state.starting[index] = True
        else:
            state.level_rounds[index] += 1
            state.stopped[index] = bool(state.level_rounds[index] >= rounds)


def _least_needed(
    gradient: torch.Tensor, image: torch.Tensor, adversarial: torch.Tensor, mask: torch.Tensor, count: int
) -> torch.Tensor:
    """Flat indices of the ``count`` selected pixels whose revert raises the margin least (first order)."""
    need = (gradient * (image - adversarial)).sum(dim=0).masked_fill(~mask, float("inf"))
    return need.flatten().topk(min(count, int(mask.sum())), largest=False).indices
