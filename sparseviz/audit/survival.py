"""Does an adversarial image survive everyday processing? One model call per image.

The sparse attack is made for the exact 8-bit image; nothing in it resists a JPEG save, a
resize or a blur, so most flips are expected to break under them. That is a finding in its
own right (a shared photo is rarely the file the attack wrote), and this module measures it:
each transform of :data:`~sparseviz.images.processing.EVERYDAY` is applied to the adversarial
image and, as a control, to the clean one; all of them go through the model in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..images.processing import EVERYDAY, process_all
from ..models import ImageClassifier

LIMIT_TEXT = (
    "The attack was made for the exact 8-bit image, with none of these steps in its loop, so a flip is expected "
    "to break under them: a shared, re-saved or re-photographed copy is usually not adversarial any more. "
    "That is itself a finding. The clean photo is the control: the same step applied to the original; where the step "
    "alone already misleads the model on it, a flip that \"survives\" says little about the attack."
)


@dataclass(frozen=True)
class Outcome:
    """What the model says about one processed image (adversarial and its clean control)."""

    transform: str  # key of EVERYDAY, e.g. "jpeg75"
    title: str  # what a person reads, e.g. "JPEG quality 75"
    image: torch.Tensor  # the processed adversarial image (3, H, W), 8-bit exact
    label: int  # the class it lands on
    confidence: float
    fools: bool  # still adversarial: not the true class
    clean_ok: bool  # the processed clean image is still classified as the true class


def survival(model: ImageClassifier, clean: torch.Tensor, adversarial: torch.Tensor, label: int) -> list[Outcome]:
    """Every everyday transform of ``adversarial`` and ``clean`` (each (3, H, W)), classified in one call."""
    if clean.shape != adversarial.shape or clean.ndim != 3:
        raise ValueError(f"clean and adversarial must be two (3, H, W) images of one size; got "
                         f"{tuple(clean.shape)} and {tuple(adversarial.shape)}.")
    count = len(EVERYDAY)
    batch = process_all(torch.stack([adversarial.cpu(), clean.cpu()]))  # transform-major: adv, clean, adv, ...
    with torch.no_grad():
        probs = model(batch.to(model.device)).softmax(dim=1).cpu()
    outcomes = []
    for index, (name, (title, _)) in enumerate(EVERYDAY.items()):
        adv_probs, clean_probs = probs[2 * index], probs[2 * index + 1]
        landed = int(adv_probs.argmax())
        outcomes.append(Outcome(name, title, batch[2 * index], landed, float(adv_probs[landed]), landed != label,
                                int(clean_probs.argmax()) == label))
    assert len(outcomes) == count
    return outcomes


def columns() -> list[str]:
    """The audit.csv columns survival adds, in order."""
    return [f"{prefix}_{name}" for name in EVERYDAY for prefix in ("survives", "class", "clean_ok")]


def row_values(outcomes: Sequence[Outcome], class_names: Sequence[str]) -> dict[str, Any]:
    """One image's survival columns (1/0 flags and the class name it lands on)."""
    values: dict[str, Any] = {}
    for outcome in outcomes:
        values[f"survives_{outcome.transform}"] = int(outcome.fools)
        values[f"class_{outcome.transform}"] = class_names[outcome.label]
        values[f"clean_ok_{outcome.transform}"] = int(outcome.clean_ok)
    return values


__all__ = ["LIMIT_TEXT", "Outcome", "columns", "row_values", "survival"]
