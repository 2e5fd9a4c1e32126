"""JSMA baseline: the Jacobian-based saliency map attack, pixel-pair form.

Papernot, McDaniel, Jha, Fredrikson, Celik & Swami, "The Limitations of Deep
Learning in Adversarial Settings", IEEE EuroS&P 2016 (Algorithms 2 and 3). Each
iteration takes, at the current image and for the target class ``t``,

    alpha = dZ_t / dx        beta = d(sum_{j != t} Z_j) / dx

and picks the pair of features (p, q) with the largest saliency

    (alpha_p + alpha_q) * |beta_p + beta_q|   if alpha_p + alpha_q > 0 and beta_p + beta_q < 0, else 0,

then sets both features to the edge of the box (the paper's theta = 1 step) and
removes them from the search domain. A feature is one channel entry. It stops
once the image fools the model.

Differences from the paper, each on purpose:

- Derivatives are of the logits ``Z``, not the softmax, as the common
  implementations do: the softmax sums to one, so its ``beta`` is just ``-alpha``.
  ``alpha`` and ``beta`` come from one forward and two backward passes, batched.
- Untargeted attacks (the paper is targeted only) aim at the strongest wrong
  class, re-chosen at every iteration: the usual untargeted adaptation.
- ``others="rival"`` (an option; the default ``"all"`` is the paper's) makes
  ``beta`` the derivative of the strongest non-target logit alone (the true
  class, while an untargeted attack has not yet succeeded) instead of the sum
  over all of them. Over 999 ImageNet logits that sum mostly follows the shift
  common to every logit, which the softmax ignores, so the paper's
  ``beta < 0`` condition says little about the one class the target has to
  beat; on real photos the rival form fools more images with fewer pixels.
- Both directions, the idea of Wiyatno & Xu's "Maximal JSMA" (2018): a pair is
  either pushed up to 1 (saliency on ``(alpha, beta)``) or down to 0 (saliency on
  ``(-alpha, -beta)``); both features of a pair move the same way, and the better
  of the two directions' best pairs is taken. A feature already at the bound it
  would be pushed to is not in that direction's domain; a modified feature
  leaves both domains.
- The pair search is exact only among ``candidates`` features per direction: all
  pairs of 150,528 ImageNet features (1.1e10) are out of reach. Candidates are
  the top features by ``s_i = alpha_i - beta_i`` (sign-flipped when pushing
  down), because by AM-GM the pair saliency is at most ``((s_p + s_q) / 2)^2``:
  the pairs that can score highest are made of high-``s`` features. All
  candidates x candidates pairs are then scored at once.
- The budget is ``max_pixels`` distinct (h, w) positions, not the paper's
  fraction gamma of features, so it compares with the other sparse attacks. A
  pair that would take the image past ``max_pixels`` is not applied: the image
  stops there as a failure, so a result never changes more than ``max_pixels``
  pixels.
- When no candidate pair has positive saliency the image stops as a failure
  (the paper's argmax would modify an arbitrary pair).
- Success is checked on every iterate, which is already 8-bit exact: the start
  is quantized and every change sets an entry to 0 or 1. After a time budget or
  stop request the last, unchecked iterate goes to ``finalize``, which keeps it
  only if it fools the model.

Images are independent: a batch gives the same result as one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import ImageClassifier
from .base import is_adversarial
from .options import option
from .runner import Attack, AttackConfig, AttackRun

OTHERS = ("all", "rival")


@dataclass(frozen=True)
class JSMAConfig(AttackConfig):
    max_pixels: int = option(1000, low=1, high=10_000_000, help="give up rather than change more than this many pixels")
    candidates: int = option(256, low=2, high=100_000, help="features per direction whose pairs are searched exhaustively")
    others: str = option("all", choices=OTHERS, help="beta's classes: 'all' non-target classes (the paper) "
                         "or only the strongest 'rival'")


def best_pair(alpha: torch.Tensor, beta: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's best pair per row of ``(B, K)`` derivatives: ``(first, second, saliency)``.

    Only pairs ``first < second`` of valid entries count; ties go to the first
    pair in row-major order. A saliency of 0 means no pair qualifies.
    """
    size = alpha.shape[1]
    gain = alpha[:, :, None] + alpha[:, None, :]
    rest = beta[:, :, None] + beta[:, None, :]
    upper = torch.ones(size, size, dtype=torch.bool, device=alpha.device).triu(diagonal=1)
    allowed = upper & valid[:, :, None] & valid[:, None, :] & (gain > 0) & (rest < 0)
    saliency = torch.where(allowed, gain * rest.abs(), torch.zeros_like(gain)).flatten(1)
    score, index = saliency.max(dim=1)
    return index // size, index % size, score


