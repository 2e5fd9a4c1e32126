"""The reparameterized sparse (l0) attack.

Choosing *which* pixels to change is a discrete, NP-hard problem. We relax it:

    x_adv = x + m * (v - x),   m = sigmoid(a / T)  (N, 1, H, W),   v = sigmoid(w)  (N, 3, H, W)

``m`` says *where* (one gate per pixel, shared by its three channels), ``v`` says
*what colour* the pixel becomes; both stay in [0, 1] by construction, so ``x_adv``
never leaves the box. Adam descends on

    loss = max(margin(x_adv), -kappa) + lambda * sum(m)

where ``margin`` is negative exactly when the model is fooled (see ``base.margin``)
and ``sum(m)`` is the relaxed pixel count; ``lambda = sparsity_weight x`` a per-image
scale (adapted up while the binary mask fools the model, down while it does not).

These details make it work in tens of steps (untargeted) to a few hundred (targeted):
- A zero perturbation gives the gate no adversarial gradient, so ``v`` starts from
  the corners a signed gradient step points to, and the gate logits start from each
  pixel's first-order payoff (how much setting it to ``v`` lowers the margin).
- Every step also evaluates the *binary* mask (``a > 0``) on the 8-bit rounded image
  in the same batch, and keeps the sparsest binary solution that fools the model.
- The kept solution is then pruned (``prune``): pixels whose removal keeps the image
  adversarial are dropped, in order of least need, each removal checked exactly. Its
  colours are re-optimised for margin before each prune (``refine_cycles``; sets of at most
  8 pixels never, sets of at most 150 only after a first plain prune): the first success is
  barely past the boundary, and the slack lets pruning remove more.
- Pruning never moves a pixel, so a gradient-guided swap search (``swap_search``)
  then tries to reach one pixel fewer at a time by trading needed pixels for others.
- A targeted run (hundreds of pixels) is still shrinking when the annealing ends, so it
  goes on at the final temperature (``settle_steps``), which for it is a warmer 0.2: a
  cold gate far from zero can no longer close.

Pruning, colour refinement and the swap search run for all images of a call together,
each of their rounds one network call however many variants it checks (``checks``), so
a GPU's latency follows the number of rounds, not of images or candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import ImageClassifier
from .base import (
    AttackProgress,
    ProgressCallback,
    check_range,
    is_adversarial,
    margin,
    quantize,
)
from .options import option
from .runner import Attack, AttackConfig, AttackRun
from .checks import Checker
from .prune import prune_batch
from .swap_search import shrink_batch


# Another refine-and-prune cycle only after one that removed this share of the pixels; and a
# set that stalls first order gets exact checks of this many least-needed pixels: per kind of
# attack (targeted). Untargeted sets either collapse or stall within a cycle or two. Targeted
# sets of hundreds of pixels lose 5-10% every cycle for many cycles; there the 192 exact checks
# per prune were most of the cost. Replayed on 18 development photos (6 per band), targeted:
# median 156.5 -> 129.5 px for 3% more model calls.
_CYCLE_GAIN = {False: 0.15, True: 0.05}
_EXACT_CAP = {False: 192, True: 64}
_LARGE_SET = 48  # a set of more pixels than this gets twice the colour refinement before a prune
# Sets of at most this many pixels skip colour refinement: exact pruning and the swap search
# handle them. On the 41 development photos: invocations median 62 -> 58 (low band 50.5 -> 45),
# post-processing 0.3 s faster, final pixels unchanged on 38 photos (one fewer, two +1).
_REFINE_MIN = 8
# Refinement before the first prune only for sets of more than this many pixels: smaller ones lose
# most of their pixels to a plain prune, and the first cycle refines what is left (if over 8).
# On the 41 development photos (untargeted): post-processing time -10% in total (low band median
# 2.5 -> 1.2 s), invocations median low 41 -> 32.5 and mid 63.5 -> 56.5, fewer pixels on 7 photos
# and more on 2, the same worst case (68).
_REFINE_FIRST_MIN = 150
_MARGIN_SLACK = 1e-3  # a kept solution must beat the boundary by this much (logits), so
# float differences between batch sizes can never flip the final 8-bit check.


@dataclass(frozen=True)
class SparseConfig(AttackConfig):
    sparsity_weight: float = option(1.0, low=0.0, high=1000.0, ui=(0.1, 4.0, 0.05),
                                    help="the main knob: higher = fewer pixels, at some risk of failing")
    steps: int = option(100, low=1, high=10_000, ui=(1, 2000, 10),
                        help="at most this many optimisation steps; most images stop much earlier (see patience)")
    # (~0.12 s per step for EfficientNet-Lite0 on a 2-core CPU)
    mask_lr: float = option(0.25, low=1e-4, high=10.0, help="Adam step on the gate logits (they live in about [-6, 6])")
    value_lr: float = option(0.1, low=1e-4, high=10.0, help="Adam step on the colour logits")
    kappa: float = option(2.0, low=0.0, high=100.0,
                          help="stop pushing the margin once it is this far past the boundary (logits)")
    initial_pixels: int = option(400, low=1, high=10_000_000, help="gates initially open: the top first-order pixels")
    temperature_start: float = option(1.0, low=1e-3, high=100.0, help="gate softness at step 0")
    temperature_end: float | None = option(None, low=1e-3, high=100.0,
                                           help="gate softness at the end of the annealing (close to binary); at most "
                                           "temperature_start; none = 0.1 untargeted, 0.2 targeted")
    lambda_start: float = option(0.4, low=0.0, high=100.0,
                                 help="lambda at step 0, as a fraction of the median open pixel's payoff")
    lambda_up: float = option(1.5, low=1.0, high=100.0, help="per-step factor on lambda while the binary mask fools the model")
    lambda_down: float = option(0.7, low=0.01, high=1.0, help="per-step factor on lambda while it does not")
    momentum: float = option(0.5, low=0.0, high=0.999,
                             help="Adam's beta1: low, so the gates react within a few steps to lambda")
    patience: int | None = option(None, low=1, high=10_000, help="stop an image once its best pixel count has not "
                                  "improved for this many steps; none = 4 untargeted, 16 targeted")
    settle_steps: int | None = option(None, low=0, high=10_000, help="more steps at the final temperature after the "
                                      "first `steps`, for images still shrinking; none = 0 untargeted, 200 targeted")
    relaxed_view: bool | None = option(None, help="also descend on the soft-gated image (smoother search, 2 images "
                                       "per step); none = only for targeted attacks")
    prune: bool = option(True, help="drop pixels the final solution does not need")
    refine_steps: int = option(5, low=0, high=10_000,
                               help="Adam steps on the kept pixels' colours (for margin) before each prune")
    refine_cycles: int | None = option(None, low=0, high=100, help="refine-and-prune cycles after the first prune; "
                                       "an image gets another only if the last prune removed at least 15% (targeted: "
                                       "5%) of its pixels, 2 or more; none = 4 untargeted, 8 targeted")
    # 4 rounds per level (was 6), on the 41 development photos: invocations median 58 -> 52 and 14%
    # less post-processing time; 8 photos kept 1-7 more pixels (all photos: 740 -> 760 in total).
    swap_rounds: int = option(4, low=0, high=10_000,
                              help="after pruning, swap rounds per attempt at one pixel fewer; 0 = no swaps")
    swap_proposals: int = option(8, low=1, high=10_000, help="candidate swaps checked per round (one forward pass each)")
    swap_calls: int | None = option(None, low=0, high=10_000_000, help="model calls per image the swap search may "
                                    "spend; none = 120 untargeted, 0 targeted")
    seed: int = option(0, low=0, high=2**63 - 1, ui=(0, 2**31 - 1, 1),
                       help="seeds the (tiny) tie-breaking noise; same seed = same result")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature_end is not None:
            check_range("temperature_end", self.temperature_end, 1e-3, self.temperature_start)

    def temperature_end_for(self, targeted: bool) -> float:
        """Gate softness at the end of the annealing, for this kind of attack.

        Measured on 12 development-set photos (4 per band), targeted with the settle steps:
        0.2 instead of 0.1 took the median from 172.5 to 156.5 pixels (fewer on 8 photos,
        more on 4; 0.3: 177.5) for about 25% more time. A colder gate barely moves once it
        is far from zero (its gradient is sigmoid'(a / T) / T), so a long targeted run
        stalls with gates that can no longer close. Untargeted runs stop long before.
        The value never exceeds ``temperature_start``.
        """
        if self.temperature_end is not None:
            return self.temperature_end
        return min(0.2 if targeted else 0.1, self.temperature_start)

    def patience_for(self, targeted: bool) -> int:
        """Patience for this kind of attack.

        Measured on the bundled photos (EfficientNet-Lite0): untargeted flips are found
        within a few steps and pruning does the rest, so waiting 4 steps instead of 8
        gave the same median pixels in fewer steps; a targeted run keeps shrinking its
        (hundreds of) pixels for longer, and patience 4 left ~45% more pixels there. On
        12 development-set photos, targeted, patience 16 with ``settle_steps`` took the
        median from 201 to 170 pixels (after pruning) for about 40% more time.
        """
        if self.patience is not None:
            return self.patience
        return 16 if targeted else 4

    def settle_steps_for(self, targeted: bool) -> int:
        """Steps at the final temperature after the annealed ones, for this kind of attack.

        Measured on the development set: a targeted run is still shrinking its hundreds
        of pixels when the annealing ends (with patience 16 every run hit the 100-step
        cap; 200 more steps took one photo from 295 to 96 pixels before pruning). A longer
        ``steps`` is not the same: it slows the annealing, and left more pixels. An
        untargeted run has long stopped by then.
        """
        if self.settle_steps is not None:
            return self.settle_steps
        return 200 if targeted else 0

    def refine_cycles_for(self, targeted: bool) -> int:
        """Refine-and-prune cycles after the first prune, for this kind of attack.

        Untargeted, a fourth cycle rarely runs (each needs the last to have removed 15%);
        targeted sets keep losing 5-10% per cycle (see ``_CYCLE_GAIN``), so they get 8.
        """
        if self.refine_cycles is not None:
            return self.refine_cycles
        return 8 if targeted else 4

    def total_steps_for(self, targeted: bool) -> int:
        """At most this many optimisation steps: the annealed ones, then the settle steps."""
        return self.steps + self.settle_steps_for(targeted)

    def relaxed_view_for(self, targeted: bool) -> bool:
        """Whether to descend on the soft-gated image too, for this kind of attack.

        Measured on the bundled photos: untargeted, the extra image per step doubled
        the cost without fewer pixels; targeted to a random class, the binary view alone
        fooled 3 of 6 photos and the relaxed view 6 of 6.
        """
        return targeted if self.relaxed_view is None else self.relaxed_view

    def swap_calls_for(self, targeted: bool) -> int:
        """Model calls the swap search may spend on one image, for this kind of attack.

        Measured on the bundled photos (EfficientNet-Lite0, 2 threads): untargeted, 120
        calls took the median from 6 to 2 pixels; targeted, the same 120 calls removed
        0-13 of hundreds of pixels per photo (under 2%) and added 5-10 s to each, so
        targeted runs skip it.
        """
        if self.swap_calls is not None:
            return self.swap_calls
        return 0 if targeted else 120

    @property
    def required_margin(self) -> float:
        """How far past the decision boundary a kept solution must be (logits).

        Below weight 1 the attack pays for confidence with pixels: a solution must fool
        the model by ln(1 / sparsity_weight) logits (capped at kappa), so lowering the
        weight gives more pixels and a more confident flip, raising it the reverse.
        """
        confidence = math.log(1.0 / self.sparsity_weight) if self.sparsity_weight > 0 else math.inf
        return _MARGIN_SLACK + min(self.kappa, max(0.0, confidence))


def _first_order_start(
    model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial colours (channel corners along the descent direction), per-pixel payoff,
    and which images are already adversarial (from the same forward pass)."""
    probe = images.clone().requires_grad_(True)
    logits = model(probe)
    (gradient,) = torch.autograd.grad(margin(logits, labels, targets).sum(), probe)
    corners = (gradient < 0).float()  # lowering the margin: push each channel to the matching end
    payoff = -(gradient * (corners - images)).sum(dim=1, keepdim=True)  # first-order margin drop
    return corners, payoff, is_adversarial(logits.detach(), labels, targets)


def _to_logit(p: torch.Tensor, eps: float = 0.02) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def _sparse(run: AttackRun, config: SparseConfig) -> torch.Tensor:
    """Fool ``model`` on each image by changing as few pixels as it can find.

    Images are independent: image ``i``'s result does not depend on its batch mates.
    """
    model, images, labels, targets = run.model, run.images, run.labels, run.targets
    budget, progress = run, run.progress
    checker = Checker(model, labels, targets, run.calls)

    corners, payoff, already = _first_order_start(model, images, labels, targets)
    checker.charge(torch.arange(run.count, device=run.device))
    best_masks, values = _optimize(
        checker, images, labels, targets, corners, payoff, config, budget, progress, already
    )
    if config.prune:
        best_masks, values = _prune_and_refine(
            checker, images, best_masks, values, config, budget, run.targeted, progress
        )

    adversarials = torch.where(best_masks.unsqueeze(1), values, images)
    return torch.where(already[:, None, None, None], images, adversarials)


sparse_attack = Attack("sparse", SparseConfig, _sparse)


def _initial_gates(payoff: torch.Tensor, config: SparseConfig) -> torch.Tensor:
    """Gate logits ranked by payoff: the top ``initial_pixels`` start open (> 0).

    A small seeded jitter breaks ties between equally good pixels, so different
    seeds can find different (equally valid) pixel sets.
    """
    count, _, height, width = payoff.shape
    open_count = min(config.initial_pixels, height * width)
    order = payoff.flatten(1).argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    gates = (3.0 * (1.0 - ranks.float() / open_count)).clamp(min=-3.0)
    # One jitter pattern for every image, so an image's result does not depend on its batch position.
    generator = torch.Generator().manual_seed(config.seed)
    jitter = 0.05 * torch.randn((1, height * width), generator=generator).to(gates.device)
    return (gates + jitter).view(count, 1, height, width)


def _optimize(
    checker: Checker,
    images: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    corners: torch.Tensor,
    payoff: torch.Tensor,
    config: SparseConfig,
    budget: AttackRun,
    progress: ProgressCallback | None,
    skip: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint descent on gates and colours; returns the sparsest binary success per image."""
    count, _, height, width = images.shape
    device = images.device
    gates = _initial_gates(payoff, config).requires_grad_(True)
    colour_logits = _to_logit(corners).requires_grad_(True)
    optimizer = torch.optim.Adam(
        [{"params": [gates], "lr": config.mask_lr}, {"params": [colour_logits], "lr": config.value_lr}],
        betas=(config.momentum, 0.99),
    )
    # lambda's unit is "margin drop per pixel": start at the payoff of the median open pixel.
    top = payoff.flatten(1).topk(min(config.initial_pixels, height * width), dim=1).values
    lam = config.lambda_start * config.sparsity_weight * top.median(dim=1).values.clamp(min=1e-6)
    lam_floor = 0.1 * lam  # without a floor, a long unfooled stretch lets the mask flood the image

    best_masks = torch.zeros(count, height, width, dtype=torch.bool, device=device)
    best_values = corners.clone()
    best_pixels = torch.full((count,), -1, dtype=torch.long, device=device)
    done = skip.clone()
    since_best = torch.zeros(count, dtype=torch.long, device=device)
    patience = config.patience_for(targets is not None)
    relaxed_view = config.relaxed_view_for(targets is not None)
    total_steps = config.total_steps_for(targets is not None)
    temperature_end = config.temperature_end_for(targets is not None)

    for step in range(total_steps):
        if done.all() or budget.spent():
            break
        active = (~done).nonzero().squeeze(1)
        temperature = config.temperature_start * (temperature_end / config.temperature_start) ** (
            min(step, config.steps - 1) / max(1, config.steps - 1)
        )
        x = images[active]
        gate_logits = gates[active]
        soft = torch.sigmoid(gate_logits / temperature)
        colours = torch.sigmoid(colour_logits[active])
        # The binary image is exactly the 8-bit image we would return (straight-through
        # gradients), so "fooled" is never an artefact of the faint dense perturbation
        # that leaks through nearly-closed soft gates. The relaxed image (soft gates),
        # when enabled, rides in the same batch and gives every pixel a smooth say.
        binary = (gate_logits > 0).float()
        hard_colours = quantize(colours.detach())
        straight_gate = binary + soft - soft.detach()
        straight_colours = colours + (hard_colours - colours.detach())
        hard = x + straight_gate * (straight_colours - x)
        sub_labels = labels[active]
        sub_targets = None if targets is None else targets[active]
        if relaxed_view:
            relaxed = x + soft * (colours - x)
            both = checker.model(torch.cat([hard, relaxed]))
            logits, relaxed_margin = both[: x.shape[0]], margin(both[x.shape[0] :], sub_labels, sub_targets)
            checker.charge(torch.cat([active, active]))
        else:
            logits, relaxed_margin = checker.model(hard), None
            checker.charge(active)
        margins = margin(logits, sub_labels, sub_targets)
        with torch.no_grad():
            fooled = is_adversarial(logits, sub_labels, sub_targets) & (margins < -config.required_margin)
            pixels = binary.flatten(1).sum(dim=1).long()
            better = fooled & ((best_pixels[active] < 0) | (pixels < best_pixels[active]))
            improved = active[better]
            best_pixels[improved] = pixels[better]
            best_masks[improved] = binary[better][:, 0].bool()
            best_values[improved] = hard_colours[better]
            # Stagnation only counts near the best: far above it the mask is still shrinking.
            near_best = pixels <= 2 * best_pixels[active]
            since_best[active] = torch.where(better, 0, since_best[active] + near_best.long())
            found = best_pixels[active] >= 0
            # One pixel cannot be beaten (zero means already fooled, handled before the loop).
            done[active] = found & ((since_best[active] >= patience) | (best_pixels[active] == 1))
            lam[active] = torch.where(fooled, lam[active] * config.lambda_up, lam[active] * config.lambda_down)
            lam[active] = lam[active].clamp(min=lam_floor[active])

        loss = margins.clamp(min=-config.kappa) + lam[active] * soft.flatten(1).sum(dim=1)
        if relaxed_margin is not None:
            loss = loss + relaxed_margin.clamp(min=-config.kappa)
        optimizer.zero_grad(set_to_none=False)
        loss.sum().backward()
        optimizer.step()

        if progress is not None:
            with torch.no_grad():
                true_probs = logits.detach().softmax(dim=1).gather(1, sub_labels[:, None])[:, 0]
            current = torch.full((count,), -1, dtype=torch.long)
            current[active.cpu()] = pixels.cpu()
            confidence = torch.full((count,), float("nan"))
            confidence[active.cpu()] = true_probs.cpu()
            progress(
                AttackProgress(
                    step=step + 1,
                    total_steps=total_steps,
                    phase="optimize",
                    best_pixels=best_pixels.cpu(),
                    current_pixels=current,
                    true_confidence=confidence,
                    done=done.cpu(),
                )
            )
    return best_masks, best_values


def _refine_colours(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, selected: torch.Tensor,
    config: SparseConfig, budget: AttackRun,
) -> torch.Tensor:
    """Re-optimise the kept pixels' colours for margin, so that the next prune can drop more.

    All ``selected`` images step together (one network call per step, soft and 8-bit
    images in one batch): ``refine_steps`` steps, twice that for sets over ``_LARGE_SET``
    pixels, whose first-order prune needs the slack most. Returns colours that still
    fool the model (the input colours where no step did).
    """
    values = values.clone()
    if selected.numel() == 0:
        return values
    x, mask = images[selected], masks[selected, None]
    large = mask.flatten(1).sum(dim=1) > _LARGE_SET
    colour_logits = _to_logit(values[selected], eps=0.01).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([colour_logits], lr=config.value_lr)
    best = torch.full((selected.numel(),), float("inf"), device=images.device)
    everyone = torch.arange(selected.numel(), device=images.device)
    for step in range(2 * config.refine_steps):
        rows = everyone if step < config.refine_steps else everyone[large]
        if budget.spent() or rows.numel() == 0:
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
            better = is_adversarial(hard, labels, targets) & (hard_margin < best[rows]) & (hard_margin < -config.required_margin)
            best[rows[better]] = hard_margin[better]
            values[owners[better]] = quantize(colours.detach()[better])
        optimizer.zero_grad()
        margin(soft, labels, targets).sum().backward()
        optimizer.step()
    return values


def _prune_and_refine(
    checker: Checker, images: torch.Tensor, masks: torch.Tensor, values: torch.Tensor, config: SparseConfig,
    budget: AttackRun, targeted: bool, progress: ProgressCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune every image's solution, re-optimise its colours and prune again when worthwhile,
    then look for smaller solutions by swapping pixels; all images together."""
    required = config.required_margin
    pixels = masks.flatten(1).sum(dim=1)
    if config.refine_steps and not budget.spent():
        # The optimisation stops at the first binary success, just past the boundary, where
        # hardly any pixel can go; re-optimised colours give pruning the slack to remove many
        # (large sets only: a plain prune shrinks the others, and the first cycle refines them).
        values = _refine_colours(
            checker, images, masks, values, (pixels > _REFINE_FIRST_MIN).nonzero().squeeze(1), config, budget
        )
    exact_cap = _EXACT_CAP[targeted]
    masks = prune_batch(checker, images, masks, values, required=required, spent=budget.spent, exact_cap=exact_cap)
    for cycle in range(config.refine_cycles_for(targeted)):
        before, pixels = pixels, masks.flatten(1).sum(dim=1)
        # Another cycle only after one that paid: a share of the pixels, and more than one.
        paid = (pixels <= (1 - _CYCLE_GAIN[targeted]) * before) & (before - pixels >= 2)
        chosen = (pixels > _REFINE_MIN) & (paid | (cycle == 0))
        if not config.refine_steps or budget.spent() or not chosen.any():
            break
        values = _refine_colours(checker, images, masks, values, chosen.nonzero().squeeze(1), config, budget)
        masks = prune_batch(
            checker, images, masks, values, required=required, spent=budget.spent, only=chosen, exact_cap=exact_cap
        )
    swap_calls = config.swap_calls_for(targeted)
    if config.swap_rounds and swap_calls and not budget.spent():
        masks, values = shrink_batch(
            checker, images, masks, values, required=required, rounds=config.swap_rounds,
            proposals=config.swap_proposals, max_calls=swap_calls, spent=budget.spent,
            on_round=None if progress is None else _swap_reporter(progress, swap_calls),
        )
    return masks, values


def _swap_reporter(progress: ProgressCallback, total: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """Turn the swap search's per-round report into an AttackProgress."""

    def report(calls_spent: torch.Tensor, best: torch.Tensor) -> None:
        best_pixels = best.long().cpu()
        progress(
            AttackProgress(
                step=min(int(calls_spent.max()), total),
                total_steps=total,
                phase="swap search",
                best_pixels=best_pixels,
                current_pixels=best_pixels.clone(),
                true_confidence=torch.full((best.shape[0],), float("nan")),
                done=torch.zeros(best.shape[0], dtype=torch.bool),
            )
        )

    return report
