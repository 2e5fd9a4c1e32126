"""The sparse attack's search step on the shared runner: optimise, then refine, prune and swap."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..runner import Attack, AttackRun
from .checks import Checker
from .config import SparseConfig, SparseTuning
from .optimize import first_order_start, optimize
from .refine import refine_and_prune
from .swaps import shrink_batch


def _sparse(run: AttackRun, config: SparseConfig) -> torch.Tensor:
    """Fool the model on each image by changing as few pixels as it can find.

    Images are independent: image ``i``'s result does not depend on its batch mates.
    """
    tuning = config.tuning_for(run.targeted)
    run.params["tuning"] = dataclasses.asdict(tuning)  # the result records the tuning this call ran on
    checker = Checker.of(run)
    corners, payoff, already = first_order_start(run)
    masks, values = optimize(run, checker, corners, payoff, already, config, tuning)
    if tuning.prune:
        masks, values = postprocess(
            checker, run.images, masks, values, tuning=tuning, required=config.required_margin(tuning), spent=run.spent,
            on_swap_round=None if run.progress is None else _swap_reporter(run, tuning.swap_calls),
        )
    adversarials = torch.where(masks.unsqueeze(1), values, run.images)
    return torch.where(already[:, None, None, None], run.images, adversarials)


sparse_attack = Attack("sparse", SparseConfig, _sparse)


def postprocess(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, *, tuning: SparseTuning,
    required: float, spent: Callable[[], bool], on_swap_round: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine-and-prune cycles, then the swap search for smaller sets; all images together.

    Separate from the runner so that benchmarks can replay it on cached optimisation outputs.
    """
    masks, values = refine_and_prune(checker, images, masks, values, tuning=tuning, required=required, spent=spent)
    if tuning.swap_rounds and tuning.swap_calls and not spent():
        masks, values = shrink_batch(
            checker, images, masks, values, required=required, rounds=tuning.swap_rounds,
            proposals=tuning.swap_proposals, max_calls=tuning.swap_calls, spent=spent, on_round=on_swap_round,
        )
    return masks, values


def _swap_reporter(run: AttackRun, total: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The swap search's per-round report as a progress snapshot (steps = model calls spent)."""

    def report(calls_spent: torch.Tensor, best: torch.Tensor) -> None:
        pixels = best.long()
        run.report(min(int(calls_spent.max()), total), total, "swap search", best_pixels=pixels, current_pixels=pixels)

    return report
