"""Attack registry: one entry per attack, read by the CLI, the app, bench and tests.

Every attack has the signature
``run(model, images, labels, *, targets=None, config=None, progress=None, should_stop=None) -> AttackResult``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import AttackProgress, AttackResult, finalize, is_adversarial, margin, quantize
from .dense import PGDConfig, fgsm, pgd
from .sparse import SparseConfig, sparse_attack


@dataclass(frozen=True)
class AttackSpec:
    name: str
    run: Callable[..., AttackResult]
    config_type: type
    kind: str  # "sparse" (few pixels) or "dense" (every pixel a little)
    description: str


ATTACKS: dict[str, AttackSpec] = {
    "sparse": AttackSpec(
        "sparse", sparse_attack, SparseConfig, "sparse",
        "sparseviz: sigmoid pixel mask + continuous colours, sparsity-weighted loss, then pruning",
    ),
    "pgd": AttackSpec("pgd", pgd, PGDConfig, "dense", "PGD, l-inf 4/255, 10 steps (Madry et al.)"),
    "fgsm": AttackSpec("fgsm", fgsm, PGDConfig, "dense", "FGSM, one l-inf step of 4/255 (Goodfellow et al.)"),
}

__all__ = [
    "ATTACKS",
    "AttackProgress",
    "AttackResult",
    "AttackSpec",
    "PGDConfig",
    "SparseConfig",
    "finalize",
    "fgsm",
    "is_adversarial",
    "margin",
    "pgd",
    "quantize",
    "sparse_attack",
]
