"""The joint descent on per-pixel gates and colours; returns the sparsest binary success per image.

Every step evaluates the *binary* mask on the 8-bit image the attack would return, with
straight-through gradients, so "fooled" is never an artefact of the faint dense perturbation
that leaks through nearly-closed soft gates; the sparsest binary success is kept. The
relaxed (soft-gated) image, when the tuning asks for it, rides in the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import is_adversarial, margin, quantize
from ..runner import AttackRun
from .checks import Checker
from .config import SparseConfig, SparseTuning


def first_order_start(run: AttackRun) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial colours (channel corners along the descent direction), per-pixel payoff,
    and which images are already adversarial, from the runner's pre-check (one call).

    A zero perturbation gives the gate no adversarial gradient, so the colours start from
    the corners a signed gradient step points to, and the gates from each pixel's payoff.
    """
    gradient, already = run.already_adversarial_with_gradient()
    images = run.images
    corners = (gradient < 0).float()  # lowering the margin: push each channel to the matching end
    payoff = -(gradient * (corners - images)).sum(dim=1, keepdim=True)  # first-order margin drop
    return corners, payoff, already


def to_logit(p: torch.Tensor, eps: float = 0.02) -> torch.Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def _initial_gates(payoff: torch.Tensor, tuning: SparseTuning, seed: int) -> torch.Tensor:
    """Gate logits ranked by payoff: the top ``initial_pixels`` start open (> 0).

    A small seeded jitter breaks ties between equally good pixels, so different
    seeds can find different (equally valid) pixel sets.
    """
    count, _, height, width = payoff.shape
    open_count = min(tuning.initial_pixels, height * width)
    order = payoff.flatten(1).argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    gates = (3.0 * (1.0 - ranks.float() / open_count)).clamp(min=-3.0)
    # One jitter pattern for every image, so an image's result does not depend on its batch position.
    generator = torch.Generator().manual_seed(seed)
    jitter = 0.05 * torch.randn((1, height * width), generator=generator).to(gates.device)
    return (gates + jitter).view(count, 1, height, width)


@dataclass
class _Descent:
    """What the loop carries from step to step, one row per image."""

    gates: torch.Tensor  # (N, 1, H, W) gate logits
    colour_logits: torch.Tensor  # (N, 3, H, W)
    optimizer: torch.optim.Optimizer
    lam: torch.Tensor  # (N,) sparsity price, in margin drop per pixel
    lam_floor: torch.Tensor
    best_masks: torch.Tensor  # (N, H, W) bool: the sparsest binary success so far
    best_values: torch.Tensor  # (N, 3, H, W) its 8-bit colours
    best_pixels: torch.Tensor  # (N,) its pixel count, -1 while none
    done: torch.Tensor  # (N,) bool
    since_best: torch.Tensor  # (N,) steps near the best without improving it


def _start(corners: torch.Tensor, payoff: torch.Tensor, skip: torch.Tensor, config: SparseConfig,
           tuning: SparseTuning) -> _Descent:
    count, _, height, width = corners.shape
    device = corners.device
    gates = _initial_gates(payoff, tuning, config.seed).requires_grad_(True)
    colour_logits = to_logit(corners).requires_grad_(True)
    optimizer = torch.optim.Adam(
        [{"params": [gates], "lr": tuning.mask_lr}, {"params": [colour_logits], "lr": tuning.value_lr}],
        betas=(tuning.momentum, 0.99),
    )
    # lambda's unit is "margin drop per pixel": start at the payoff of the median open pixel.
    top = payoff.flatten(1).topk(min(tuning.initial_pixels, height * width), dim=1).values
    lam = tuning.lambda_start * config.sparsity_weight * top.median(dim=1).values.clamp(min=1e-6)
    return _Descent(
        gates=gates, colour_logits=colour_logits, optimizer=optimizer, lam=lam,
        lam_floor=0.1 * lam,  # without a floor, a long unfooled stretch lets the mask flood the image
        best_masks=torch.zeros(count, height, width, dtype=torch.bool, device=device),
        best_values=corners.clone(),
        best_pixels=torch.full((count,), -1, dtype=torch.long, device=device),
        done=skip.clone(),
        since_best=torch.zeros(count, dtype=torch.long, device=device),
    )


@dataclass
class _Views:
    """One step's model outputs on the active images."""

    logits: torch.Tensor  # of the binary, 8-bit image
    margins: torch.Tensor
    relaxed_margin: torch.Tensor | None  # of the soft-gated image, when the tuning adds it
    soft: torch.Tensor  # soft gates
    binary: torch.Tensor  # binary gates (float)
    hard_colours: torch.Tensor  # 8-bit colours


