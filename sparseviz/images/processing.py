"""Everyday processing a photo meets when it is shared: JPEG saves, a resize, a median filter, a blur.

Each transform takes a batch ``(N, 3, H, W)`` of 8-bit exact floats in [0, 1] and returns
the same shape, again 8-bit exact (what the processed file would hold), so a model sees
exactly what a person would save. Used to ask whether an adversarial image survives.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from .tensors import quantize, to_uint8

Transform = Callable[[torch.Tensor], torch.Tensor]


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"expected float images (N, 3, H, W) in [0, 1]; got {tuple(images.shape)} {images.dtype}.")


def jpeg(quality: int) -> Transform:
    """Save as JPEG at ``quality`` (Pillow, 4:2:0 chroma as most cameras and sites do) and decode again."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100; got {quality}.")

    def apply(images: torch.Tensor) -> torch.Tensor:
        _check(images)
        out = []
        for image in to_uint8(images.cpu()):
            buffer = io.BytesIO()
            Image.fromarray(image.permute(1, 2, 0).numpy(), mode="RGB").save(buffer, format="JPEG", quality=quality)
            with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
                array = np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()
            out.append(torch.from_numpy(array).permute(2, 0, 1))
        return torch.stack(out).float().div(255.0).to(images.device)

    return apply


def half_and_back(images: torch.Tensor) -> torch.Tensor:
    """Downscale to half the size (bilinear, antialiased) and back up: a thumbnail view enlarged."""
    _check(images)
    height, width = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, height // 2), max(1, width // 2)), mode="bilinear",
                          antialias=True, align_corners=False)
    return quantize(F.interpolate(quantize(small), size=(height, width), mode="bilinear", align_corners=False))


def median3(images: torch.Tensor) -> torch.Tensor:
    """3x3 median filter per channel, edges reflected: removes isolated pixels, the sparse attack's kind."""
    _check(images)
    n, c, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(padded.reshape(n * c, 1, h + 2, w + 2), kernel_size=3)  # (n*c, 9, h*w)
    return patches.median(dim=1).values.reshape(n, c, h, w)


def blur(sigma: float = 0.5) -> Transform:
    """A slight Gaussian blur (3x3 kernel), as a soft focus or a screen photo would add."""
    def apply(images: torch.Tensor) -> torch.Tensor:
        _check(images)
        return quantize(TF.gaussian_blur(images, kernel_size=[3, 3], sigma=[sigma, sigma]))

    return apply


# name -> (what a person reads, the transform); the order of columns and panels.
EVERYDAY: dict[str, tuple[str, Transform]] = {
    "jpeg95": ("JPEG quality 95", jpeg(95)),
    "jpeg75": ("JPEG quality 75", jpeg(75)),
    "half": ("half size and back", half_and_back),
    "median3": ("3x3 median filter", median3),
    "blur": ("Gaussian blur, sigma 0.5", blur(0.5)),
}


def process_all(images: torch.Tensor) -> torch.Tensor:
    """Every everyday transform of every image, transform-major: ``(len(EVERYDAY) * N, 3, H, W)``."""
    return torch.cat([transform(images) for _, transform in EVERYDAY.values()])


__all__ = ["EVERYDAY", "Transform", "blur", "half_and_back", "jpeg", "median3", "process_all"]
