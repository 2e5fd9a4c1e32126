"""Images in: safe decoding with size limits, tensors in [0, 1], the bundled gallery, folders of photos.

The package's public names live here so callers need not know which module holds them.
"""

from .decode import SUPPORTED_FORMATS, ImageLimits, ImageLoadError, LoadedImage, load_image, load_upload, sniff_format
from .tensors import quantize, save_png, to_pil, to_tensor, to_uint8

__all__ = [
    "SUPPORTED_FORMATS", "ImageLimits", "ImageLoadError", "LoadedImage", "load_image", "load_upload", "sniff_format",
    "quantize", "save_png", "to_pil", "to_tensor", "to_uint8",
]