def _evaluate(run: AttackRun, checker: Checker, state: _Descent, active: torch.Tensor, temperature: float,
              tuning: SparseTuning) -> _Views:
    """One model call: the binary 8-bit image (straight-through), and the relaxed one if asked."""
    x = run.images[active]
    gate_logits = state.gates[active]
    soft = torch.sigmoid(gate_logits / temperature)
    colours = torch.sigmoid(state.colour_logits[active])
    binary = (gate_logits > 0).float()
    hard_colours = quantize(colours.detach())
    straight_gate = binary + soft - soft.detach()
    straight_colours = colours + (hard_colours - colours.detach())
    hard = x + straight_gate * (straight_colours - x)
    labels, targets = run.criterion(active)
    relaxed_margin = None
    if tuning.relaxed_view:
        relaxed = x + soft * (colours - x)
        both = checker.model(torch.cat([hard, relaxed]))
        logits, relaxed_margin = both[: x.shape[0]], margin(both[x.shape[0] :], labels, targets)
        checker.charge(torch.cat([active, active]))
    else:
        logits = checker.model(hard)
        checker.charge(active)
    return _Views(logits, margin(logits, labels, targets), relaxed_margin, soft, binary, hard_colours)


@torch.no_grad()
def _keep_best(run: AttackRun, state: _Descent, active: torch.Tensor, views: _Views, required: float,
               tuning: SparseTuning) -> torch.Tensor:
    """Keep each image's sparsest binary success, stop stalled images, adapt lambda; returns pixel counts."""
    fooled = is_adversarial(views.logits, *run.criterion(active)) & (views.margins < -required)
    pixels = views.binary.flatten(1).sum(dim=1).long()
    better = fooled & ((state.best_pixels[active] < 0) | (pixels < state.best_pixels[active]))
    improved = active[better]
    state.best_pixels[improved] = pixels[better]
    state.best_masks[improved] = views.binary[better][:, 0].bool()
    state.best_values[improved] = views.hard_colours[better]
    # Stagnation only counts near the best: far above it the mask is still shrinking.
    near_best = pixels <= 2 * state.best_pixels[active]
    state.since_best[active] = torch.where(better, 0, state.since_best[active] + near_best.long())
    found = state.best_pixels[active] >= 0
    # One pixel cannot be beaten (zero means already fooled, handled before the loop).
    state.done[active] = found & ((state.since_best[active] >= tuning.patience) | (state.best_pixels[active] == 1))
    lam = state.lam
    lam[active] = torch.where(fooled, lam[active] * tuning.lambda_up, lam[active] * tuning.lambda_down)
    lam[active] = lam[active].clamp(min=state.lam_floor[active])
    return pixels


def _descend(state: _Descent, active: torch.Tensor, views: _Views, tuning: SparseTuning) -> None:
    """One Adam step on margin (floored at -kappa) plus lambda times the relaxed pixel count."""
    loss = views.margins.clamp(min=-tuning.kappa) + state.lam[active] * views.soft.flatten(1).sum(dim=1)
    if views.relaxed_margin is not None:
        loss = loss + views.relaxed_margin.clamp(min=-tuning.kappa)
    state.optimizer.zero_grad(set_to_none=False)
    loss.sum().backward()
    state.optimizer.step()


def optimize(run: AttackRun, checker: Checker, corners: torch.Tensor, payoff: torch.Tensor, skip: torch.Tensor,
             config: SparseConfig, tuning: SparseTuning) -> tuple[torch.Tensor, torch.Tensor]:
    """Anneal the gates from ``temperature_start`` to ``temperature_end`` over ``config.steps``, then
    ``settle_steps`` more at the end temperature; returns the sparsest binary success per image
    (empty masks where none, and for the ``skip``ped, already adversarial images)."""
    state = _start(corners, payoff, skip, config, tuning)
    required = config.required_margin(tuning)
    total_steps = config.steps + tuning.settle_steps
    count = run.count
    for step in range(total_steps):
        if state.done.all() or run.spent():
            break
        active = (~state.done).nonzero().squeeze(1)
        temperature = tuning.temperature_start * (tuning.temperature_end / tuning.temperature_start) ** (
            min(step, config.steps - 1) / max(1, config.steps - 1)
        )
        views = _evaluate(run, checker, state, active, temperature, tuning)
        pixels = _keep_best(run, state, active, views, required, tuning)
        _descend(state, active, views, tuning)
        if run.progress is not None:
            current = torch.full((count,), -1, dtype=torch.long)
            current[active.cpu()] = pixels.cpu()
            run.report(step + 1, total_steps, "optimize", best_pixels=state.best_pixels, current_pixels=current,
                       true_confidence=run.confidence_of(views.logits, active), done=state.done)
    return state.best_masks, state.best_values
