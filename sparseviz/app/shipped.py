"""Demo results computed ahead of time and shipped with the bundled photos, re-checked before use.

Why: the default demo's live attack takes 40+ s on a 2-core CPU, so a class's first visitor
waited that long for its first flip. The default demo, each "Try these" preset and every bundled
photo at the page's defaults are deterministic (photo, model, settings, seed, one torch thread),
so ``sparseviz.app.precompute`` runs them once and ships the adversarial image as an 8-bit PNG
plus a JSON report under ``assets/.demo/``. Before one is shown, :func:`verified` classifies the
shipped PNG here (one forward pass of the clean and the adversarial image): only when it still
fools this model into the shipped class is it used, and every number shown is recomputed from
the PNG (the JSON only says how and when it was made). Anything else (a missing or damaged file,
another torch build that classifies it differently, a changed attack tuning) means the demo
runs live.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .. import __version__
from ..attacks.base import AttackResult, finalize
from ..attacks.sparse import SparseConfig
from ..images import to_pil, to_tensor, to_uint8
from ..images.gallery import ASSETS_DIR, bundled_images, load_bundled
from ..models import DEFAULT_MODEL, ImageClassifier
from ..models.threads import ATTACK_THREADS
from ..views.report import attack_report
from .demo import PRESETS, Preset
from .settings import BUNDLED, Settings, sparse_config

DEMO_DIR = ASSETS_DIR / ".demo"  # hidden: audits and benchmarks of the photo folder skip it
FORMAT = 1  # bump when the JSON's meaning changes; older files are then ignored
THREADS = ATTACK_THREADS  # torch threads the shipped results are computed with (as the app's workers and audits)


@dataclass(frozen=True)
class Shipped:
    """One precomputed demo: which preset, its run settings and where its files live."""

    preset: Preset
    settings: Settings

    @property
    def name(self) -> str:
        target = f"-{self.preset.target}" if self.preset.target else ""
        return f"{self.preset.photo}{target}-w{self.preset.sparsity_weight:g}"

    @property
    def png(self) -> Path:
        return DEMO_DIR / f"{self.name}.png"

    @property
    def report(self) -> Path:
        return DEMO_DIR / f"{self.name}.json"

    def config(self) -> SparseConfig:
        return self.settings.config(quick=False)


def demo_settings(preset: Preset) -> Settings:
    """The attack form's values after a click on ``preset`` (defaults for all it does not set)."""
    defaults = SparseConfig()
    return Settings(preset.sparsity_weight, defaults.steps, defaults.seed, preset.target, "auto")


def defaults_presets() -> list[Preset]:
    """Every bundled photo at the page's defaults: picking a photo in the sidebar and pressing Run
    attack then answers at once too (a live run of the larger ones takes 10-16 s at one thread)."""
    return [Preset(f"{photo} at the defaults", "The page's default settings on a bundled photo.", photo)
            for photo in bundled_images()]


def all_shipped() -> list[Shipped]:
    """Every shipped demo, one per distinct run: the "Try these" presets (the default demo first),
    then each bundled photo at the defaults."""
    seen: dict[str, Shipped] = {}
    for preset in (*PRESETS, *defaults_presets()):
        item = Shipped(preset, demo_settings(preset))
        seen.setdefault(item.name, item)
    return list(seen.values())


def config_digest(config: SparseConfig, targeted: bool) -> str:
    """Identifies every knob and tuning value a run uses (the preset resolved): a tuning change retires old files."""
    return hashlib.sha256(repr((config, config.tuning_for(targeted))).encode()).hexdigest()[:16]


def find(image_id: str, model_id: str, settings: Settings, *, quick: bool) -> Shipped | None:
    """The shipped demo for exactly this run (bundled photo, default model, same settings), if any."""
    if quick or model_id != DEFAULT_MODEL or not image_id.startswith(BUNDLED):
        return None
    photo = image_id.removeprefix(BUNDLED)
    for item in all_shipped():
        wanted = item.settings
        if (item.preset.photo == photo and settings.target == wanted.target
                and (settings.sparsity_weight, settings.steps, settings.seed)
                == (wanted.sparsity_weight, wanted.steps, wanted.seed)):
            return item
    return None


def clean_image(model: ImageClassifier, photo: str) -> torch.Tensor:
    """The bundled photo as the page feeds it to the model, (1, 3, H, W)."""
    return model.preprocess(to_tensor(load_bundled(photo).image))[None]


