"""Drop the pixels a sparse solution does not need, for every image of a batch at once.

Pixels are ordered by how much reverting each raises the margin: first-order (one
gradient) while a set is large, exactly (every single revert checked, in one call)
once it is small. Instead of a binary search over the longest removable prefix of
that order (one network call per step), every candidate prefix length is checked in
one call, for all images together; every removal is checked exactly on the 8-bit image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .checks import Checker
from .config import SparseTuning

_Bounds = dict[int, tuple[int, int]]  # image -> (longest removable prefix, shortest non-removable one)


def prune_batch(
    checker: Checker,
    images: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    *,
    required: float,
    spent: Callable[[], bool],
    tuning: SparseTuning,
    only: torch.Tensor | None = None,
) -> torch.Tensor:
    """Smaller masks that still fool the model by ``required`` logits (the input where nothing goes).

    Large sets (over ``tuning.exact_limit`` pixels) lose the longest removable prefix of their
    first-order order, ``prefix_lengths`` prefix lengths checked per call (``prefix_calls`` calls),
    re-scored each round until a round removes under ``first_order_stall`` of the pixels (then
    exact, if at most ``exact_cap`` are left; a larger set keeps going first-order until a round
    removes none, then its ``exact_cap`` least needed pixels, first order, get the exact checks).
    Small sets are ordered by exact single reverts; the pixels whose revert alone keeps the image
    adversarial are then removed greedily in that order, ``greedy_passes`` calls at most (a call
    checks the next ``greedy_window`` prefixes and keeps those before the first failure, exactly
    what removing them one at a time would keep). ``only`` (N,) bool limits the work to those images.
    """
    masks = masks.clone()
    coarse = masks.flatten(1).sum(dim=1) > tuning.exact_limit
    live = masks.flatten(1).sum(dim=1) > 1
    if only is not None:
        live &= only
    shortlist = _first_order_stage(checker, images, masks, values, coarse, live, required, spent, tuning)
    active = (live & ~coarse).nonzero().squeeze(1)
    if active.numel() == 0 or spent():
        return masks
    queues = _exact_orders(checker, images, masks, values, active, shortlist, required)
    _greedy_removal(checker, images, masks, values, queues, required, spent, tuning)
    return masks


def _first_order_stage(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, coarse: torch.Tensor,
    live: torch.Tensor, required: float, spent: Callable[[], bool], tuning: SparseTuning,
) -> dict[int, torch.Tensor]:
    """Remove first-order prefixes from the large sets (``masks``, ``coarse``, ``live`` updated in place)
    until each goes exact; returns the shortlists of pixels the exact stage checks, where not all."""
    shortlist: dict[int, torch.Tensor] = {}
    while not spent():
        active = (live & coarse).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        orders = _first_order_orders(checker, images, masks, values, active)
        bounds = _narrow(checker, images, masks, values, orders, required, spent, tuning)
        for index, (good, _) in bounds.items():
            if good == 0:  # not even the first pixel: exact checks of the (at most exact_cap) least needed
                coarse[index] = False
                shortlist[index] = orders[index][: tuning.exact_cap]
                continue
            drop = orders[index][:good]
            masks[index, drop[:, 0], drop[:, 1]] = False
            pixels = int(masks[index].sum())
            # First-order orders stop paying once a round removes little: go exact then.
            coarse[index] = pixels > tuning.exact_limit and (
                good >= tuning.first_order_stall * (pixels + good) or pixels > tuning.exact_cap
            )
            live[index] = pixels > 1
    return shortlist


def _first_order_orders(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, active: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Each active image's pixels, least needed first by one gradient (margin rise on revert)."""
    adversarial = torch.where(masks[active, None], values[active], images[active])
    gradients, _ = checker.gradients(adversarial, active)
    need = (gradients * (images[active] - adversarial)).sum(dim=1)  # (A, H, W): margin rise on revert
    orders = {}
    for position, index in enumerate(active.tolist()):
        coords = masks[index].nonzero()
        orders[index] = coords[need[position][coords[:, 0], coords[:, 1]].argsort()]
    return orders


def _narrow(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor,
    orders: dict[int, torch.Tensor], required: float, spent: Callable[[], bool], tuning: SparseTuning,
) -> _Bounds:
    """Bounds on each order's longest removable prefix: ``prefix_lengths`` sizes per call, evenly
    spaced inside the current bounds (two calls narrow k to about k / lengths**2)."""
    bounds = {index: (0, order.shape[0]) for index, order in orders.items()}  # removing all does not fool
    lengths = tuning.prefix_lengths
    for _ in range(tuning.prefix_calls):
        plans = []
        for index, (good, bad) in bounds.items():
            if bad - good > 1:
                # evenly spaced inside (good, bad): one length is a binary search's midpoint
                steps = torch.arange(1, lengths + 1, dtype=torch.float64) / (lengths + 1)
                sizes = (good + (bad - good) * steps).round().long().clamp(good + 1, bad - 1).unique()
                plans.append((index, orders[index], sizes))
        if not plans or spent():
            break
        for index, (good, bad) in _longest_removable(checker, images, masks, values, plans, required).items():
            bounds[index] = (max(good, bounds[index][0]), min(bad, bounds[index][1]))
    return bounds


