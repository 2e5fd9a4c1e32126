"""Images for an audit from the places a web page gets them: the gallery, several uploads, a zip.

Every file passes the same :func:`~sparseviz.images.load_image` checks as a single upload
(size, type, pixel and decompression-bomb limits). A batch adds limits of its own, for
uploads and for an archive as a whole: how many files, how many bytes once uncompressed,
how deep the folders go; archives inside archives are not opened. Nothing is extracted
to disk and nothing is unpickled. A file that breaks a rule is listed as skipped with its
reason; the rest of the batch goes on.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable, Sequence

from ..images.folders import BenchImage, LoadedFolder
from ..images.gallery import bundled_images
from ..images import ImageLimits, load_image, to_tensor
from ..models import ImageClassifier

_ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"}
_JUNK_PREFIXES = ("__MACOSX/",)  # resource forks macOS adds to every zip: not the user's images


@dataclass(frozen=True)
class BatchLimits:
    """Limits on one audit's inputs, on top of the per-file :class:`ImageLimits`."""

    max_files: int = 500  # images per audit: ~2 h of attacks on a 2-core CPU, more belongs on the CLI
    max_total_bytes: int = 200 * 2**20  # all files together, uncompressed: bounds memory per session
    max_archive_bytes: int = 100 * 2**20  # the zip as uploaded (the server's upload limit is 100 MB)
    max_members: int = 20_000  # entries in a zip's directory; more is refused before anything is read
    max_depth: int = 4  # folders inside an archive ("a/b/c/d/x.png" is depth 4)
    image: ImageLimits = field(default_factory=ImageLimits)  # per file, the single-upload limits


@dataclass
class Collected:
    """Raw files accepted so far (name -> bytes, in order) and the ones refused, with a reason each."""

    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0

    def add(self, name: str, data: bytes, limits: BatchLimits) -> None:
        """Accept ``data`` under a unique name unless it breaks a per-file or batch limit."""
        if len(data) > limits.image.max_bytes:
            self.skipped.append((name, f"larger than the {limits.image.max_bytes / 2**20:.0f} MiB per-file limit."))
        elif len(self.files) >= limits.max_files:
            self.skipped.append((name, f"over the {limits.max_files}-file limit of one audit."))
        elif self.total_bytes + len(data) > limits.max_total_bytes:
            self.skipped.append((name, f"the files together exceed {limits.max_total_bytes / 2**20:.0f} MiB."))
        else:
            unique, copy = name, 1
            while unique in self.files:
                copy += 1
                stem, dot, suffix = name.rpartition(".")
                unique = f"{stem} ({copy}).{suffix}" if dot else f"{name} ({copy})"
            self.files[unique] = data
            self.total_bytes += len(data)


def clean_name(name: str) -> str:
    """An archive member or upload name as a harmless relative label ("../../x.png" -> "x.png")."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    return "/".join(parts) or "unnamed"


def collect_gallery(names: Sequence[str] | None = None, limits: BatchLimits = BatchLimits()) -> Collected:
    """Bundled photos by stem (all when ``names`` is None), named by file name as ``sparseviz audit assets`` does."""
    gallery = bundled_images()
    collected = Collected()
    for stem in (list(gallery) if names is None else names):
        if stem not in gallery:
            collected.skipped.append((stem, "no such bundled photo."))
            continue
        collected.add(gallery[stem].name, gallery[stem].read_bytes(), limits)
    return collected


def collect_uploads(uploads: Iterable[tuple[str, bytes]], limits: BatchLimits = BatchLimits(),
                    into: Collected | None = None) -> Collected:
    """Several uploaded files; a zip among them is opened by :func:`collect_zip` (one level only)."""
    collected = into if into is not None else Collected()
    for raw_name, data in uploads:
        name = clean_name(raw_name)
        if data[:4] == b"PK\x03\x04" or name.lower().endswith(".zip"):
            collect_zip(name, data, limits, into=collected)
        else:
            collected.add(name, data, limits)
    return collected


def collect_zip(name: str, data: bytes, limits: BatchLimits = BatchLimits(), into: Collected | None = None) -> Collected:
    """The image files of a zip archive, read in memory with every member's size bounded while reading."""
    collected = into if into is not None else Collected()
    if len(data) > limits.max_archive_bytes:
        collected.skipped.append((name, f"the archive is larger than {limits.max_archive_bytes / 2**20:.0f} MiB."))
        return collected
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        collected.skipped.append((name, f"not a readable zip archive ({_reason(error)})."))
        return collected
    if len(members) > limits.max_members:
        collected.skipped.append((name, f"the archive lists {len(members):,} entries (limit {limits.max_members:,})."))
        return collected
    with archive:
        for info in members:
            member = f"{name}/{clean_name(info.filename)}"
            inner = clean_name(info.filename)
            if info.is_dir() or inner.startswith(_JUNK_PREFIXES) or PurePosixPath(inner).name.startswith("."):
                continue  # folders, macOS resource forks and hidden files are not photos
            reason = _member_refusal(info, inner, limits)
            if reason is None and len(collected.files) >= limits.max_files:
                reason = f"over the {limits.max_files}-file limit of one audit."
            if reason is None and collected.total_bytes + info.file_size > limits.max_total_bytes:
                reason = f"the files together exceed {limits.max_total_bytes / 2**20:.0f} MiB uncompressed."
            if reason is not None:
                collected.skipped.append((member, reason))
                continue
            try:
                with archive.open(info) as handle:
                    content = handle.read(limits.image.max_bytes + 1)  # never trust the declared size
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError,
                    ValueError) as error:
                collected.skipped.append((member, f"cannot be extracted ({_reason(error)})."))
                continue
            collected.add(member, content, limits)
    return collected


def _member_refusal(info: zipfile.ZipInfo, inner: str, limits: BatchLimits) -> str | None:
    if info.flag_bits & 0x1:
        return "encrypted (password-protected archives are not supported)."
    if PurePosixPath(inner).suffix.lower() in _ARCHIVE_SUFFIXES:
        return "an archive inside the archive (not opened)."
    if inner.count("/") > limits.max_depth:
        return f"nested {inner.count('/')} folders deep (limit {limits.max_depth})."
    if info.file_size > limits.image.max_bytes:
        return f"larger than the {limits.image.max_bytes / 2**20:.0f} MiB per-file limit once uncompressed."
    return None


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())[:120]
    return text or type(error).__name__


def decode(collected: Collected, model: ImageClassifier, limits: BatchLimits = BatchLimits()) -> LoadedFolder:
    """Decode and preprocess every accepted file for ``model``; an unusable one joins the skipped list.

    Labels are the model's own clean predictions (``folder_label`` None), as for a flat folder.
    """
    images: list[BenchImage] = []
    skipped = list(collected.skipped)
    for name, data in collected.files.items():
        try:
            loaded = load_image(data, limits=limits.image)
            tensor = model.preprocess(to_tensor(loaded.image))
        except ValueError as error:  # ImageLoadError: one line saying what is wrong
            skipped.append((name, _reason(error)))
            continue
        except Exception as error:  # noqa: BLE001 - a decoder bug skips the file, never the batch
            skipped.append((name, f"could not read this file as an image ({type(error).__name__})."))
            continue
        images.append(BenchImage(name, tensor, None))
    return LoadedFolder(images, skipped, "flat")


__all__ = ["BatchLimits", "Collected", "clean_name", "collect_gallery", "collect_uploads", "collect_zip", "decode"]
