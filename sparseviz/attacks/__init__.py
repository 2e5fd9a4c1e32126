"""Attack registry: one entry per attack, read by the CLI, the app, bench and tests.

Every attack is an :class:`~sparseviz.attacks.runner.Attack` with the signature
``run(model, images, labels, *, targets=None, config=None, progress=None, should_stop=None, **options)
-> AttackResult``; its name, config type and search step are declared once, in its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import AttackProgress, AttackResult, finalize, is_adversarial, margin, quantize
from .dense import PGDConfig, fgsm, pgd
from .greedy import GreedyConfig, greedy
from .jsma import JSMAConfig, jsma
from .pgd0 import PGD0Config, pgd0
from .runner import Attack, AttackConfig, AttackRun
from .sparse import SparseConfig, SparseTuning, sparse_attack
from .sparse_rs import SparseRSConfig, sparse_rs
from .sparsefool import SparseFoolConfig, sparsefool


@dataclass(frozen=True)
class AttackSpec:
    run: Attack[Any]
    kind: str  # "sparse" (few pixels) or "dense" (every pixel a little)
    description: str

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def config_type(self) -> type[AttackConfig]:
        return self.run.config_type


_SPECS = (
    AttackSpec(sparse_attack, "sparse",
               "sparseviz: sigmoid pixel mask + continuous colours, sparsity-weighted loss, then pruning"),
    AttackSpec(sparsefool, "sparse",
               "SparseFool: DeepFool boundary normals + greedy linear solver, top-10 classes (Modas et al.)"),
    AttackSpec(pgd0, "sparse",
               "PGD-l0: l1-normalised gradient steps projected onto k pixels, k searched (Croce & Hein)"),
    AttackSpec(sparse_rs, "sparse",
               "Sparse-RS: black-box random search over k corner-coloured pixels, k searched (Croce et al.)"),
    AttackSpec(jsma, "sparse",
               "JSMA: saliency-map pairs of channel entries pushed to 0 or 1, top-256 candidates (Papernot et al.)"),
    AttackSpec(greedy, "sparse",
               "Greedy: 5 best first-order pixels per gradient to colour corners, then pruning (calibration baseline)"),
    AttackSpec(pgd, "dense", "PGD, l-inf 4/255, 10 steps (Madry et al.)"),
    AttackSpec(fgsm, "dense", "FGSM, one l-inf step of 4/255 (Goodfellow et al.)"),
)
ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in _SPECS}

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackRun",
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
    "SparseTuning",
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
