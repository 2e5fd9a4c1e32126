"""The attack runner: everything an attack needs around its search step.

An attack is a config dataclass and a search function ``search(run, config) ->
adversarial images``. :class:`Attack` turns the pair into the one public signature

    attack(model, images, labels, *, targets=None, config=None, progress=None,
           should_stop=None, **options) -> AttackResult

and owns, once for every attack: config defaulting (unknown options raise), the
input checks, the timer, the per-image call counter and the sequential-invocation
counter, one budget (``max_seconds`` for the whole call and ``should_stop``, both
read by :meth:`AttackRun.spent` at every step), the already-adversarial pre-check,
active-set helpers, progress with defaults, and ``finalize`` under the attack's
registered name. The search only searches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from ..models import ImageClassifier, count_invocations
from .base import (
    AttackProgress,
    AttackResult,
    ProgressCallback,
    StopCheck,
    finalize,
    is_adversarial,
    margin,
    prepare_inputs,
)
from .options import option, validate


@dataclass(frozen=True)
class AttackConfig:
    """Options every attack has: one time budget with one meaning."""

    max_seconds: float | None = option(None, low=0.0, high=1e6, help="wall-clock budget for the whole call in "
                                       "seconds; the attack stops and returns what it has")

    def __post_init__(self) -> None:
        validate(self)


C = TypeVar("C", bound=AttackConfig)


class AttackRun:
    """The state of one attack call that is not the search itself."""

    def __init__(
        self,
        name: str,
        model: ImageClassifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        max_seconds: float | None,
        progress: ProgressCallback | None,
        should_stop: StopCheck | None,
    ) -> None:
        self.start = time.perf_counter()
        self.name = name
        self.model = model
        self.images, self.labels, self.targets = prepare_inputs(model, images, labels, targets)
        self.count = int(self.images.shape[0])
        self.device = model.device
        # Forward passes spent on each image (a batch of k images costs each of them one).
        self.calls = torch.zeros(self.count, dtype=torch.long, device=self.device)
        self.params: dict[str, Any] = {}  # extra numbers the search wants in the result (e.g. a ladder)
        self.interrupted = False
        self._max_seconds = max_seconds
        self.progress = progress  # the raw callback, for searches that build their own snapshots
        self._should_stop = should_stop

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    def spent(self) -> bool:
        """True once the time budget is used up or a stop was requested; stays true."""
        if not self.interrupted:
            over = self._max_seconds is not None and time.perf_counter() - self.start > self._max_seconds
            self.interrupted = over or (self._should_stop is not None and bool(self._should_stop()))
        return self.interrupted

    def criterion(self, index: torch.Tensor | int | slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Labels and targets (None when untargeted) of the images at ``index``, batch-shaped."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self.labels[index], None if self.targets is None else self.targets[index]

    def forward(self, images: torch.Tensor, index: torch.Tensor | int | slice) -> torch.Tensor:
        """Logits of ``images`` (one per image at ``index``), each charged one call."""
        logits: torch.Tensor = self.model(images)
        self.calls[index] += 1
        return logits

    @torch.no_grad()
    def already_adversarial(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean logits and which images the model already gets wrong (nothing to do there)."""
        logits = self.forward(self.images, slice(None))
        return logits, is_adversarial(logits, self.labels, self.targets)

    def already_adversarial_with_gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same pre-check, and the margin's gradient at each clean image from the same call
        (for a search that starts from first-order information): ``(gradient, already)``."""
        probe = self.images.clone().requires_grad_(True)
        logits = self.forward(probe, slice(None))
        (gradient,) = torch.autograd.grad(margin(logits, self.labels, self.targets).sum(), probe)
        return gradient, is_adversarial(logits.detach(), self.labels, self.targets)

    def report(
        self,
        step: int,
        total_steps: int,
        phase: str,
        *,
        best_pixels: torch.Tensor | None = None,
        current_pixels: torch.Tensor | int | None = None,
        true_confidence: torch.Tensor | None = None,
        done: torch.Tensor | None = None,
    ) -> None:
        """Hand a progress snapshot to the callback, if any; what is not known is -1, NaN or False."""
        if self.progress is None:
            return
        count = self.count
        if isinstance(current_pixels, int):
            current_pixels = torch.full((count,), current_pixels, dtype=torch.long)
        self.progress(AttackProgress(
            step=step,
            total_steps=total_steps,
            phase=phase,
            best_pixels=torch.full((count,), -1, dtype=torch.long) if best_pixels is None else best_pixels.cpu().clone(),
            current_pixels=torch.full((count,), -1, dtype=torch.long) if current_pixels is None else current_pixels.cpu(),
            true_confidence=torch.full((count,), float("nan")) if true_confidence is None else true_confidence.cpu(),
            done=torch.zeros(count, dtype=torch.bool) if done is None else done.cpu().clone(),
        ))

    def confidence_of(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(N,) true-class probability where ``logits`` (of the images at ``index``) say, NaN elsewhere."""
        confidence = torch.full((self.count,), float("nan"))
        labels, _ = self.criterion(index)
        confidence[index.cpu()] = logits.detach().softmax(dim=1).gather(1, labels[:, None])[:, 0].cpu()
        return confidence

    def finish(self, adversarials: torch.Tensor, config: AttackConfig) -> AttackResult:
        return finalize(
            self.model, self.images, adversarials, self.labels, self.targets, attack=self.name,
            model_calls=self.calls, seconds=time.perf_counter() - self.start,
            params={**dataclasses.asdict(config), **self.params}, interrupted=self.interrupted,
        )


Search = Callable[[AttackRun, C], torch.Tensor]


def make_config(name: str, config_type: type[C], config: C | None, options: dict[str, Any]) -> C:
    """The config to run with: ``config`` (or the defaults) with ``options`` replaced; unknown ones raise."""
    if config is not None and not isinstance(config, config_type):
        raise ValueError(f"{name} takes a {config_type.__name__}, got {type(config).__name__}.")
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(map(repr, unknown))}; options: {', '.join(sorted(known))}.")
    base = config if config is not None else config_type()
    return dataclasses.replace(base, **options) if options else base


@dataclass(frozen=True)
class Attack(Generic[C]):
    """An attack: its registered name, its config type and its search step."""

    name: str
    config_type: type[C]
    search: Search[C]

    def __call__(
        self,
        model: ImageClassifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        targets: torch.Tensor | None = None,
        config: C | None = None,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        **options: Any,
    ) -> AttackResult:
        """Run the attack on a batch; see the module docstring for what the runner does."""
        chosen = make_config(self.name, self.config_type, config, options)
        with count_invocations() as invocations:
            run = AttackRun(
                self.name, model, images, labels, targets,
                max_seconds=chosen.max_seconds, progress=progress, should_stop=should_stop,
            )
            adversarials = self.search(run, chosen)
            result = run.finish(adversarials, chosen)
        return dataclasses.replace(result, model_invocations=invocations.value)
