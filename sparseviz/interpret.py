"""Why did a few pixels flip the model? Attribution maps + obscuring/leading pixels.

``explain(model, result, index)`` takes one successful :class:`AttackResult` image and
returns an :class:`Explanation`: four attribution maps (clean/adversarial image x
true/adversarial class) on one shared colour scale, one record per perturbed pixel
labelled from two independent views, and a group-ablation table. ``explain_pixels``
is the cheap path (causal view + ablation, no maps). Plotting lives in ``figures``.

Definitions (``y`` = true class, ``a`` = adversarial class = argmax on the adversarial
image, ``z`` = logits, ``x`` = clean image, ``x'`` = adversarial image, ``x'_{-i}`` =
adversarial image with pixel ``i`` reverted to its clean colour):

* **Obscuring noise** hides evidence for the true class; **leading noise** plants
  evidence for the adversarial class. A pixel can be both or neither.

* Attribution view. Each map is reduced to one non-negative value per pixel ("evidence
  for the class", see :func:`_to_plane`). A pixel's score on a map is its *percentile
  rank* there: the fraction of the image's pixels with a strictly smaller value (0..1,
  scale-free, so maps of different methods and images are comparable)::

      obscuring_score = rank of i on map(x, y)    # it sat on true-class evidence
      leading_score   = rank of i on map(x', a)   # it is now adversarial evidence
      obscuring  iff  obscuring_score >= attribution_threshold   (default 0.9)
      leading    iff  leading_score   >= attribution_threshold

* Causal view. One batched forward pass over all ``x'_{-i}``::

      true_recovery = z_y(x'_{-i}) - z_y(x')      # logits, not probabilities
      adv_drop      = z_a(x')      - z_a(x'_{-i})
      scale         = max(|z_y(x) - z_y(x')|, |z_a(x') - z_a(x)|, 1e-6)
      obscuring  iff  true_recovery / scale >= causal_threshold   (default 0.05)
      leading    iff  adv_drop      / scale >= causal_threshold
      when both hold, the larger effect alone decides if it is >= causal_dominance (2) x the other

  The rule uses logits because probabilities are coupled through the softmax: a
  pixel that only raises ``z_a`` also lowers ``p_y``, so on probabilities every
  leading pixel would look obscuring too. The probability changes (``p_y`` recovery,
  ``p_a`` fall) are reported next to the logits.

* ``label`` (final) is the causal label (it is measured, not inferred); ``agree`` says
  whether the attribution label is the same. Both labels are always kept.

* Group ablation: starting from the clean image, apply only the pixels a view labels
  obscuring (``both`` counts in each group), only its leading pixels, or all perturbed
  pixels, and report ``p_y``, ``p_a``, ``z_y``, ``z_a``. Rows exist for both views, so
  the attribution labels are checked by an experiment they did not see.

Traps handled: the model is forced to eval mode (and restored); Captum's guided
backprop only overrides ``nn.ReLU`` modules, so on models with other activations
(ReLU6, SiLU, GELU, ...) Guided Grad-CAM is partly Grad-CAM x plain gradient: this is
detected and reported in ``warnings`` (``ExplainConfig.strict_guided`` refuses instead);
Captum registers hooks on the layer it explains, so attributions run on a private deep copy
of the model (attacks in other sessions keep running on the shared one, unhooked); calls
are also serialised per model, and tests check no hook is ever left on the shared model.
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .attacks.base import AttackResult, to_uint8
from .models import ImageClassifier

METHODS = ("gradcam", "guided_gradcam", "integrated_gradients", "saliency")
KINDS = ("obscuring", "leading", "both", "neither")
MAP_KEYS = (("clean", "true"), ("clean", "adv"), ("adv", "true"), ("adv", "adv"))


@dataclass(frozen=True)
class ExplainConfig:
    attribution_threshold: float = 0.9  # percentile rank on a map: top 10% of the image counts as evidence
    causal_threshold: float = 0.05  # a pixel must move a logit by 5% of the attack's total logit shift
    causal_dominance: float = 2.0  # past the threshold on both, an effect 2x the other decides alone
    ig_steps: int = 32  # Integrated Gradients path points (black baseline); error ~1/steps, cost linear
    ig_batch_size: int = 8  # images per IG forward/backward: bounds memory whatever ig_steps is
    smoothgrad_samples: int = 0  # >0 wraps saliency/IG/guided in SmoothGrad (NoiseTunnel) with this many samples
    smoothgrad_stdev: float = 0.1  # SmoothGrad noise std in [0, 1] image units
    revert_batch_size: int = 32  # single-pixel reverts per forward pass in the causal view
    top_k: int = 5  # classes listed before/after
    strict_guided: bool = False  # True: refuse Guided Grad-CAM when guided backprop would be incomplete
    seed: int = 0  # seeds SmoothGrad noise

    def __post_init__(self) -> None:
        if not 0.0 < self.attribution_threshold <= 1.0:
            raise ValueError("attribution_threshold must be in (0, 1].")
        if not 0.0 < self.causal_threshold <= 10.0:
            raise ValueError("causal_threshold must be in (0, 10].")
        if not 1.0 <= self.causal_dominance <= 100.0:
            raise ValueError("causal_dominance must be in [1, 100].")
        for name in ("ig_steps", "ig_batch_size", "revert_batch_size", "top_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1.")
        if self.smoothgrad_samples < 0 or self.smoothgrad_stdev < 0:
            raise ValueError("smoothgrad_samples and smoothgrad_stdev must be >= 0.")


@dataclass(frozen=True)
class PixelRecord:
    y: int
    x: int
    before: tuple[int, int, int]  # 8-bit RGB on the clean image
    after: tuple[int, int, int]  # 8-bit RGB on the adversarial image
    obscuring_score: float  # percentile rank on map(clean, true); NaN without maps
    leading_score: float  # percentile rank on map(adv, adv); NaN without maps
    attribution_label: str | None  # None on the explain_pixels path (no maps)
    true_logit_recovery: float  # z_y(revert i) - z_y(adv)
    adv_logit_drop: float  # z_a(adv) - z_a(revert i)
    true_prob_recovery: float  # p_y(revert i) - p_y(adv)
    adv_prob_drop: float  # p_a(adv) - p_a(revert i)
    causal_label: str
    label: str  # final label = the causal label
    agree: bool | None  # attribution label == causal label (None without maps)

    def as_dict(self) -> dict[str, Any]:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        for key in ("obscuring_score", "leading_score"):
            if out[key] != out[key]:  # NaN is not JSON
                out[key] = None
        return out


@dataclass(frozen=True)
class AblationRow:
    group: str  # "clean", "all", "obscuring (causal)", "leading (attribution)", ...
    pixels: int
    true_prob: float
    adv_prob: float
    true_logit: float
    adv_logit: float
    predicted: int


@dataclass(frozen=True)
class Explanation:
    index: int
    model_name: str
    method: str
    true_label: int
    adv_label: int
    true_name: str | None
    adv_name: str | None
    maps: dict[tuple[str, str], np.ndarray]  # (H, W) float32, >= 0; empty on explain_pixels
    vmin: float  # the one colour range every map is drawn with
    vmax: float
    pixels: tuple[PixelRecord, ...]
    ablation: tuple[AblationRow, ...]
    top_k_before: tuple[tuple[int, str | None, float], ...]
    top_k_after: tuple[tuple[int, str | None, float], ...]
    true_drop: float  # p_y(clean) - p_y(adv)
    adv_rise: float  # p_a(adv) - p_a(clean)
    counts: dict[str, int]  # final label -> number of pixels
    agreement: float | None  # share of pixels whose two views agree (None without maps)
    seconds: float
    warnings: tuple[str, ...]
    config: ExplainConfig = field(default_factory=ExplainConfig)

    def ablation_row(self, group: str) -> AblationRow:
        for row in self.ablation:
            if row.group == group:
                return row
        raise KeyError(group)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (maps left out; they go to figures)."""
        return {
            "index": self.index,
            "model": self.model_name,
            "method": self.method,
            "true_label": self.true_label,
            "true_name": self.true_name,
            "adv_label": self.adv_label,
            "adv_name": self.adv_name,
            "colour_range": [self.vmin, self.vmax],
            "rules": {
                "attribution": f"obscuring iff percentile rank on map(clean, true) >= {self.config.attribution_threshold}; "
                f"leading iff percentile rank on map(adv, adv) >= {self.config.attribution_threshold}",
                "causal": f"obscuring iff reverting the pixel alone raises the true logit by >= "
                f"{self.config.causal_threshold} x the attack's logit shift; leading iff it lowers the "
                f"adversarial logit by as much",
                "final": "the causal label; 'agree' compares it with the attribution label",
            },
            "pixels": [p.as_dict() for p in self.pixels],
            "ablation": [dict(row.__dict__) for row in self.ablation],
            "top_k_before": [list(t) for t in self.top_k_before],
            "top_k_after": [list(t) for t in self.top_k_after],
            "true_drop": self.true_drop,
            "adv_rise": self.adv_rise,
            "counts": self.counts,
            "agreement": self.agreement,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- locking / hygiene

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: Captum hooks live on shared modules."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class _EvalMode:
    """Force eval mode on every submodule for the call, restore the flags after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.saved: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.saved = [(m, m.training) for m in self.model.modules()]
        for module, _ in self.saved:
            module.training = False

    def __exit__(self, *exc: object) -> None:
        for module, flag in self.saved:
            module.training = flag


_OTHER_ACTIVATIONS = (nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.Mish,
                      nn.Hardsigmoid, nn.PReLU, nn.SELU, nn.CELU, nn.Softplus)
_ACTIVATION_NAMES = ("swish", "silu", "gelu", "relu6", "hardswish", "mish", "hardsigmoid", "leakyrelu")


def guided_backprop_coverage(model: nn.Module) -> tuple[int, list[str]]:
    """(number of nn.ReLU modules, names of activation types Captum will NOT override).

    Captum's GuidedBackprop hooks ``isinstance(module, nn.ReLU)`` only; ``nn.ReLU6`` is
    a Hardtanh subclass, so EfficientNet-Lite's ReLU6 is left as a plain gradient.
    Functional activations (``F.relu`` in a forward) cannot be seen here at all.
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


# ---------------------------------------------------------------- maps


def _to_plane(attribution: torch.Tensor, method: str) -> torch.Tensor:
    """(1, C, H, W) attribution -> (H, W) non-negative evidence for the class.

    Grad-CAM is already ReLU'd; Guided Grad-CAM and IG are summed over colour channels
    and clamped at 0 (positive evidence); Saliency is the max |gradient| over channels
    (unsigned by nature: it says where the class is sensitive, not in which direction).
    """
    a = attribution.detach()[0]
    if method == "saliency":
        return a.abs().amax(dim=0)
    return a.sum(dim=0).clamp_min(0.0)


def _attribute(model: ImageClassifier, image: torch.Tensor, target: int, method: str, config: ExplainConfig) -> torch.Tensor:
    from captum.attr import GuidedGradCam, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    image = image.to(model.device).clone().requires_grad_(True)
    if method in ("gradcam", "guided_gradcam") and model.cam_layer is None:
        raise ValueError(f"model {model.name} has no Grad-CAM layer; use method='integrated_gradients' or 'saliency'.")
    if method == "gradcam":
        cam = LayerGradCam(model, model.cam_layer).attribute(image, target=target, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), interpolate_mode="bilinear")
        return _to_plane(cam.clamp_min(0.0), method)
    if method == "guided_gradcam":
        algorithm: Any = GuidedGradCam(model, model.cam_layer)
        kwargs: dict[str, Any] = {"interpolate_mode": "bilinear"}
    elif method == "integrated_gradients":
        algorithm = IntegratedGradients(model)
        kwargs = {"baselines": torch.zeros_like(image), "n_steps": config.ig_steps,
                  "internal_batch_size": config.ig_batch_size}
    elif method == "saliency":
        algorithm, kwargs = Saliency(model), {"abs": False}
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if config.smoothgrad_samples > 0:
        torch.manual_seed(config.seed)
        kwargs = {**kwargs, "nt_type": "smoothgrad", "nt_samples": config.smoothgrad_samples,
                  "stdevs": config.smoothgrad_stdev}
        if method == "integrated_gradients":
            kwargs["nt_samples_batch_size"] = 1  # keep IG's internal batch bound
        algorithm = NoiseTunnel(algorithm)
    return _to_plane(algorithm.attribute(image, target=target, **kwargs), method)


