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


def prune_batch(
    checker: Checker,
    images: torch.Tensor,
    masks: torch.Tensor,
    values: torch.Tensor,
    *,
    required: float,
    spent: Callable[[], bool],
    exact_limit: int = 48,
    exact_cap: int = 192,
    lengths: int = 8,
    narrow: int = 2,
    greedy_passes: int = 3,
    window: int = 8,
    stall: float = 0.15,
    only: torch.Tensor | None = None,
) -> torch.Tensor:
    """Smaller masks that still fool the model by ``required`` logits (the input where nothing goes).

    Large sets (over ``exact_limit`` pixels) lose the longest removable prefix of their
    first-order order, ``lengths`` prefix lengths checked per call (``narrow`` calls), re-scored
    each round until a round removes under ``stall`` of the pixels (then exact, if at most
    ``exact_cap`` are left; a larger set keeps going first-order until a round removes none,
    then its ``exact_cap`` least needed pixels, first order, get the exact checks).
    Small sets are ordered by exact single reverts; the pixels whose revert alone keeps
    the image adversarial are then removed greedily in that order, ``greedy_passes``
    calls at most (a call checks the next ``window`` prefixes and keeps those before the
    first failure, exactly what removing them one at a time would keep). ``only`` (N,) bool
    limits the work to those images.
    """
    masks = masks.clone()
    device = images.device
    coarse = masks.flatten(1).sum(dim=1) > exact_limit
    live = masks.flatten(1).sum(dim=1) > 1
    if only is not None:
        live &= only
    shortlist: dict[int, torch.Tensor] = {}  # pixels the exact stage checks, where not all
    # Large sets: first-order order, then a search over prefix lengths with ``lengths`` sizes per
    # call (two calls narrow it to about k / lengths**2), re-scored after each removal.
    while not spent():
        active = (live & coarse).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        adversarial = torch.where(masks[active, None], values[active], images[active])
        gradients, _ = checker.gradients(adversarial, active)
        need = (gradients * (images[active] - adversarial)).sum(dim=1)  # (A, H, W): margin rise on revert
        orders, bounds = {}, {}
        for position, index in enumerate(active.tolist()):
            coords = masks[index].nonzero()
            orders[index] = coords[need[position][coords[:, 0], coords[:, 1]].argsort()]
            bounds[index] = (0, coords.shape[0])  # removing 0 pixels fools, removing all does not
        for _ in range(narrow):
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
        for index, (good, _) in bounds.items():
            if good == 0:  # not even the first pixel: exact checks of the (at most exact_cap) least needed
                coarse[index] = False
                shortlist[index] = orders[index][:exact_cap]
                continue
            drop = orders[index][:good]
            masks[index, drop[:, 0], drop[:, 1]] = False
            pixels = int(masks[index].sum())
            # First-order orders stop paying once a round removes little: go exact then.
            coarse[index] = pixels > exact_limit and (good >= stall * (pixels + good) or pixels > exact_cap)
            live[index] = pixels > 1
    # Small sets: exact single reverts, then greedy removal in that order.
    active = (live & ~coarse).nonzero().squeeze(1)
    if active.numel() == 0 or spent():
        return masks
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
        return masks
    margins, fooled = checker.margins(torch.cat(rows), torch.tensor(owners, device=device))
    removable = fooled & (margins < -required)
    owner_tensor = torch.tensor(owners, device=device)
    queues = {}
    for index in coords_of:
        rows_of = (owner_tensor == index).nonzero().squeeze(1)
        keep = rows_of[removable[rows_of]]
        keep = keep[margins[keep].argsort()]
        queues[index] = coords_of[index][keep - rows_of[0]]
    for _ in range(greedy_passes):
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
    return masks


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
