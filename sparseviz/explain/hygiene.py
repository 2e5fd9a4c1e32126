"""Side-effect guards shared by everything that runs Captum on a shared model.

Captum registers hooks on modules and a model may be shared by several app sessions
(threads): one lock per model object, eval mode forced for the call and restored after,
and a way for tests to list any hook left behind.
"""

from __future__ import annotations

import threading
import weakref
from typing import Iterator

from torch import nn

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One re-entrant lock per model object: Captum hooks live on shared modules."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class EvalMode:
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


def hooks_on(model: nn.Module) -> Iterator[tuple[str, str]]:
    """(module name, hook kind) for every hook registered on the model (for tests)."""
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, kind, None):
                yield name, kind
