"""Shared fixtures: a tiny deterministic model for contract tests, the real offline model for slow ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