def _exact_orders(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, active: torch.Tensor,
    shortlist: dict[int, torch.Tensor], required: float,
) -> dict[int, torch.Tensor]:
    """Per image, the pixels (of its shortlist, else all) whose revert alone keeps it adversarial,
    least needed first: every single revert of every image checked in one call."""
    rows, owners, coords_of = [], [], {}
    for index in active.tolist():
        coords = shortlist.get(index, masks[index].nonzero())
        if coords.shape[0] == 0:
            continue
        adversarial = torch.where(masks[index], values[index], images[index])
        batch = adversarial.expand(coords.shape[0], -1, -1, -1).clone()
        batch[torch.arange(coords.shape[0]), :, coords[:, 0], coords[:, 1]] = images[index][:, coords[:, 0], coords[:, 1]].T
        rows.append(batch)
        owners += [index] * coords.shape[0]
        coords_of[index] = coords
    if not rows:
        return {}
    margins, fooled = checker.margins(torch.cat(rows), torch.tensor(owners, device=images.device))
    removable = fooled & (margins < -required)
    owner_tensor = torch.tensor(owners, device=images.device)
    queues = {}
    for index in coords_of:
        rows_of = (owner_tensor == index).nonzero().squeeze(1)
        keep = rows_of[removable[rows_of]]
        keep = keep[margins[keep].argsort()]
        queues[index] = coords_of[index][keep - rows_of[0]]
    return queues


def _greedy_removal(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor,
    queues: dict[int, torch.Tensor], required: float, spent: Callable[[], bool], tuning: SparseTuning,
) -> None:
    """Remove each queue's pixels in order while the image stays adversarial (``masks`` in place),
    ``greedy_window`` removals checked per call, ``greedy_passes`` calls at most."""
    window = tuning.greedy_window
    for _ in range(tuning.greedy_passes):
        plans = [
            (index, queue, torch.arange(1, min(window, queue.shape[0]) + 1)) for index, queue in queues.items() if queue.shape[0]
        ]
        if not plans or spent():
            break
        removed = _longest_removable(checker, images, masks, values, plans, required, first_failure=True)
        for index, queue, _ in plans:
            taken = removed[index][0]
            masks[index, queue[:taken, 0], queue[:taken, 1]] = False
            # The pixel at the first failure stays (none failed: the window ended); the rest is tried on top.
            failed = taken < min(window, queue.shape[0])
            queues[index] = queue[taken + int(failed) :] if int(masks[index].sum()) > 1 else queue[:0]


def _longest_removable(
    checker: Checker,
    images: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    plans: list[tuple[int, torch.Tensor, torch.Tensor]],
    required: float,
    first_failure: bool = False,
) -> dict[int, tuple[int, int]]:
    """For each ``(image, ordered pixels, prefix sizes)``: the longest checked prefix whose
    removal keeps the image adversarial (0: none) and the shortest longer one that does not
    (the image's pixel count: none), all prefixes of all images checked in one call.

    With ``first_failure`` only prefixes before the first failing one count, which is
    what removing the pixels one at a time, in order, would keep.
    """
    rows, owners = [], []
    result: dict[int, tuple[int, int]] = {}
    for index, order, sizes in plans:
        total = int(masks[index].sum())
        result[index] = (0, total)
        for size in sizes[sizes < total].tolist():  # never remove every pixel
            trial = masks[index].clone()
            trial[order[:size, 0], order[:size, 1]] = False
            rows.append(torch.where(trial, values[index], images[index]))
            owners.append((index, size))
    if not rows:
        return result
    owner_index = torch.tensor([index for index, _ in owners], device=images.device)
    margins, fooled = checker.margins(torch.stack(rows), owner_index)
    ok = (fooled & (margins < -required)).tolist()
    failed: set[int] = set()
    for (index, size), good in zip(owners, ok):
        best, worst = result[index]
        if index in failed:
            continue
        if good:  # (a longer prefix can fool where a shorter one did not: keep the longer)
            result[index] = (size, worst if worst > size else int(masks[index].sum()))
        else:
            result[index] = (best, min(worst, size)) if size > best else (best, worst)
            if first_failure:
                failed.add(index)
    return result
