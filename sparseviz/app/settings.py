"""What the app's pages decide without Streamlit: attack settings and quick mode, the keys that
identify a run, the query string, and the state the Audit page hands to the single-image page.

Plain functions of plain values, so they are unit-tested and type-checked like the library;
the pages only read widgets, call these and draw the results.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..attacks.base import AttackResult
from ..attacks.sparse import QUICK, SparseConfig
from ..models import resolve_device
from .warmup import WarmKey

QUICK_ENV = "SPARSEVIZ_QUICK"  # 1: no colour refinement or swap search (load tests, slow machines)
TRUST_ENV = "SPARSEVIZ_TRUST_MODEL_UPLOADS"  # 1: accept TorchScript / .pt2 uploads, which run their author's code
TRUST_FLAG = "--trust-model-uploads"  # the same, as `streamlit run app.py -- --trust-model-uploads`
BUNDLED = "bundled:"  # image ids of bundled photos start with this; the query string names them
AUDIT_SOURCE = "from the audit"  # the single page's image source for an image opened from the Audit page

T = TypeVar("T")


def quick_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Quick mode: several times fewer model calls per attack, usually more pixels."""
    return environ.get(QUICK_ENV) == "1"


def trust_uploads(environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> bool:
    """Model-file uploads are on only when the server's operator said so (read at every page run)."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    return environ.get(TRUST_ENV) == "1" or TRUST_FLAG in argv[1:]


def sparse_config(sparsity_weight: float, steps: int, seed: int, *, quick: bool) -> SparseConfig:
    """The sparse attack's config for both pages (and the server's warm-up key)."""
    config = SparseConfig(sparsity_weight=sparsity_weight, steps=steps, seed=seed)
    return config.retuned(**QUICK) if quick else config


@dataclass(frozen=True)
class Settings:
    """The single-image page's attack form."""

    sparsity_weight: float
    steps: int
    seed: int
    target: str | None  # class name, None = untargeted
    device: str

    def config(self, *, quick: bool, sparsity_weight: float | None = None) -> SparseConfig:
        """This form's config; ``sparsity_weight`` replaces the form's (the sweep runs several)."""
        weight = self.sparsity_weight if sparsity_weight is None else sparsity_weight
        return sparse_config(weight, self.steps, self.seed, quick=quick)


def run_key(image_id: str | None, model_id: str | None, settings: Settings) -> tuple[Any, ...]:
    """What makes two attacks the same run: the image, the model and every setting."""
    return (image_id, model_id, settings.sparsity_weight, settings.steps, settings.seed, settings.target,
            settings.device)


def digest(data: bytes) -> str:
    """A short content digest: two uploads of the same bytes are the same image, whatever their names."""
    return hashlib.sha256(data).hexdigest()[:16]


def files_digest(files: Mapping[str, bytes]) -> str:
    """One digest for a set of named files (the Audit page's inputs), built from each file's :func:`digest`."""
    combined = hashlib.sha256()
    for name, data in files.items():
        combined.update(name.encode() + b"\0" + digest(data).encode())
    return combined.hexdigest()[:16]


def warm_key(image_id: str, model_id: str, settings: Settings, *, quick: bool) -> WarmKey | None:
    """The server warm-up's key for this run, or None when the warm-up cannot have computed it."""
    if settings.target is not None or not image_id.startswith(BUNDLED):
        return None
    try:
        device = str(resolve_device(settings.device))
    except ValueError:
        return None
    return WarmKey(image_id.removeprefix(BUNDLED), model_id, device, settings.config(quick=quick))


# --- the query string ----------------------------------------------------------------------------


def query_params(image_id: str, model_name: str | None, settings: Settings) -> dict[str, str]:
    """A run as a query string (a link that restores it): bundled photos and registry models only."""
    values: dict[str, Any] = {
        "image": image_id.removeprefix(BUNDLED) if image_id.startswith(BUNDLED) else None, "model": model_name,
        "weight": settings.sparsity_weight, "steps": settings.steps, "seed": settings.seed,
        "target": settings.target, "device": settings.device,
    }
    return {key: str(value) for key, value in values.items() if value is not None}


def query_value(params: Mapping[str, str], key: str, parse: Callable[[str], T], fallback: T) -> T:
    """One query-string value parsed, or ``fallback`` when it is missing or does not parse."""
    try:
        return parse(params[key]) if key in params else fallback
    except (TypeError, ValueError):
        return fallback


# --- partial results --------------------------------------------------------------------------------


def stopped_result(partial: tuple[tuple[Any, ...], AttackResult] | None, key: tuple[Any, ...],
                   last_key: tuple[Any, ...] | None) -> AttackResult | None:
    """The best result of a run the user stopped, when it is this run's and no full run replaced it."""
    if partial is None or partial[0] != key or last_key == key:
        return None
    return partial[1]


# --- from the Audit page to the single-image page ---------------------------------------------------


def single_page_state(config: SparseConfig, model_name: str, image: str, result: AttackResult, *,
                      gallery: bool, source: bytes | None) -> dict[str, Any]:
    """The single-image page's widget values (and the result to show) for one audited image.

    Its keys are the single page's widget keys; only this function writes them from the Audit page.
    """
    state: dict[str, Any] = {
        "weight": config.sparsity_weight, "steps": config.steps, "seed": config.seed, "mode": "untargeted",
        "model": model_name, "device": "auto", "handoff": result, "switch_to_single": True,
    }
    if gallery:
        state.update({"source": "bundled photo", "bundled": image.rsplit(".", 1)[0]})
    else:
        state.update({"source": AUDIT_SOURCE, "opened": (image, source)})
    return state