def _best_in_direction(
    alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, candidates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best pair among the top-``candidates`` features by ``alpha - beta``: ``(features (B, 2), saliency)``."""
    ranking = (alpha - beta).masked_fill(~domain, float("-inf"))
    top = ranking.topk(min(candidates, ranking.shape[1]), dim=1)
    first, second, score = best_pair(
        alpha.gather(1, top.indices), beta.gather(1, top.indices), torch.isfinite(top.values)
    )
    features = torch.stack([top.indices.gather(1, first[:, None]), top.indices.gather(1, second[:, None])], dim=1)
    return features[:, :, 0], score


def choose_pair(
    alpha: torch.Tensor, beta: torch.Tensor, current: torch.Tensor, free: torch.Tensor, candidates: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The better of the best push-up and push-down pairs: ``(features (B, 2), push_up (B,), saliency (B,))``.

    A feature can go up only from below 1 and down only from above 0, and only
    if it is still ``free`` (never modified).
    """
    up, up_score = _best_in_direction(alpha, beta, free & (current < 1), candidates)
    down, down_score = _best_in_direction(-alpha, -beta, free & (current > 0), candidates)
    push_up = up_score >= down_score
    return torch.where(push_up[:, None], up, down), push_up, torch.maximum(up_score, down_score)


def _forward_derivatives(
    model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, others: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, ``alpha`` and ``beta`` (both ``(B, features)``) at ``images``, from one forward pass."""
    probe = images.clone().requires_grad_(True)
    logits = model(probe)
    if targets is None:  # untargeted: the strongest wrong class right now
        targets = logits.detach().scatter(1, labels[:, None], float("-inf")).argmax(dim=1)
    target_logit = logits.gather(1, targets[:, None])[:, 0]
    if others == "all":
        other_logits = logits.sum(dim=1) - target_logit
    else:  # "rival": the strongest class other than the target
        rival = logits.detach().scatter(1, targets[:, None], float("-inf")).argmax(dim=1)
        other_logits = logits.gather(1, rival[:, None])[:, 0]
    (alpha,) = torch.autograd.grad(target_logit.sum(), probe, retain_graph=True)
    (beta,) = torch.autograd.grad(other_logits.sum(), probe)
    return logits.detach(), alpha.flatten(1), beta.flatten(1)


def _jsma(run: AttackRun, config: JSMAConfig) -> torch.Tensor:
    """JSMA with pixel pairs pushed to 0 or 1 (Papernot et al., 2016); batched, images independent."""
    images = run.images
    count, _, height, width = images.shape
    area = height * width
    limit = min(config.max_pixels, area)
    x = images.clone().flatten(1)
    modified = torch.zeros_like(x, dtype=torch.bool)
    changed_pixels = torch.zeros(count, area, dtype=torch.bool, device=run.device)
    done = torch.zeros(count, dtype=torch.bool, device=run.device)
    best_pixels = torch.full((count,), -1, dtype=torch.long)
    total_steps = 3 * limit // 2  # every pair modifies two fresh entries and `limit` pixels hold 3 * limit
    step = 0
    while not done.all() and not run.spent():
        step += 1
        active = (~done).nonzero().squeeze(1)
        sub_labels, sub_targets = run.criterion(active)
        logits, alpha, beta = _forward_derivatives(
            run.model, x[active].view(-1, 3, height, width), sub_labels, sub_targets, config.others
        )
        run.calls[active] += 1
        with torch.no_grad():
            fooled = is_adversarial(logits, sub_labels, sub_targets)
            confidence = run.confidence_of(logits, active)
            done[active[fooled]] = True
            best_pixels[active[fooled].cpu()] = changed_pixels[active[fooled]].sum(dim=1).cpu()
            active, alpha, beta = active[~fooled], alpha[~fooled], beta[~fooled]
            features, push_up, saliency = choose_pair(alpha, beta, x[active], ~modified[active], config.candidates)
            pixels_after = changed_pixels[active].scatter(1, features % area, True).sum(dim=1)
            apply = (saliency > 0) & (pixels_after <= limit)
            done[active[~apply]] = True
            active, features, push_up = active[apply], features[apply], push_up[apply]
            x[active[:, None], features] = push_up[:, None].to(x.dtype).expand_as(features)
            modified[active[:, None], features] = True
            changed_pixels[active[:, None], features % area] = True
            run.report(step, total_steps, "jsma", best_pixels=best_pixels, current_pixels=changed_pixels.sum(dim=1),
                       true_confidence=confidence, done=done)
    return x.view_as(images)


jsma = Attack("jsma", JSMAConfig, _jsma)
