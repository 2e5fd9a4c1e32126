"""Images as tensors: float (3, H, W) in [0, 1], rounded to the 8-bit values a PNG holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to the nearest 8-bit value, as saving to PNG would (any shape, floats in [0, 1])."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit values a PNG save would hold (any shape, floats in [0, 1])."""
    return torch.round(images.detach().clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> 8-bit PIL RGB (rounded, as saved)."""
    return Image.fromarray(to_uint8(image.cpu()).permute(1, 2, 0).numpy(), mode="RGB")


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Save losslessly; the file holds exactly the 8-bit values every metric was measured on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path, format="PNG")
    return path
