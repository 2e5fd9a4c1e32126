"""Server warm-up: load the default model and attack the default photo before anyone asks.

A classroom demo should show its first flip seconds after the page opens, but the default
attack takes ~12 s on a 2-core CPU. The result is deterministic (same photo, model, settings
and seed give the same pixels), so the server computes it once in a background thread at
start and every session's first "Run attack" with the defaults reads it. Any other setting
runs as usual. Only the defaults are prefetched: the cost is one attack per server start, or
one check of the shipped default result (``sparseviz.app.shipped``) when that result holds here.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import torch

from ..attacks import SparseConfig, sparse_attack
from ..attacks.base import AttackResult
from .demo import DEFAULT_PHOTO
from ..images.gallery import load_bundled
from ..images import to_tensor
from ..models import DEFAULT_MODEL, ImageClassifier, load_model, resolve_device

DISABLE_ENV = "SPARSEVIZ_NO_WARMUP"  # set to 1 to skip the prefetch (tests, memory-tight servers)


@dataclass(frozen=True)
class WarmKey:
    photo: str
    model: str
    device: str
    config: SparseConfig


_LOCK = threading.Lock()
_FUTURES: dict[WarmKey, Future] = {}


def default_key(device: str = "auto") -> WarmKey:
    return WarmKey(DEFAULT_PHOTO, DEFAULT_MODEL, str(resolve_device(device)), SparseConfig())


def default_image(model: ImageClassifier, photo: str = DEFAULT_PHOTO) -> torch.Tensor:
    """The bundled photo as the model sees it, (1, 3, H, W): the same path as the app's."""
    return model.preprocess(to_tensor(load_bundled(photo).image))[None]


def _compute(key: WarmKey) -> AttackResult:
    model = load_model(key.model, device=key.device)
    if key == default_key(key.device):  # the shipped default demo, when it checks out here, saves the attack
        from . import shipped

        ready = shipped.checked(shipped.all_shipped()[0], model)
        if ready is not None:
            return ready
    image = default_image(model, key.photo)
    label = model.predict_proba(image).argmax(1).cpu()
    return sparse_attack(model, image, label, config=key.config)


def start(device: str = "auto", *, force: bool = False,
          on_done: Callable[[AttackResult | BaseException, float], None] | None = None) -> Future | None:
    """Begin (once per process) loading the default model and attacking the default photo.

    Returns the future, or None when warm-up is disabled by ``SPARSEVIZ_NO_WARMUP=1``
    or the photo/model is not available here (the app then simply runs on demand).
    """
    if os.environ.get(DISABLE_ENV) == "1" and not force:
        return None
    try:
        key = default_key(device)
    except ValueError:
        return None
    with _LOCK:
        if key in _FUTURES:
            return _FUTURES[key]
        future: Future = Future()
        _FUTURES[key] = future

    def work() -> None:
        started = time.perf_counter()
        try:
            future.set_result(_compute(key))
        except BaseException as error:  # noqa: BLE001 - reported to whoever reads the future
            future.set_exception(error)
        if on_done is not None:
            on_done(future.exception() or future.result(), time.perf_counter() - started)

    threading.Thread(target=work, name="sparseviz-warmup", daemon=True).start()
    return future


def prefetched(key: WarmKey, timeout: float | None = 120.0) -> AttackResult | None:
    """The warm-up's result for ``key`` (waiting for it if it is still running), else None."""
    with _LOCK:
        future = _FUTURES.get(key)
    if future is None:
        return None
    try:
        return future.result(timeout=timeout)
    except Exception:  # noqa: BLE001 - a failed or slow warm-up only means running on demand
        return None


def is_ready(device: str = "auto") -> bool:
    """True once the default result is computed (a script or test can wait on this)."""
    with _LOCK:
        future = _FUTURES.get(default_key(device))
    return future is not None and future.done()


__all__ = ["DISABLE_ENV", "WarmKey", "default_image", "default_key", "is_ready", "prefetched", "start"]
