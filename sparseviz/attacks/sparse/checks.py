"""Exact checks of many variants of many images, one network call each, counted.

Pruning and the swap search ask the same question over and over: "does this
variant of image i still fool the model, and by how much?". Latency on a GPU is
set by how many network calls run one after another (invocations), not by how many
images each call holds, so :class:`Checker` answers a whole list of such questions,
for every image of a batch at once, in one call, and counts both numbers: images
evaluated per image (``calls``); the runner counts sequential calls (invocations).
"""

from __future__ import annotations

import torch

from ...models import ImageClassifier, one_invocation
from ..base import is_adversarial, margin
from ..runner import AttackRun


def forward_chunk(device: torch.device) -> int:
    """Images per forward pass inside one (logical) call.

    On a GPU a large batch is nearly free; on a CPU, batches beyond a few images run slower
    per image (cache misses; measured in ``benchmarks/results/tuning.md``), so a large call
    runs in small chunks. The chunks of one call count as one invocation: a GPU runs them as
    one, and the results are the same.
    """
    return 1024 if device.type == "cuda" else 4


class Checker:
    """Margins (and gradients) of variants of the images of one attack call.

    ``owners[j]`` says which image row ``j`` of a batch is a variant of; its label and
    target are used, and its ``calls`` entry is charged one image.
    """

    def __init__(
        self, model: ImageClassifier, labels: torch.Tensor, targets: torch.Tensor | None, calls: torch.Tensor
    ) -> None:
        self.model = model
        self.labels = labels
        self.targets = targets
        self.calls = calls  # (N,) images evaluated per image, updated in place

    @classmethod
    def of(cls, run: AttackRun) -> Checker:
        """The checker of an attack call: its model and criterion, charging the run's call counter."""
        return cls(run.model, run.labels, run.targets, run.calls)

    def charge(self, owners: torch.Tensor) -> None:
        """Count a call made elsewhere (the optimisation's steps) that evaluated ``owners``."""
        self.calls.index_add_(0, owners, torch.ones_like(owners))

    def _criterion(self, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.labels[owners], None if self.targets is None else self.targets[owners]

    def margins(self, batch: torch.Tensor, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin and adversarial flag of every row of ``batch`` (one invocation)."""
        if batch.shape[0] == 0:
            empty = batch.new_zeros(0)
            return empty, empty.bool()
        chunk = forward_chunk(batch.device)
        with torch.no_grad(), one_invocation():
            logits = torch.cat([self.model(batch[start : start + chunk]) for start in range(0, batch.shape[0], chunk)])
        self.charge(owners)
        labels, targets = self._criterion(owners)
        return margin(logits, labels, targets), is_adversarial(logits, labels, targets)

    def gradients(self, batch: torch.Tensor, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of each row's margin with respect to its pixels, and the margin (one invocation)."""
        chunk = forward_chunk(batch.device)
        labels, targets = self._criterion(owners)
        gradients, margins = [], []
        with one_invocation():
            for start in range(0, batch.shape[0], chunk):
                part = slice(start, start + chunk)
                probe = batch[part].detach().clone().requires_grad_(True)
                value = margin(self.model(probe), labels[part], None if targets is None else targets[part])
                (gradient,) = torch.autograd.grad(value.sum(), probe)
                gradients.append(gradient)
                margins.append(value.detach())
        self.charge(owners)
        return torch.cat(gradients), torch.cat(margins)