def png_data(image: torch.Tensor) -> bytes:
    """A (3, H, W) 8-bit-exact image as a small PNG, refused unless it reads back exactly."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    if not torch.equal(read_png(data), to_uint8(image.cpu()).float() / 255):
        raise RuntimeError("the demo PNG does not round-trip exactly")
    return data


def read_png(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        return to_tensor(image.convert("RGB"))


def write(item: Shipped, model: ImageClassifier, result: AttackResult) -> dict[str, Any]:
    """Save ``result`` as ``item``'s PNG and JSON report; returns the report."""
    if not bool(result.success[0]):
        raise RuntimeError(f"{item.name}: the attack did not fool the model; nothing to ship")
    data = png_data(result.adversarials[0])
    report = {
        "format": FORMAT,
        "preset": item.preset.label,
        "photo": item.preset.photo,
        "model": model.name,
        "settings": {"sparsity_weight": item.settings.sparsity_weight, "steps": item.settings.steps,
                     "seed": item.settings.seed, "target": item.settings.target},
        "config_digest": config_digest(item.config(), item.preset.target is not None),
        "made_with": {"sparseviz": __version__, "torch": torch.__version__, "threads": THREADS},
        "png_sha256": hashlib.sha256(data).hexdigest(),
        "result": attack_report(result, model.class_names, f"{BUNDLED}{item.preset.photo}", "cpu"),
    }
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    item.png.write_bytes(data)
    item.report.write_text(json.dumps(report, indent=1) + "\n")
    return report


class NotUsable(Exception):
    """Why a shipped demo is not shown (the app then runs it live)."""


def verified(item: Shipped, model: ImageClassifier) -> AttackResult:
    """``item``'s result rebuilt from its PNG and checked on ``model`` here; raises :class:`NotUsable`.

    Every number of the returned result (pixels, classes, confidences, success) comes from
    the shipped 8-bit image and one evaluation of ``model``; the JSON gives only the run's
    cost (seconds, model calls) and its expected classes, which must match.
    """
    try:
        return _rebuild(item, model)
    except NotUsable:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file or missing photo only means a live run
        raise NotUsable(f"{item.name}: {type(error).__name__}: {' '.join(str(error).split())}") from None


def _rebuild(item: Shipped, model: ImageClassifier) -> AttackResult:
    try:
        report = json.loads(item.report.read_text())
        data = item.png.read_bytes()
    except (OSError, ValueError) as error:
        raise NotUsable(f"{item.name}: cannot read the shipped files ({error})") from None
    if report.get("format") != FORMAT or report.get("model") != model.name:
        raise NotUsable(f"{item.name}: made for another format or model")
    if report.get("config_digest") != config_digest(item.config(), item.preset.target is not None):
        raise NotUsable(f"{item.name}: the attack's settings or tuning changed since it was made")
    if hashlib.sha256(data).hexdigest() != report.get("png_sha256"):
        raise NotUsable(f"{item.name}: the PNG is not the one its report describes")
    try:
        adversarial = read_png(data)[None]
    except (OSError, ValueError) as error:
        raise NotUsable(f"{item.name}: the PNG does not decode ({error})") from None
    clean = clean_image(model, item.preset.photo).cpu()
    if adversarial.shape != clean.shape:
        raise NotUsable(f"{item.name}: the PNG is {tuple(adversarial.shape[-2:])}, the model's input "
                        f"{tuple(clean.shape[-2:])}")
    with torch.no_grad():
        label = model(clean.to(model.device)).argmax(1).cpu()
    target = None if item.preset.target is None else torch.tensor([model.class_index(item.preset.target)])
    shipped = report.get("result", {})
    made = report.get("made_with", {})
    params = {**shipped.get("params", {}), "shipped": {**made, "file": item.png.name}}
    result = finalize(model, clean, adversarial, label, target, attack="sparse",
                      model_calls=torch.tensor([max(0, int(shipped.get("model_calls", 2)) - 2)]),
                      seconds=float(shipped.get("seconds", 0.0)), params=params,
                      model_invocations=int(shipped.get("model_invocations", 0)))
    if not bool(result.success[0]):
        raise NotUsable(f"{item.name}: the shipped image does not fool this model here")
    if int(result.labels[0]) != shipped.get("true_label") or int(result.adv_labels[0]) != shipped.get("adv_label"):
        raise NotUsable(f"{item.name}: this model gives other classes here than when it was made")
    return result


_CHECKED: dict[tuple[str, int], tuple[ImageClassifier, AttackResult | None]] = {}  # (the model kept: ids stay unique)
_CHECKED_LOCK = threading.Lock()


def checked(item: Shipped, model: ImageClassifier) -> AttackResult | None:
    """:func:`verified` once per process and model (the server's start-up and every page share it);
    None when the demo must run live, with the reason printed once on the server's console."""
    key = (item.name, id(model))
    with _CHECKED_LOCK:
        if key not in _CHECKED:
            try:
                _CHECKED[key] = (model, verified(item, model))
            except NotUsable as reason:
                print(f"sparseviz: shipped demo not used, it runs live: {reason}", file=sys.stderr, flush=True)
                _CHECKED[key] = (model, None)
        return _CHECKED[key][1]


def note(result: AttackResult) -> str | None:
    """One line saying that a shown result was shipped, made with what, and checked here; None for live runs."""
    made = result.params.get("shipped")
    if not isinstance(made, dict):
        return None
    return (f"Precomputed with sparseviz {made.get('sparseviz')} and torch {made.get('torch')} "
            f"({made.get('threads')} thread, {result.seconds:.0f} s), shipped as an 8-bit PNG and checked on this "
            "machine just now: every number here is measured on that image. Change a setting to run it live.")


__all__ = ["DEMO_DIR", "NotUsable", "Shipped", "all_shipped", "checked", "clean_image", "defaults_presets",
           "demo_settings", "find", "note", "verified", "write"]
