"""Attack registry: one entry per attack, read by the CLI, the app, bench and tests.

Every attack has the signature
``run(model, images, labels, *, targets=None, config=None, progress=None, should_stop=None) -> AttackResult``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import AttackProgress, AttackResult, finalize, is_adversarial, margin, quantize
from .dense import PGDConfig, fgsm, pgd
from .greedy import GreedyConfig, greedy
from .jsma import JSMAConfig, jsma
from .pgd0 import PGD0Config, pgd0
from .sparse import SparseConfig, sparse_attack
from .sparse_rs import SparseRSConfig, sparse_rs
from .sparsefool import SparseFoolConfig, sparsefool


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
    "sparsefool": AttackSpec(
        "sparsefool", sparsefool, SparseFoolConfig, "sparse",
        "SparseFool: DeepFool boundary normals + greedy linear solver, top-10 classes (Modas et al.)",
    ),
    "pgd0": AttackSpec(
        "pgd0", pgd0, PGD0Config, "sparse",
        "PGD-l0: l1-normalised gradient steps projected onto k pixels, k searched (Croce & Hein)",
    ),
    "sparse_rs": AttackSpec(
        "sparse_rs", sparse_rs, SparseRSConfig, "sparse",
        "Sparse-RS: black-box random search over k corner-coloured pixels, k searched (Croce et al.)",
    ),
    "jsma": AttackSpec(
        "jsma", jsma, JSMAConfig, "sparse",
        "JSMA: saliency-map pairs of channel entries pushed to 0 or 1, top-256 candidates (Papernot et al.)",
    ),
    "greedy": AttackSpec(
        "greedy", greedy, GreedyConfig, "sparse",
        "Greedy: 5 best first-order pixels per gradient to colour corners, then pruning (calibration baseline)",
    ),
    "pgd": AttackSpec("pgd", pgd, PGDConfig, "dense", "PGD, l-inf 4/255, 10 steps (Madry et al.)"),
    "fgsm": AttackSpec("fgsm", fgsm, PGDConfig, "dense", "FGSM, one l-inf step of 4/255 (Goodfellow et al.)"),
}

__all__ = [
    "ATTACKS",
    "AttackProgress",
    "AttackResult",
    "AttackSpec",
    "GreedyConfig",
    "JSMAConfig",
    "PGD0Config",
    "PGDConfig",
    "SparseConfig",
    "SparseFoolConfig",
    "SparseRSConfig",
    "finalize",
    "fgsm",
    "greedy",
    "is_adversarial",
    "jsma",
    "margin",
    "pgd",
    "pgd0",
    "quantize",
    "sparse_attack",
    "sparse_rs",
    "sparsefool",
]
