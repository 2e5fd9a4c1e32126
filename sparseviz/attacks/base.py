"""What every attack shares: input checks, the success criterion, the result type.

An attack is a function ``attack(model, images, labels, *, targets=None, ...)``
taking a model wrapper and images ``(N, 3, H, W)`` in [0, 1]. It never normalizes,
loads files or plots. Every attack ends in :func:`finalize`, which rounds the
adversarial images to 8 bits and re-evaluates them, so ``success`` and every
metric describe exactly the image a user can save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..images import quantize as quantize  # re-exported: attacks round through here
from ..images import to_uint8 as to_uint8
from ..models import ImageClassifier


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` naming the valid range unless ``low <= value <= high``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got {value!r}.")


def check_images(images: torch.Tensor) -> None:
    """Refuse anything that is not a float batch ``(N, 3, H, W)`` in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W); got {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1]; got dtype {images.dtype}.")
    if images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
        raise ValueError("image values must be finite and within [0, 1] (not 0-255, not normalized).")


def check_labels(model: ImageClassifier, labels: torch.Tensor, count: int, what: str = "labels") -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() != count:
        raise ValueError(f"expected {count} {what}, got {labels.numel()}.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise ValueError(f"{what} must be class indices in 0..{model.num_classes - 1}.")
    return labels


def check_targets(model: ImageClassifier, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets must be valid classes other than each image's true class."""
    targets = check_labels(model, targets, labels.numel(), "targets")
    if (targets == labels).any():
        index = int((targets == labels).nonzero()[0])
        raise ValueError(f"target class {int(targets[index])} of image {index} is its true class; pick another class.")
    return targets


def prepare_inputs(
    model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Check an attack's inputs and move them to the model's device, images 8-bit exact."""
    check_images(images)
    labels = check_labels(model, labels, images.shape[0])
    targets = None if targets is None else check_targets(model, labels, targets)
    device = model.device
    return quantize(images.detach()).to(device), labels.to(device), None if targets is None else targets.to(device)


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """The success criterion, ``bool[N]``: untargeted = not the true class, targeted = the target."""
    predicted = logits.argmax(dim=1)
    if targets is None:
        return predicted != labels
    return predicted == targets


def margin(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Logit margin that is negative exactly when the image is adversarial.

    Untargeted: true logit minus the best other logit. Targeted: the best
    non-target logit minus the target logit.
    """
    one_hot = torch.nn.functional.one_hot(labels if targets is None else targets, logits.shape[1]).bool()
    chosen = logits[one_hot]
    best_other = logits.masked_fill(one_hot, float("-inf")).amax(dim=1)
    return chosen - best_other if targets is None else best_other - chosen


@dataclass(frozen=True)
class AttackProgress:
    """A snapshot handed to progress callbacks (tqdm in the CLI, a bar in the app)."""

    step: int
    total_steps: int
    phase: str  # e.g. "optimize", "prune"
    best_pixels: torch.Tensor  # (N,) pixels of the best adversarial so far, -1 where none yet
    current_pixels: torch.Tensor  # (N,) pixels selected by the current binary mask
    true_confidence: torch.Tensor  # (N,) probability of the true class at the current iterate
    done: torch.Tensor  # (N,) bool, images that stopped early


ProgressCallback = Callable[[AttackProgress], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class AttackResult:
    """One valid adversarial image per input, with what it cost.

    ``adversarials`` are 8-bit exact and inside [0, 1]; where an attack failed they
    equal the originals (so nothing half-done is ever shown as a result).
    """

    attack: str
    model_name: str
    originals: torch.Tensor  # (N, 3, H, W) float, 8-bit exact, on CPU
    adversarials: torch.Tensor  # (N, 3, H, W) float, 8-bit exact, on CPU
    labels: torch.Tensor  # (N,) true classes
    targets: torch.Tensor | None  # (N,) target classes, None when untargeted
    success: torch.Tensor  # (N,) bool, re-evaluated on ``adversarials``
    clean_probs: torch.Tensor  # (N, C) softmax on the originals
    adv_probs: torch.Tensor  # (N, C) softmax on the adversarials
    model_calls: torch.Tensor  # (N,) forward passes spent on each image (with or without backward)
    seconds: float  # wall time of the whole call
    model_invocations: int = 0  # sequential network runs of the whole call, whatever their batch size
    # (what bounds the latency on a GPU, where a batch costs about as much as one image)
    interrupted: bool = False  # stopped by a time budget or a stop request
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return int(self.labels.numel())

    @property
    def pixel_mask(self) -> torch.Tensor:
        """(N, H, W) bool: pixels where any channel differs in 8 bits."""
        return (to_uint8(self.adversarials) != to_uint8(self.originals)).any(dim=1)

    @property
    def l0_pixels(self) -> torch.Tensor:
        return self.pixel_mask.flatten(1).sum(dim=1)

    @property
    def l0_entries(self) -> torch.Tensor:
        return (to_uint8(self.adversarials) != to_uint8(self.originals)).flatten(1).sum(dim=1)

    @property
    def perturbation(self) -> torch.Tensor:
        return self.adversarials - self.originals

    @property
    def l2(self) -> torch.Tensor:
        norms: torch.Tensor = self.perturbation.flatten(1).norm(dim=1)
        return norms

    @property
    def linf(self) -> torch.Tensor:
        return self.perturbation.flatten(1).abs().amax(dim=1)

    @property
    def clean_labels(self) -> torch.Tensor:
        return self.clean_probs.argmax(dim=1)

    @property
    def adv_labels(self) -> torch.Tensor:
        return self.adv_probs.argmax(dim=1)

    @property
    def true_confidence(self) -> torch.Tensor:
        return self.clean_probs.gather(1, self.labels[:, None])[:, 0]

    @property
    def adv_confidence(self) -> torch.Tensor:
        return self.adv_probs.gather(1, self.adv_labels[:, None])[:, 0]

    def summary(self, index: int, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready numbers for one image; the CLI report and the app both read this."""

        def name(label: int) -> str | None:
            return class_names[label] if class_names else None

        true_label = int(self.labels[index])
        adv_label = int(self.adv_labels[index])
        return {
            "attack": self.attack,
            "model": self.model_name,
            "true_label": true_label,
            "true_name": name(true_label),
            "true_confidence": float(self.true_confidence[index]),
            "true_confidence_after": float(self.adv_probs[index, true_label]),
            "adv_label": adv_label,
            "adv_name": name(adv_label),
            "adv_confidence": float(self.adv_confidence[index]),
            "target_label": None if self.targets is None else int(self.targets[index]),
            "target_name": None if self.targets is None else name(int(self.targets[index])),
            "success": bool(self.success[index]),
            "l0_pixels": int(self.l0_pixels[index]),
            "l0_entries": int(self.l0_entries[index]),
            "l2": float(self.l2[index]),
            "linf": float(self.linf[index]),
            "model_calls": int(self.model_calls[index]),
            "model_invocations": int(self.model_invocations),
            "seconds": float(self.seconds),
            "interrupted": bool(self.interrupted),
        }


@torch.no_grad()
def finalize(
    model: ImageClassifier,
    originals: torch.Tensor,
    adversarials: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    attack: str,
    model_calls: torch.Tensor,
    seconds: float,
    params: dict[str, Any],
    interrupted: bool = False,
    model_invocations: int = 0,
) -> AttackResult:
    """Round to 8 bits, re-check success, and fall back to the original on failure."""
    originals = quantize(originals.detach()).to(model.device)
    adversarials = quantize(adversarials.detach()).to(model.device)
    labels = labels.to(model.device)
    targets = None if targets is None else targets.to(model.device)
    clean_probs = model(originals).softmax(dim=1)
    adv_logits = model(adversarials)
    success = is_adversarial(adv_logits, labels, targets)
    adversarials = torch.where(success[:, None, None, None], adversarials, originals)
    adv_probs = torch.where(success[:, None], adv_logits.softmax(dim=1), clean_probs)
    return AttackResult(
        attack=attack,
        model_name=model.name,
        originals=originals.cpu(),
        adversarials=adversarials.cpu(),
        labels=labels.cpu(),
        targets=None if targets is None else targets.cpu(),
        success=success.cpu(),
        clean_probs=clean_probs.cpu(),
        adv_probs=adv_probs.cpu(),
        model_calls=(model_calls.cpu() + 2).long(),
        seconds=float(seconds),
        model_invocations=int(model_invocations),
        interrupted=interrupted,
        params=dict(params),
    )
