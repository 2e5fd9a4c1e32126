"""Folders of photos: which files to read, their class folders, and the preprocessed images.

Shared by the benchmark, the audit (local and on Ray) and the app's Audit page, so all of
them read and skip the same files with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from .decode import ImageLoadError, load_image
from .tensors import to_tensor


class FolderModel(Protocol):
    """What a folder loader needs of a model: its name, class names and preprocessing (images sit below models)."""

    @property
    def name(self) -> str: ...

    def class_index(self, name: str, /) -> int: ...

    def preprocess(self, image: torch.Tensor, /) -> torch.Tensor: ...


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def image_files(folder: str | Path) -> tuple[list[tuple[Path, str | None]], str]:
    """Files of a folder to read as images, each with its class folder name (None for a flat folder).

    A folder of subfolders is ImageFolder-style ("class folders"); otherwise it is "flat".
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images.")
    entries = sorted(folder.iterdir())
    subfolders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    files: list[tuple[Path, str | None]] = [
        (p, None) for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if subfolders:
        for sub in subfolders:
            files += [(p, sub.name) for p in sorted(sub.iterdir()) if p.is_file() and not p.name.startswith(".")]
        return files, "class folders"
    # Files without a suffix are tried too (the loader sniffs content; failures are reported);
    # documents next to the photos (ATTRIBUTION.md, labels.csv) are not images and are left alone.
    files += [(p, None) for p in entries if p.is_file() and not p.name.startswith(".") and not p.suffix]
    return sorted(files), "flat"


@dataclass(frozen=True)
class BenchImage:
    name: str  # path relative to the folder, e.g. "cat/chelsea.png" or "chelsea.png"
    image: torch.Tensor  # (3, H, W) preprocessed for the model, 8-bit exact
    folder_label: int | None  # from an ImageFolder-style class subfolder, else None


@dataclass(frozen=True)
class LoadedFolder:
    images: list[BenchImage]
    skipped: list[tuple[str, str]]  # (file, one-line reason): unreadable files, unknown class folders
    layout: str  # "flat" or "class folders"


def folder_class(model: FolderModel, name: str) -> int:
    """The class a folder name stands for: an index, an exact name, or with '_' for ' '."""
    for candidate in (name, name.replace("_", " ")):
        try:
            return model.class_index(candidate)
        except ValueError:
            continue
    raise ValueError(f"folder {name!r} is not a class of {model.name} (use a class index or exact class name).")


def load_file(
    path: Path, relative: str, class_name: str | None, model: FolderModel, class_cache: dict[str, int | str] | None = None
) -> BenchImage | tuple[str, str]:
    """One file as a preprocessed image, or ``(relative, one-line reason)`` when it cannot be used.

    Shared by the local folder loader and the distributed audit's decode tasks, so both
    skip the same files with the same words.
    """
    cache = class_cache if class_cache is not None else {}
    label = None
    if class_name is not None:
        if class_name not in cache:
            try:
                cache[class_name] = folder_class(model, class_name)
            except ValueError as error:
                cache[class_name] = str(error)
        if isinstance(cache[class_name], str):
            return relative, str(cache[class_name])
        label = int(cache[class_name])
    try:
        loaded = load_image(path)
    except ImageLoadError as error:
        reason = str(error)
        return relative, reason[len(path.name) + 2 :] if reason.startswith(f"{path.name}: ") else reason
    return BenchImage(relative, model.preprocess(to_tensor(loaded.image)), label)


def load_folder(folder: str | Path, model: FolderModel, *, limit: int | None = None) -> LoadedFolder:
    """Load and preprocess every image of a folder, skipping (and reporting) what cannot be used."""
    files, layout = image_files(Path(folder))
    images: list[BenchImage] = []
    skipped: list[tuple[str, str]] = []
    class_cache: dict[str, int | str] = {}
    for path, class_name in files:
        loaded = load_file(path, str(path.relative_to(folder)), class_name, model, class_cache)
        if isinstance(loaded, tuple):
            skipped.append(loaded)
            continue
        images.append(loaded)
        if limit is not None and len(images) >= limit:
            break
    return LoadedFolder(images, skipped, layout)
