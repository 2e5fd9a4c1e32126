"""Why did a few pixels flip the model? Contributions that add up, a per-image proof, maps.

``explain(model, result, index)`` takes one successful :class:`AttackResult` image and
returns an :class:`Explanation`:

* per changed pixel, its **obscuring** contribution (part of the true class's evidence
  drop) and **leading** contribution (part of the adversarial class's evidence rise),
  which sum to the totals (see :mod:`sparseviz.contributions` for the two splitters and
  the labelling rule);
* the group ablation that checks the labels on this image and the joint-action numbers
  (see :mod:`sparseviz.proof`), plus one sentence generated from them;
* four pixel-resolution attribution maps (clean/adversarial image x true/adversarial
  class) on one shared colour scale, and an **agreement score** between the maps and the
  measured contributions.

Agreement score (documented rule): Spearman rank correlation, over the changed pixels,
between map(clean image, true class) and the obscuring contributions, and between
map(adversarial image, adversarial class) and the leading contributions; the score is
their mean, in [-1, 1] (1 = the map ranks the pixels exactly as their measured effects,
0 = no relation). Needs at least 3 changed pixels (else ``None``).

``explain_pixels`` is the cheap path (contributions, labels, proof; no maps).

Traps handled: the model is forced to eval mode and restored; Captum's layer methods
hook the layer they explain, so maps run on a private deep copy of the model (other
sessions keep running on the shared one, unhooked); calls are serialised per model;
random noise (SmoothGrad) comes from a local seeded generator, never the global RNG;
Captum's guided backprop only overrides ``nn.ReLU`` modules, which is reported.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attacks.base import AttackResult, to_uint8
from .contributions import KINDS, Contributions, PixelGame, Progress, SplitConfig, label_rule, split
from .hygiene import EvalMode, hooks_on, model_lock
from ..models import ImageClassifier
from .proof import GroupRow, JointAction, prove, sentence

__all__ = ["METHODS", "METHOD_NAMES", "methods_for", "KINDS", "MAP_KEYS", "ExplainConfig", "Explanation", "PixelRecord", "explain",
           "explain_pixels", "hooks_on", "model_lock", "agreement_score", "attribution_maps", "find_cam_layer", "guided_backprop_coverage"]

METHODS = ("gradcam", "integrated_gradients", "saliency", "smoothgrad", "guided_gradcam")
METHOD_NAMES = {"gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM", "integrated_gradients": "Integrated Gradients",
                "saliency": "Saliency (gradient)", "smoothgrad": "SmoothGrad"}  # as people know them


def methods_for(model: ImageClassifier) -> list[str]:
    """The attribution methods this model supports: Grad-CAM needs a convolutional layer to hook."""
    return [method for method in METHODS if model.cam_layer is not None or "gradcam" not in method]


MAP_KEYS = (("clean", "true"), ("clean", "adv"), ("adv", "true"), ("adv", "adv"))


@dataclass(frozen=True)
class ExplainConfig:
    split: SplitConfig = field(default_factory=SplitConfig)  # how the flip is shared among the pixels
    ig_steps: int = 16  # Integrated Gradients map (black baseline) path points; cost linear
    ig_batch_size: int = 16  # images per IG forward/backward: bounds memory whatever ig_steps is
    smoothgrad_samples: int = 8  # noisy copies averaged by the SmoothGrad map
    smoothgrad_stdev: float = 0.1  # SmoothGrad noise std in [0, 1] image units
    gradcam_min_size: int = 14  # Grad-CAM on the last stage with maps at least this wide: 14 (blocks.4 on Lite0)
    # agreed best with the contributions on 28 dev-set photos (mean Spearman 0.12 vs 0.02 at 28, 0.07 at 7; 14 - 28 =
    # +0.15 +- 0.05 paired; all low: benchmarks/results/explain_agreement_cpu.md)
    top_k: int = 5  # classes listed before/after
    strict_guided: bool = False  # True: refuse Guided Grad-CAM when guided backprop would be incomplete
    seed: int = 0  # seeds SmoothGrad noise (local generator)

    def __post_init__(self) -> None:
        for name in ("ig_steps", "ig_batch_size", "smoothgrad_samples", "gradcam_min_size", "top_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1.")
        if self.smoothgrad_stdev < 0:
            raise ValueError("smoothgrad_stdev must be >= 0.")


@dataclass(frozen=True)
class PixelRecord:
    y: int
    x: int
    before: tuple[int, int, int]  # 8-bit RGB on the clean image
    after: tuple[int, int, int]  # 8-bit RGB on the adversarial image
    obscuring: float  # part of the true class's evidence drop (centred logits)
    leading: float  # part of the adversarial class's evidence rise
    obscuring_se: float  # standard error (0 for exact/deterministic splits)
    leading_se: float
    obscuring_share: float  # obscuring / total drop
    leading_share: float  # leading / total rise
    alone_share: float  # this pixel pasted alone: share of the whole attack's margin change
    label: str  # obscuring / leading / both / neither
    map_true: float  # map(clean image, true class) here; NaN without maps
    map_adv: float  # map(adversarial image, adversarial class) here; NaN without maps

    def as_dict(self) -> dict[str, Any]:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}  # NaN is not JSON


@dataclass(frozen=True)
class Explanation:
    index: int
    model_name: str
    method: str  # attribution-map method, "none" on explain_pixels
    split_method: str  # integrated_gradients / shapley_exact / shapley_sampled
    split_note: str
    true_label: int
    adv_label: int
    true_name: str | None
    adv_name: str | None
    maps: dict[tuple[str, str], np.ndarray]  # (H, W) float32, >= 0; empty on explain_pixels
    vmin: float  # the one colour range every map is drawn with
    vmax: float
    pixels: tuple[PixelRecord, ...]
    ablation: tuple[GroupRow, ...]
    holds: bool  # the per-image ablation test (see sparseviz.proof)
    holds_why: str
    verdict: str  # "holds", "fails" or "inseparable" (see sparseviz.proof)
    joint: JointAction
    sentence: str
    total_drop: float  # true-class evidence drop of the whole attack (centred logits)
    total_rise: float  # adversarial-class evidence rise
    completeness_error: float  # |sum of contributions - total|, worst of the two effects
    top_k_before: tuple[tuple[int, str | None, float], ...]
    top_k_after: tuple[tuple[int, str | None, float], ...]
    true_drop: float  # p_y(clean) - p_y(adv)
    adv_rise: float  # p_a(adv) - p_a(clean)
    counts: dict[str, int]  # label -> number of pixels
    agreement: float | None  # Spearman agreement of maps and contributions (None without maps or < 3 px)
    agreement_parts: dict[str, float | None]  # {"obscuring": rho, "leading": rho}
    seconds: float  # whole call
    split_seconds: float  # contributions + proof only
    split_evaluations: int  # images through the model for contributions + proof (a machine-independent cost)
    warnings: tuple[str, ...]
    config: ExplainConfig = field(default_factory=ExplainConfig)
    label_ratio: float = 1.5  # the ratio the labels used on this image (config.split.label_ratio, or raised by balance)

    def ablation_row(self, group: str) -> GroupRow:
        for row in self.ablation:
            if row.group == group:
                return row
        raise KeyError(group)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (maps left out; they go to figures)."""
        s = self.config.split
        return {
            "index": self.index, "model": self.model_name, "method": self.method, "split_method": self.split_method,
            "split_note": self.split_note, "true_label": self.true_label, "true_name": self.true_name,
            "adv_label": self.adv_label, "adv_name": self.adv_name, "colour_range": [self.vmin, self.vmax],
            "rules": {
                "evidence": "centred logit z_c - mean(z)",
                "contributions": "obscuring = part of the true class's evidence drop, leading = part of the "
                                 "adversarial class's evidence rise; each sums to its total (completeness)",
                "label": label_rule(s),
                "holds": "obscuring(+both) group lowers true-class evidence more than the leading(+both) group, "
                         "and the leading group raises adversarial evidence more than the obscuring group; a tie "
                         "does not hold; verdict 'inseparable': no two groups of these pixels pass (<= 8 px)",
                "agreement": "mean Spearman correlation over changed pixels: map(clean, true) vs obscuring, "
                             "map(adv, adv) vs leading",
            },
            "sentence": self.sentence,
            "pixels": [p.as_dict() for p in self.pixels],
            "ablation": [dict(row.__dict__) for row in self.ablation],
            "holds": self.holds, "holds_why": self.holds_why, "verdict": self.verdict,
            "joint": {k: ([None if x != x else x for x in v.tolist()] if isinstance(v, np.ndarray)  # NaN: not measured
                          else list(v) if isinstance(v, tuple) else v) for k, v in self.joint.__dict__.items()},
            "label_ratio": self.label_ratio,
            "total_drop": self.total_drop, "total_rise": self.total_rise,
            "completeness_error": self.completeness_error,
            "top_k_before": [list(t) for t in self.top_k_before], "top_k_after": [list(t) for t in self.top_k_after],
            "true_prob_drop": self.true_drop, "adv_prob_rise": self.adv_rise,
            "counts": self.counts, "agreement": self.agreement, "agreement_parts": self.agreement_parts,
            "seconds": self.seconds, "split_seconds": self.split_seconds, "split_evaluations": self.split_evaluations,
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- maps

_OTHER_ACTIVATIONS = (nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.Mish,
                      nn.Hardsigmoid, nn.PReLU, nn.SELU, nn.CELU, nn.Softplus)
_ACTIVATION_NAMES = ("swish", "silu", "gelu", "relu6", "hardswish", "mish", "hardsigmoid", "leakyrelu")


def guided_backprop_coverage(model: nn.Module) -> tuple[int, list[str]]:
    """(number of nn.ReLU modules, names of activation types Captum will NOT override).

    Captum's GuidedBackprop hooks ``isinstance(module, nn.ReLU)`` only; ``nn.ReLU6`` is
    a Hardtanh subclass, so EfficientNet-Lite's ReLU6 is left as a plain gradient.
    """
    relus = 0
    others: set[str] = set()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            relus += 1
        elif isinstance(module, _OTHER_ACTIVATIONS) or type(module).__name__.lower() in _ACTIVATION_NAMES:
            others.add(type(module).__name__)
    return relus, sorted(others)


def _guided_warning(model: nn.Module) -> str | None:
    relus, others = guided_backprop_coverage(model)
    if not others and relus:
        return None
    what = ", ".join(others) if others else "no nn.ReLU modules"
    return (f"Guided Grad-CAM is incomplete on this model: Captum's guided backprop only overrides nn.ReLU "
            f"({relus} found) and leaves {what} as plain gradients, so the map is partly Grad-CAM x plain gradient.")


def find_cam_layer(model: ImageClassifier, min_size: int) -> str | None:
    """The last stage-level layer (in execution order) whose output maps are at least ``min_size`` wide.

    Stage-level: a child of the network itself or of an ``nn.Sequential`` (``blocks.4`` on
    EfficientNet-Lite, ``layer3`` on ResNet, ``features.29`` on VGG), so the map is a block's
    output rather than an expansion inside a block. Probed with one forward pass on a private
    copy (hooks never touch the shared model). Falls back to the model's own Grad-CAM layer.
    """
    probe = copy.deepcopy(model.network)
    modules = dict(probe.named_modules())
    seen: list[tuple[str, int]] = []

    def stage_level(name: str) -> bool:
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        return parent == "" or isinstance(modules[parent], nn.Sequential)

    handles = [module.register_forward_hook(lambda m, i, o, name=name: seen.append(
        (name, o.shape[-1] if isinstance(o, torch.Tensor) and o.ndim == 4 else 0)))
        for name, module in modules.items() if name and stage_level(name)]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, 3, model.input_size, model.input_size, device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    wide = [name for name, width in seen if width >= min_size]
    return wide[-1] if wide else model.cam_layer_name


def _planes(model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor, method: str,
            config: ExplainConfig, layer: str | None) -> torch.Tensor:
    """(4, H, W) non-negative evidence maps for the four (image, class) panels, batched."""
    from captum.attr import (GuidedGradCam, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency)

    images = images.clone().requires_grad_(True)
    if method == "integrated_gradients":  # black baseline; sum over channels, positive evidence
        a = IntegratedGradients(model).attribute(images, baselines=torch.zeros_like(images), target=targets,
                                                 n_steps=config.ig_steps, method="riemann_middle",
                                                 internal_batch_size=max(config.ig_batch_size, len(images)))
        return a.detach().sum(1).clamp_min(0.0)
    if method == "saliency":  # where the class is sensitive: max |gradient| over channels
        return Saliency(model).attribute(images, target=targets, abs=True).detach().amax(1)
    if method == "smoothgrad":  # Saliency averaged over noisy copies (local generator)
        generator = torch.Generator().manual_seed(config.seed)
        n = config.smoothgrad_samples
        noise = torch.randn((n, *images.shape), generator=generator).to(images.device) * config.smoothgrad_stdev
        noisy = (images.detach()[None] + noise).reshape(-1, *images.shape[1:]).requires_grad_(True)
        grads = Saliency(model).attribute(noisy, target=targets.repeat(n), abs=True).detach()
        return grads.reshape(n, *images.shape).mean(0).amax(1)
    if layer is None:
        raise ValueError(f"model {model.name} has no layer for Grad-CAM; use integrated_gradients or saliency.")
    module = model.get_submodule(f"network.{layer}")
    if method == "gradcam":
        cam = LayerGradCam(model, module).attribute(images, target=targets, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")
        return cam.detach()[:, 0].clamp_min(0.0)
    if method == "guided_gradcam":
        guided = GuidedGradCam(model, module).attribute(images, target=targets, interpolate_mode="bilinear")
        return guided.detach().sum(1).clamp_min(0.0)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for v in np.unique(values):
        tied = values == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None below 3 points or when either side is constant."""
    if len(a) < 3:
        return None
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement_score(map_true: np.ndarray, map_adv: np.ndarray, contributions: Contributions
                    ) -> tuple[float | None, dict[str, float | None]]:
    """The documented agreement score (module docstring) and its two parts."""
    parts = {"obscuring": spearman(map_true, contributions.obscuring),
             "leading": spearman(map_adv, contributions.leading)}
    known = [v for v in parts.values() if v is not None]
    return (float(np.mean(known)) if known else None), parts


def attribution_maps(model: ImageClassifier, clean: torch.Tensor, adv: torch.Tensor, y: int, a: int, method: str,
                     config: ExplainConfig) -> tuple[dict[tuple[str, str], np.ndarray], list[str]]:
    """The four (image, class) maps at pixel resolution, and any caveat about them.

    Runs on a private deep copy of the model (Captum's layer hooks never touch the shared one).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    notes: list[str] = []
    layer = find_cam_layer(model, config.gradcam_min_size) if "gradcam" in method else None
    if method == "guided_gradcam":
        note = _guided_warning(model)
        if note and config.strict_guided:
            raise ValueError(note)
        if note:
            notes.append(note)
    with model_lock(model), EvalMode(model):
        private = copy.deepcopy(model)  # ~20 MB, ~30 ms
        images = torch.stack([clean, clean, adv, adv]).to(model.device)
        planes = _planes(private, images, torch.tensor([y, a, y, a], device=model.device), method, config, layer)
    return {key: plane.astype(np.float32) for key, plane in zip(MAP_KEYS, planes.float().cpu().numpy())}, notes


# ---------------------------------------------------------------- explanation


def _check(result: AttackResult, index: int) -> None:
    if not isinstance(result, AttackResult):
        raise ValueError(f"expected an AttackResult, got {type(result).__name__}.")
    if not 0 <= index < result.num_images:
        raise ValueError(f"index {index} is out of range for a result with {result.num_images} images.")
    if not bool(result.success[index]):
        raise ValueError(f"image {index} was not fooled by the attack: there is no perturbation to explain.")
    if int(result.pixel_mask[index].sum()) == 0:
        raise ValueError(f"image {index} has no changed pixel to explain.")


def _top_k(probs: torch.Tensor, k: int, names: list[str] | None) -> tuple[tuple[int, str | None, float], ...]:
    p, i = probs.topk(min(k, probs.numel()))
    return tuple((int(c), names[int(c)] if names else None, float(v)) for v, c in zip(p, i))


def _explain(model: ImageClassifier, result: AttackResult, index: int, method: str | None,
             config: ExplainConfig, progress: Progress | None) -> Explanation:
    start = time.perf_counter()
    _check(result, index)
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    clean, adv = result.originals[index].float(), result.adversarials[index].float()
    y, a = int(result.labels[index]), int(result.adv_labels[index])
    target = None if result.targets is None else int(result.targets[index])
    names = list(model.class_names) if getattr(model, "class_names", None) else None
    notes: list[str] = []
    maps: dict[tuple[str, str], np.ndarray] = {}
    with model_lock(model), EvalMode(model):
        contributions = split(model, clean, adv, y, a, config=config.split, progress=progress)
        label_ratio = contributions.ratio_for(config.split)
        labels = contributions.labels(label_ratio, config.split.floor, config.split.label_scale)
        game = PixelGame(model, clean, adv, torch.from_numpy(contributions.ys), torch.from_numpy(contributions.xs),
                         (y, a), config.split.batch_size)
        ablation, joint = prove(game, contributions, labels, target=target)
        split_seconds = time.perf_counter() - start
        if method is not None:
            if progress is not None:
                progress(1.0, f"{method} maps")
            maps, map_notes = attribution_maps(model, clean, adv, y, a, method, config)
            notes += map_notes
    o_share, l_share = contributions.shares(config.split.floor)
    before, after = to_uint8(clean), to_uint8(adv)
    ys, xs = contributions.ys, contributions.xs
    map_true = maps[("clean", "true")][ys, xs] if maps else np.full(len(ys), np.nan)
    map_adv = maps[("adv", "adv")][ys, xs] if maps else np.full(len(ys), np.nan)
    records = tuple(PixelRecord(
        y=int(py), x=int(px), before=tuple(before[:, py, px].tolist()), after=tuple(after[:, py, px].tolist()),
        obscuring=float(contributions.obscuring[i]), leading=float(contributions.leading[i]),
        obscuring_se=float(contributions.obscuring_se[i]), leading_se=float(contributions.leading_se[i]),
        obscuring_share=float(o_share[i]), leading_share=float(l_share[i]), alone_share=float(joint.single_shares[i]),
        label=labels[i], map_true=float(map_true[i]), map_adv=float(map_adv[i]),
    ) for i, (py, px) in enumerate(zip(ys.tolist(), xs.tolist())))
    agreement, parts = agreement_score(map_true, map_adv, contributions) if maps else (None, {})
    vmax = max([float(m.max()) for m in maps.values()] + [0.0])
    if maps and vmax <= 0:
        notes.append("all attribution maps are zero here.")
    if maps and (agreement is None or agreement < 0.3):
        notes.append(f"The {method} maps do not rank the changed pixels the way their measured effects do "
                     f"(agreement {'n/a' if agreement is None else f'{agreement:.2f}'}): read the contribution "
                     f"chart, not the maps, for which pixel did what.")
    if not ablation.holds:
        notes.append(f"The obscuring/leading split does not hold on this image: {ablation.why}.")
    true_name = names[y] if names else str(y)
    adv_name = names[a] if names else str(a)
    clean_probs, adv_probs = result.clean_probs[index], result.adv_probs[index]
    return Explanation(
        index=index, model_name=result.model_name, method=method or "none", split_method=contributions.method,
        split_note=contributions.note, true_label=y, adv_label=a, true_name=names[y] if names else None,
        adv_name=names[a] if names else None, maps=maps, vmin=0.0, vmax=vmax, pixels=records,
        ablation=ablation.rows, holds=ablation.holds, holds_why=ablation.why, verdict=ablation.verdict, joint=joint,
        sentence=sentence(contributions, labels, joint, true_name, adv_name, (int(clean.shape[-2]), int(clean.shape[-1]))),
        total_drop=contributions.total_drop, total_rise=contributions.total_rise,
        completeness_error=contributions.completeness_error,
        top_k_before=_top_k(clean_probs, config.top_k, names), top_k_after=_top_k(adv_probs, config.top_k, names),
        true_drop=float(clean_probs[y] - adv_probs[y]), adv_rise=float(adv_probs[a] - clean_probs[a]),
        counts={kind: labels.count(kind) for kind in KINDS}, agreement=agreement, agreement_parts=parts,
        seconds=time.perf_counter() - start, split_seconds=split_seconds,
        split_evaluations=contributions.evaluations + game.evaluations, warnings=tuple(notes), config=config,
        label_ratio=label_ratio,
    )


def explain(model: ImageClassifier, result: AttackResult, index: int = 0, *, method: str = "gradcam",
            config: ExplainConfig | None = None, progress: Progress | None = None) -> Explanation:
    """Contributions, labels, per-image proof and 2x2 maps on a shared scale for one fooled image.

    Raises ``ValueError`` for an image the attack did not fool, an unknown method, or a
    model without a suitable Grad-CAM layer when a CAM method is asked for.
    """
    return _explain(model, result, index, method, config or ExplainConfig(), progress)


def explain_pixels(model: ImageClassifier, result: AttackResult, index: int = 0, *,
                   config: ExplainConfig | None = None, progress: Progress | None = None) -> Explanation:
    """The cheap path: contributions, labels and proof only (``maps`` empty, ``agreement`` None)."""
    return _explain(model, result, index, None, config or ExplainConfig(), progress)
