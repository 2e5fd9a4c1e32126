"""The bundled example photos (``assets/``), so the app and CLI work with no upload.

They go through the same :func:`~sparseviz.images.load_image` as any upload:
a bundled file gets no trust a user's file would not.
"""

from __future__ import annotations

from pathlib import Path

from .decode import ImageLoadError, LoadedImage, load_image

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
_SUFFIXES = {".png", ".jpg", ".jpeg"}


def bundled_images() -> dict[str, Path]:
    """Name (file stem) -> path, sorted by name; empty when ``assets/`` is missing (e.g. a wheel install)."""
    if not ASSETS_DIR.is_dir():
        return {}
    paths = sorted(p for p in ASSETS_DIR.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
    return {path.stem: path for path in paths}


def load_bundled(name: str) -> LoadedImage:
    """Load a bundled photo by name (``"chelsea"``; ``"chelsea.png"`` also works)."""
    images = bundled_images()
    key = Path(name).stem if Path(name).suffix.lower() in _SUFFIXES else name
    if key not in images:
        available = ", ".join(images) or f"none (no assets folder at {ASSETS_DIR})"
        raise ImageLoadError(f"no bundled image named {name!r}; available: {available}.")
    return load_image(images[key])
