"""The wrapper every attack and attribution talks to.

A wrapped model takes float images ``(N, 3, H, W)`` in [0, 1] and returns logits.
It owns its normalization, input size, preprocessing and class names, so no other
module ever normalizes anything.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from ..images.tensors import quantize

class ModelError(ValueError):
    """A model cannot be built or used; the message says why and what to do."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are not on this machine and downloading was not allowed."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda[:i]`` into a device, refusing CUDA when there is no GPU."""
    if isinstance(device, torch.device):
        device = str(device)
    device = str(device).strip().lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no GPU is available here; use device 'cpu' or 'auto'.")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu' or 'cuda'.")


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


class InvocationCount:
    """How many times the network ran (sequentially, whatever the batch size)."""

    def __init__(self) -> None:
        self.value = 0


# Per thread/context, so concurrent attacks on one shared model never mix their counts.
_INVOCATIONS: ContextVar[InvocationCount | None] = ContextVar("sparseviz_invocations", default=None)


@contextmanager
def count_invocations() -> Iterator[InvocationCount]:
    """Count every forward pass of any :class:`ImageClassifier` made in this context."""
    count = InvocationCount()
    token = _INVOCATIONS.set(count)
    try:
        yield count
    finally:
        _INVOCATIONS.reset(token)


@contextmanager
def one_invocation() -> Iterator[None]:
    """Count the forward passes made inside as one invocation.

    For one batch that runs in chunks only for the CPU's caches: a GPU runs it as one.
    """
    count = _INVOCATIONS.get()
    token = _INVOCATIONS.set(None)
    try:
        yield
    finally:
        _INVOCATIONS.reset(token)
        if count is not None:
            count.value += 1


class ImageClassifier(nn.Module):
    """A classifier that accepts images in [0, 1] and knows how it wants them.

    Parameters are frozen (``requires_grad=False``) and the module is kept in eval
    mode, so one instance can be shared between threads and app sessions: attacks
    only ever take gradients with respect to their inputs.
    """

    mean: torch.Tensor  # buffers, (1, 3, 1, 1): they move with .to(device)
    std: torch.Tensor

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        class_names: Sequence[str],
        input_size: int,
        resize_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        cam_layer: str | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.name = name
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.resize_size = int(resize_size)
        self.interpolation = interpolation
        self.cam_layer_name = cam_layer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def train(self, mode: bool = True) -> "ImageClassifier":
        # Attacks and attributions assume fixed batch-norm statistics and no dropout;
        # a wrapper silently switched to training mode would make results batch-dependent.
        if mode:
            warnings.warn("ImageClassifier stays in eval mode; train(True) ignored.", stacklevel=2)
        # Set the flag directly rather than calling each child's train(): modules from
        # torch.export raise NotImplementedError there (they are inference graphs already).
        for module in self.modules():
            module.training = False
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for images ``(N, 3, H, W)`` in [0, 1]."""
        count = _INVOCATIONS.get()
        if count is not None:
            count.value += 1
        normalized = (images - self.mean) / self.std
        if normalized.device.type == "cpu" and normalized.dim() == 4:
            # Channels-last input on the CPU: measured on the 2-core CPU (EfficientNet-Lite0, one
            # thread) 20 ms per image instead of 37 at batch 1, 19 instead of 28 at batch 4, the
            # same logits up to float rounding. Not on CUDA: an H200 gained nothing per forward
            # (5 ms either way) and, with channels-last weights and input, ran the attack at an
            # erratic 0.4-15 s per image (median 3.6 s against ~1.3 s without; cause not isolated).
            normalized = normalized.contiguous(memory_format=torch.channels_last)
        return self.network(normalized)

    @property
    def cam_layer(self) -> nn.Module | None:
        """The layer Grad-CAM should look at by default (last conv block)."""
        if self.cam_layer_name is None:
            return None
        return self.network.get_submodule(self.cam_layer_name)

    def class_index(self, label: int | str) -> int:
        """Accept a class index or a (case-insensitive, unique-prefix) class name."""
        if isinstance(label, int) or (isinstance(label, str) and label.strip().lstrip("-").isdigit()):
            index = int(label)
            if not 0 <= index < self.num_classes:
                raise ValueError(f"class index {index} is out of range 0..{self.num_classes - 1} for {self.name}.")
            return index
        wanted = str(label).strip().lower()
        lowered = [name.lower() for name in self.class_names]
        if wanted in lowered:
            return lowered.index(wanted)
        matches = [i for i, name in enumerate(lowered) if name.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(repr(self.class_names[i]) for i in matches[:5])
            raise ValueError(f"class name {label!r} is ambiguous for {self.name}: {shown}...")
        raise ValueError(f"unknown class {label!r} for {self.name}; give a class index or an exact class name.")

    def preprocess(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Resize the short side and center-crop to the model's input; 8-bit exact.

        Quantizing here means the tensor the attack starts from is exactly the
        ``original.png`` a user can save: every number is measured on 8-bit images.
        """
        if isinstance(image, Image.Image):
            tensor = TF.pil_to_tensor(image.convert("RGB")).float() / 255.0
        else:
            tensor = image.float()
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected an RGB image (3, H, W); got shape {tuple(tensor.shape)}.")
        tensor = TF.resize(tensor, self.resize_size, interpolation=self.interpolation, antialias=True)
        tensor = TF.center_crop(tensor, [self.input_size, self.input_size])
        return quantize(tensor)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, computed without gradients."""
        return self(images.to(self.device)).softmax(dim=1)

