"""Shared fixtures: a tiny deterministic model for contract tests, the real offline model for slow ones.

Tiers (markers, set here so a test file only says what it needs):
- ``unit``: everything not marked ``slow`` or ``system`` (tiny models, no subprocesses): ``pytest -m unit``;
- the default run (``pytest``): unit plus ``slow`` end-to-end tests on the real model;
- ``system``: real browser, load, Ray, whole-repo type check and multi-model or multi-thread runs on
  the real model; deselected by default (pyproject addopts), run with ``pytest -m system`` (``.ci/run`` does).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from sparseviz.attacks.base import AttackResult, is_adversarial, to_uint8
from sparseviz.models import ImageClassifier


class TinyNet(nn.Module):
    """A small fixed CNN on 32x32 images: fast enough to attack in milliseconds."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Linear(16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def make_tiny_model(seed: int = 0, num_classes: int = 10) -> ImageClassifier:
    torch.manual_seed(seed)
    return ImageClassifier(
        TinyNet(num_classes),
        name="tiny",
        class_names=[f"class{i}" for i in range(num_classes)],
        input_size=32,
        resize_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        cam_layer="features.3",
    )


def patch_tiny_registry(monkeypatch: pytest.MonkeyPatch, target: str) -> dict[str, ImageClassifier]:
    """Make ``target`` (a module's ``load_model``) answer with two tiny models, "tiny" and "tiny_other"
    (no weights, milliseconds per call); other names raise as an unknown model does."""
    first, second = make_tiny_model(seed=0), make_tiny_model(seed=1)
    second.name = "tiny_other"
    registry = {"tiny": first, "tiny_other": second}

    def fake_load(name: str, **_: object) -> ImageClassifier:
        if name not in registry:
            raise ValueError(f"unknown model {name!r}")
        return registry[name]

    monkeypatch.setattr(target, fake_load)
    return registry


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions on a shared 2-core machine run ~50x faster on one thread; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clean_labels(model: ImageClassifier, images: torch.Tensor) -> torch.Tensor:
    """The model's own predictions, used as true labels where there is no ground truth."""
    with torch.no_grad():
        return model(images).argmax(dim=1)


def assert_result_contract(
    model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, result: AttackResult
) -> None:
    """What every attack must return: in the box, 8-bit exact, ``success`` equal to a fresh
    evaluation of the returned images, and the originals wherever it failed."""
    assert result.adversarials.shape == images.shape
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    assert torch.equal(to_uint8(result.adversarials).float() / 255, result.adversarials), "not 8-bit exact"
    with torch.no_grad():
        fresh = is_adversarial(model(result.adversarials), labels, None)
    assert torch.equal(fresh, result.success)
    assert torch.equal(result.adversarials[~result.success], images[~result.success])


@pytest.fixture(scope="session")
def tiny_model() -> ImageClassifier:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.round(torch.rand(4, 3, 32, 32, generator=generator) * 255) / 255


@pytest.fixture(scope="session")
def real_model() -> ImageClassifier:
    """EfficientNet-Lite0 with real ImageNet weights from the pip package (offline)."""
    from sparseviz.models import load_model

    return load_model("efficientnet_lite0")


SYSTEM_MARKERS = ("browser", "ray", "system")


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in SYSTEM_MARKERS):
            item.add_marker(pytest.mark.system)
        elif not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.unit)


# The app's server warm-up (an attack on the real model in a background thread) would slow
# every AppTest down; tests that want it (the browser test) start the server without this.
os.environ.setdefault("SPARSEVIZ_NO_WARMUP", "1")
# AppTest runs the page in this process, where tests register tiny models that a spawned worker
# process would not know: its jobs run on threads here. Servers the tests start (browser, load)
# get worker processes, as a class would (sparseviz.app.harness drops this variable).
os.environ.setdefault("SPARSEVIZ_WORKER_PROCESSES", "0")