def _percentile_rank(plane: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    flat = np.sort(plane.ravel())
    return np.searchsorted(flat, plane[ys, xs], side="left") / flat.size


def attribution_label(obscuring_score: float, leading_score: float, threshold: float) -> str:
    """The attribution-view rule (see the module docstring)."""
    return _kind(obscuring_score >= threshold, leading_score >= threshold)


def causal_label(true_recovery: float, adv_drop: float, scale: float, threshold: float, dominance: float = 2.0) -> str:
    """The causal-view rule (see the module docstring).

    A pixel past the threshold on both effects is labelled by the larger one alone when it
    is at least ``dominance`` times the other: with a handful of pixels nearly every pixel
    moves both logits, and "both" would swallow the distinction the user came to see.
    """
    scale = max(scale, 1e-6)
    obscures, leads = true_recovery / scale >= threshold, adv_drop / scale >= threshold
    if obscures and leads:
        if true_recovery >= dominance * adv_drop:
            leads = False
        elif adv_drop >= dominance * true_recovery:
            obscures = False
    return _kind(obscures, leads)


def _kind(obscuring: bool, leading: bool) -> str:
    return "both" if obscuring and leading else "obscuring" if obscuring else "leading" if leading else "neither"


# ---------------------------------------------------------------- causal view


@torch.no_grad()
def _logits(model: ImageClassifier, images: torch.Tensor, batch: int) -> torch.Tensor:
    out = [model(images[i : i + batch].to(model.device)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out) if out else torch.zeros(0, model.num_classes)


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
             config: ExplainConfig) -> Explanation:
    start = time.perf_counter()
    _check(result, index)
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    clean = result.originals[index : index + 1].float()
    adv = result.adversarials[index : index + 1].float()
    y, a = int(result.labels[index]), int(result.adv_labels[index])
    names = list(model.class_names) if getattr(model, "class_names", None) else None
    coords = result.pixel_mask[index].nonzero()
    ys, xs = coords[:, 0], coords[:, 1]
    notes: list[str] = []

    maps: dict[tuple[str, str], np.ndarray] = {}
    with model_lock(model), _EvalMode(model):
        if method is not None:
            if method == "guided_gradcam":
                note = _guided_warning(model)
                if note and config.strict_guided:
                    raise ValueError(note)
                if note:
                    notes.append(note)
            # Captum hooks the layer it explains, and attacks in other sessions run forward
            # passes through the shared model without taking this lock: a hook there would
            # capture their activations. So the hooks go on a private copy (~20 MB, ~30 ms).
            private = copy.deepcopy(model)
            for image_key, image in (("clean", clean), ("adv", adv)):
                for class_key, target in (("true", y), ("adv", a)):
                    plane = _attribute(private, image, target, method, config)
                    maps[(image_key, class_key)] = plane.float().cpu().numpy().astype(np.float32)
        # causal view: every single-pixel revert, in batched forward passes
        reverts = adv.repeat(len(ys), 1, 1, 1)
        reverts[torch.arange(len(ys)), :, ys, xs] = clean[0][:, ys, xs].T
        base = _logits(model, torch.cat([clean, adv]), 2)
        revert_logits = _logits(model, reverts, config.revert_batch_size)
        z_clean, z_adv = base[0], base[1]

        scale = max(abs(float(z_clean[y] - z_adv[y])), abs(float(z_adv[a] - z_clean[a])), 1e-6)
        p_adv = z_adv.softmax(0)
        p_rev = revert_logits.softmax(1)
        before, after = to_uint8(clean[0]), to_uint8(adv[0])
        ys_np, xs_np = ys.numpy(), xs.numpy()
        if maps:
            obscuring_scores = _percentile_rank(maps[("clean", "true")], ys_np, xs_np)
            leading_scores = _percentile_rank(maps[("adv", "adv")], ys_np, xs_np)
        records = []
        for i, (py, px) in enumerate(zip(ys_np.tolist(), xs_np.tolist())):
            recovery = float(revert_logits[i, y] - z_adv[y])
            drop = float(z_adv[a] - revert_logits[i, a])
            c_label = causal_label(recovery, drop, scale, config.causal_threshold, config.causal_dominance)
            o_score = float(obscuring_scores[i]) if maps else float("nan")
            l_score = float(leading_scores[i]) if maps else float("nan")
            a_label = attribution_label(o_score, l_score, config.attribution_threshold) if maps else None
            records.append(PixelRecord(
                y=py, x=px, before=tuple(before[:, py, px].tolist()), after=tuple(after[:, py, px].tolist()),
                obscuring_score=o_score, leading_score=l_score, attribution_label=a_label,
                true_logit_recovery=recovery, adv_logit_drop=drop,
                true_prob_recovery=float(p_rev[i, y] - p_adv[y]), adv_prob_drop=float(p_adv[a] - p_rev[i, a]),
                causal_label=c_label, label=c_label, agree=None if a_label is None else a_label == c_label,
            ))

        # group ablation: clean image + only the pixels of one group
        groups: list[tuple[str, list[int]]] = [("clean", []), ("all", list(range(len(records))))]
        views = [("causal", "causal_label")] + ([("attribution", "attribution_label")] if maps else [])
        for view, attr in views:
            for kind in ("obscuring", "leading"):
                members = [i for i, r in enumerate(records) if getattr(r, attr) in (kind, "both")]
                groups.append((f"{kind} ({view})", members))
        ablated = clean.repeat(len(groups), 1, 1, 1)
        for g, (_, members) in enumerate(groups):
            if members:
                m = torch.tensor(members)
                ablated[g][:, ys[m], xs[m]] = adv[0][:, ys[m], xs[m]]
        ablation_logits = _logits(model, ablated, config.revert_batch_size)
    probs = ablation_logits.softmax(1)
    ablation = tuple(
        AblationRow(group=name, pixels=len(members), true_prob=float(probs[g, y]), adv_prob=float(probs[g, a]),
                    true_logit=float(ablation_logits[g, y]), adv_logit=float(ablation_logits[g, a]),
                    predicted=int(ablation_logits[g].argmax()))
        for g, (name, members) in enumerate(groups)
    )
    vmin, vmax = 0.0, max([float(m.max()) for m in maps.values()] + [0.0])
    if maps and vmax <= 0:
        notes.append("all attribution maps are zero; the attribution view labels every pixel 'neither'.")
    counts = {kind: sum(r.label == kind for r in records) for kind in KINDS}
    agreement = None if not maps else float(np.mean([bool(r.agree) for r in records]))
    clean_probs, adv_probs = result.clean_probs[index], result.adv_probs[index]
    return Explanation(
        index=index, model_name=result.model_name, method=method or "none", true_label=y, adv_label=a,
        true_name=names[y] if names else None, adv_name=names[a] if names else None,
        maps=maps, vmin=vmin, vmax=vmax, pixels=tuple(records), ablation=ablation,
        top_k_before=_top_k(clean_probs, config.top_k, names), top_k_after=_top_k(adv_probs, config.top_k, names),
        true_drop=float(clean_probs[y] - adv_probs[y]), adv_rise=float(adv_probs[a] - clean_probs[a]),
        counts=counts, agreement=agreement, seconds=time.perf_counter() - start, warnings=tuple(notes), config=config,
    )


def explain(model: ImageClassifier, result: AttackResult, index: int = 0, *, method: str = "gradcam",
            config: ExplainConfig | None = None) -> Explanation:
    """Maps (2x2, shared scale), per-pixel obscuring/leading labels from both views, group ablation.

    Raises ``ValueError`` for an image the attack did not fool, an unknown method, or
    a model without a Grad-CAM layer when a CAM method is asked for.
    """
    return _explain(model, result, index, method, config or ExplainConfig())


def explain_pixels(model: ImageClassifier, result: AttackResult, index: int = 0, *,
                   config: ExplainConfig | None = None) -> Explanation:
    """The cheap path: causal view + ablation only (``maps`` empty, ``agreement`` None)."""
    return _explain(model, result, index, None, config or ExplainConfig())


def hooks_on(model: nn.Module) -> Iterator[tuple[str, str]]:
    """(module name, hook kind) for every hook registered on the model (for tests)."""
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, kind, None):
                yield name, kind
