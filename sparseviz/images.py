"""Safe image loading: decode, orient, bound size, convert to RGB, to float [0, 1].

(Minimal first version; hardened against hostile files in the reliability work.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps


class ImageLoadError(ValueError):
    """The input cannot be used as an image; the message names the problem in one line."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024  # 20 MiB: any real photo fits, a flood does not
    max_pixels: int = 40_000_000  # 40 MP, checked from the header before decoding
    min_side: int = 8  # smaller than this is not a photo a classifier can read


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, upright
    format: str
    notes: list[str] = field(default_factory=list)


def load_image(source: str | Path | bytes | BinaryIO, *, limits: ImageLimits = ImageLimits()) -> LoadedImage:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"image file not found: {path}")
        data = path.read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        data = source.read()
    if not data:
        raise ImageLoadError("the file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageLoadError(f"the file is {len(data) / 2**20:.1f} MiB; the limit is {limits.max_bytes / 2**20:.0f} MiB.")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > limits.max_pixels:
            raise ImageLoadError(f"the image is {image.width}x{image.height}; the limit is {limits.max_pixels:,} pixels.")
        image = ImageOps.exif_transpose(image)
        rgb = image.convert("RGB")
    except ImageLoadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ImageLoadError(f"not a readable image ({type(error).__name__}).") from error
    return LoadedImage(rgb, str(image.format or "unknown"))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> 8-bit PIL RGB (rounded, as saved)."""
    array = torch.round(image.detach().cpu().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array, mode="RGB")


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Save losslessly; the file holds exactly the 8-bit values every metric was measured on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path, format="PNG")
    return path
