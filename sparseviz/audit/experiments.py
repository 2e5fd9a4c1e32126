"""Small experiments around one attack result: a sparsity-weight sweep and a transfer check.

The app's Compare and Transfer tabs call these; so can a script or the CLI. Every number
is read from an :class:`AttackResult` (measured on 8-bit images), nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import torch

from ..attacks.base import AttackResult, StopCheck
from ..attacks.sparse import SparseConfig, sparse_attack
from ..models import ImageClassifier
from ..views.report import transfer_fooled

DEFAULT_SWEEP = (0.25, 0.5, 1.0, 2.0, 4.0)  # spans "many pixels, confident" to "fewest pixels, may fail"


@dataclass(frozen=True)
class SweepPoint:
    """One sparsity weight's outcome on one image."""

    sparsity_weight: float
    success: bool
    pixels: int  # changed pixels in the 8-bit adversarial (0 where the attack failed)
    entries: int  # changed channel entries
    adv_label: int
    adv_confidence: float  # probability of the predicted class on the adversarial image
    true_prob_after: float  # probability of the true class on the adversarial image
    seconds: float
    interrupted: bool


def sparsity_sweep(
    model: ImageClassifier,
    image: torch.Tensor,
    label: int,
    weights: Sequence[float] = DEFAULT_SWEEP,
    *,
    target: int | None = None,
    config: SparseConfig | None = None,
    on_point: Callable[[int, SweepPoint], None] | None = None,
    should_stop: StopCheck | None = None,
) -> list[SweepPoint]:
    """Run the sparse attack once per weight, one after another, on one image ``(1, 3, H, W)``.

    The attack batches images, not weights, so the weights run sequentially; everything
    else (steps, seed, ...) comes from ``config``. Stops early (returning the points so
    far) when ``should_stop`` says so.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"sparsity_sweep takes one image (1, 3, H, W); got shape {tuple(image.shape)}.")
    if not weights:
        raise ValueError("sparsity_sweep needs at least one weight.")
    base = config or SparseConfig()
    labels = torch.tensor([int(label)])
    targets = None if target is None else torch.tensor([int(target)])
    points: list[SweepPoint] = []
    for weight in sorted(float(w) for w in weights):
        if should_stop is not None and should_stop():
            break
        result = sparse_attack(model, image, labels, targets=targets, config=replace(base, sparsity_weight=weight),
                               should_stop=should_stop)
        point = sweep_point(result, weight)
        points.append(point)
        if on_point is not None:
            on_point(len(points) - 1, point)
    return points


def sweep_point(result: AttackResult, weight: float, index: int = 0) -> SweepPoint:
    summary = result.summary(index)
    return SweepPoint(
        sparsity_weight=float(weight),
        success=summary["success"],
        pixels=summary["l0_pixels"],
        entries=summary["l0_entries"],
        adv_label=summary["adv_label"],
        adv_confidence=summary["adv_confidence"],
        true_prob_after=summary["true_confidence_after"],
        seconds=summary["seconds"],
        interrupted=summary["interrupted"],
    )


@dataclass(frozen=True)
class TransferRow:
    """How another model sees the clean and the adversarial image of one result."""

    model: str
    clean_label: int | None
    clean_name: str | None
    adv_label: int | None
    adv_name: str | None
    true_prob_clean: float | None
    true_prob_adv: float | None
    fooled: bool | None  # None: not comparable (the model already disagrees on the clean image, or failed)
    note: str


@torch.no_grad()
def transfer(result: AttackResult, others: Mapping[str, ImageClassifier], index: int = 0) -> list[TransferRow]:
    """Feed one result's clean and adversarial image (8-bit, as saved) to other models.

    Images go in at the size the attack made them: resizing would blur the few changed
    pixels away, and the registry's networks all pool globally. For an untargeted
    result a model counts as fooled when it got the clean image right and the
    adversarial one wrong; for a targeted one, when it predicts the target.
    """
    label = int(result.labels[index])
    target = None if result.targets is None else int(result.targets[index])
    pair = torch.stack([result.originals[index], result.adversarials[index]])
    rows = []
    for name, model in others.items():
        if model.num_classes <= max(label, target or 0):
            rows.append(TransferRow(name, None, None, None, None, None, None, None,
                                    f"has {model.num_classes} classes, not the attacked model's label set"))
            continue
        try:
            probs = model(pair.to(model.device)).softmax(dim=1).cpu()
        except Exception as error:  # noqa: BLE001 - one model's failure is a row, not a crash
            rows.append(TransferRow(name, None, None, None, None, None, None, None,
                                    f"failed on a {tuple(pair.shape[-2:])} image ({type(error).__name__})"))
            continue
        clean, adv = (int(i) for i in probs.argmax(dim=1))
        notes = []
        if model.input_size != pair.shape[-1]:
            notes.append(f"fed at {pair.shape[-1]}px (its own input is {model.input_size}px)")
        fooled = transfer_fooled(clean, adv, label, target)
        if fooled is None:
            notes.append("already disagrees on the clean image" if target is None else "already predicts the target")
        rows.append(TransferRow(
            name, clean, model.class_names[clean], adv, model.class_names[adv],
            float(probs[0, label]), float(probs[1, label]), fooled, "; ".join(notes),
        ))
    return rows
