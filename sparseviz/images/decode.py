"""Safe image loading: decode, orient, bound size, convert to RGB, to float [0, 1].

Every input is treated as hostile until proven otherwise, in this order:

1. bytes: bounded before they are read (a path's size is checked with ``stat``);
2. format: sniffed from the content, never from the extension; only PNG, JPEG,
   WebP, BMP, GIF and TIFF reach Pillow, and other known types are named;
3. structure: a small walk over the container (PNG chunks + CRCs, JPEG markers,
   GIF blocks, RIFF size, BMP rows, TIFF strips) refuses truncated files without
   relying on Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``;
4. size: width x height from the header is bounded before any pixel is decoded;
5. pixels: decoded, turned upright from EXIF, converted to 8-bit RGB with every
   lossy step (alpha, 16 bits, floats, CMYK, frames) said in ``notes``.
   Transparency is composited onto white; 16-bit samples are scaled, not clipped;
   float images must be finite and are read as [0, 1], else [0, 255], else
   stretched from their min..max.

Every failure is an :class:`ImageLoadError` whose message is one line.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_TEXT = "PNG, JPEG, WebP, BMP, GIF or TIFF"


class ImageLoadError(ValueError):
    """The input cannot be used as an image; the message names the problem in one line."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024  # 20 MiB: any real photo fits, a flood does not
    max_pixels: int = 40_000_000  # 40 MP, checked from the header before decoding
    min_side: int = 8  # smaller than this is not a photo a classifier can read
    max_aspect: float = 20.0  # longer/shorter side; resizing the short side of a 8x5M strip would explode


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, upright
    format: str
    notes: list[str] = field(default_factory=list)


# --- 1. bytes -------------------------------------------------------------------------


def _read_bytes(source: str | Path | bytes | bytearray | memoryview | BinaryIO, limits: ImageLimits) -> bytes:
    too_big = f"the file is larger than the {limits.max_bytes / 2**20:.0f} MiB limit."
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if not path.is_file():  # also refuses directories, FIFOs and /dev/zero
                raise ImageLoadError("image file not found." if not path.exists() else "not a regular file.")
            if path.stat().st_size > limits.max_bytes:
                raise ImageLoadError(too_big)
            with path.open("rb") as handle:
                data = handle.read(limits.max_bytes + 1)
        except OSError as error:
            raise ImageLoadError(f"cannot read the file ({error.strerror or type(error).__name__}).") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read(limits.max_bytes + 1)
        except Exception as error:  # noqa: BLE001 - any stream failure is "cannot read"
            raise ImageLoadError(f"cannot read the upload ({type(error).__name__}).") from None
        if isinstance(data, str):
            raise ImageLoadError("expected binary data, got text (open the file in 'rb' mode).")
        data = bytes(data)
    else:
        raise ImageLoadError(f"expected a path, bytes or a binary file, got {type(source).__name__}.")
    if len(data) > limits.max_bytes:
        raise ImageLoadError(too_big)
    if not data:
        raise ImageLoadError("the file is empty (0 bytes).")
    return data


def _source_name(source: object) -> str | None:
    if isinstance(source, (str, Path)):
        return Path(source).name
    name = getattr(source, "name", None)  # open files, Streamlit's UploadedFile
    return Path(name).name if isinstance(name, str) and name else None


# --- 2. format --------------------------------------------------------------------------

# Known types we refuse, by leading bytes: named so the user knows what they sent.
_UNSUPPORTED_MAGIC: list[tuple[bytes, str]] = [
    (b"%PDF", "PDF document"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "Windows icon (ICO)"),
    (b"\x00\x00\x02\x00", "Windows cursor (CUR)"),
    (b"icns", "macOS icon (ICNS)"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"qoif", "QOI"),
    (b"DDS ", "DirectDraw surface (DDS)"),
    (b"gimp xcf", "GIMP XCF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM video"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\x80\x02", "Python pickle"),
    (b"\x80\x04", "Python pickle"),
]
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def sniff_format(data: bytes) -> str:
    """The Pillow format name for ``data``, judged from its bytes alone.

    Raises :class:`ImageLoadError` naming the detected type when it is not one
    of :data:`SUPPORTED_FORMATS`: the extension a file came with proves nothing.
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    raise ImageLoadError(f"unsupported format: {_describe_unsupported(data)}; use {_SUPPORTED_TEXT}.")


def _describe_unsupported(data: bytes) -> str:
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC/HEIF (iPhone photo format; export it as JPEG)"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MP4/QuickTime media"
    if head[:4] == b"RIFF":
        return f"RIFF {head[8:12].decode('latin-1').strip() or 'container'} (not WebP)"
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return name
    if re.match(rb"P[1-7]\s", head):
        return "Netpbm (PBM/PGM/PPM)"
    text = _as_text(data[:4096])
    if text is not None:
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        if "<svg" in lowered:
            return "SVG (vector graphics; export it as PNG)"
        if lowered.startswith(("<!doctype html", "<html")):
            return "HTML page, not an image"
        if lowered.startswith("<?xml"):
            return "XML document, not an image"
        return "plain text, not an image"
    return f"unrecognized data (starts with {head[:8].hex(' ')})"


def _as_text(chunk: bytes) -> str | None:
    if b"\x00" in chunk:
        return None
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(chunk) - 4:  # a cut multibyte character at the end is fine
            return None
        text = chunk[: error.start].decode("utf-8")
    text = text.lstrip("\ufeff")  # a byte-order mark is not content
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return text if text and printable / len(text) > 0.95 else None


# --- 3. structure -----------------------------------------------------------------------

_TRUNCATED = "the file is truncated or damaged"


_MAX_PNG_CHUNKS = 100_000  # 20 MB in libpng's 8 KB IDAT chunks is 2,500; millions of tiny chunks is a CPU bomb
_MAX_GIF_BLOCKS = 1_000_000  # 20 MB in full 255-byte sub-blocks is 80,000


def _check_png(data: bytes) -> tuple[int, int]:
    """Walk every chunk to IEND, checking CRCs; return the IHDR size."""
    pos, size, end, view = 8, None, len(data), memoryview(data)
    for _ in range(_MAX_PNG_CHUNKS):
        if pos + 8 > end:
            raise ImageLoadError(f"{_TRUNCATED} (PNG ends before its IEND chunk).")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 2**31 - 1 or pos + 12 + length > end:
            raise ImageLoadError(f"{_TRUNCATED} (PNG chunk {kind!r} runs past the end of the file).")
        body = view[pos + 8 : pos + 8 + length]  # a view: checking a 20 MB file copies nothing
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise ImageLoadError(f"{_TRUNCATED} (bad checksum in PNG chunk {kind.decode('latin-1')!r}).")
        if size is None:
            if kind != b"IHDR" or length < 8:
                raise ImageLoadError(f"{_TRUNCATED} (PNG does not start with an IHDR header).")
            size = struct.unpack_from(">II", data, pos + 8)
        if kind == b"IEND":
            return size
        pos += 12 + length
    raise ImageLoadError(f"the PNG has more than {_MAX_PNG_CHUNKS:,} chunks; refused as a decoding-time bomb.")


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # in entropy-coded data, FF00 and RSTn are not markers
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


_MAX_JPEG_SCANS = 100  # real progressive JPEGs have about 10; thousands of scans make decoding crawl


def _check_jpeg(data: bytes) -> tuple[int, int]:
    """Walk the markers to EOI (scan data included); return the SOF size."""
    pos, end, size, scans = 2, len(data), None, 0
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg also skips stray bytes between markers
        while 0 <= pos < end - 1 and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos < 0 or pos + 2 > end:
            raise ImageLoadError(f"{_TRUNCATED} (JPEG ends before its end-of-image marker).")
        marker = data[pos + 1]
        pos += 2
        if marker == 0xD9:
            if size is None or not scans:
                raise ImageLoadError(f"{_TRUNCATED} (JPEG has no image data).")
            return size
        if marker == 0x01 or 0xD0 <= marker <= 0xD7 or marker == 0x00:
            continue
        if pos + 2 > end:
            raise ImageLoadError(f"{_TRUNCATED} (JPEG ends inside a marker).")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > end:
            raise ImageLoadError(f"{_TRUNCATED} (JPEG segment runs past the end of the file).")
        if marker in _JPEG_SOF and length >= 7:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            size = (width, height)
        pos += length
        if marker == 0xDA:
            scans += 1
            if scans > _MAX_JPEG_SCANS:
                raise ImageLoadError(f"the JPEG has more than {_MAX_JPEG_SCANS} scans; refused as a decoding-time bomb.")
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                raise ImageLoadError(f"{_TRUNCATED} (JPEG image data is cut off).")
            pos = found.start()


def _skip_gif_blocks(data: bytes, pos: int, budget: list[int]) -> int:
    """Skip a chain of sub-blocks; ``budget`` counts blocks across the whole walk."""
    while True:
        if pos >= len(data):
            raise ImageLoadError(f"{_TRUNCATED} (GIF data is cut off).")
        budget[0] -= 1
        if budget[0] < 0:
            raise ImageLoadError(f"the GIF has more than {_MAX_GIF_BLOCKS:,} data blocks; refused as a decoding-time bomb.")
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos


def _check_gif(data: bytes) -> tuple[tuple[int, int], bool]:
    """Walk to the end of the first frame; return (size incl. that frame, more frames follow)."""
    if len(data) < 13:
        raise ImageLoadError(f"{_TRUNCATED} (GIF header is cut off).")
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    budget = [_MAX_GIF_BLOCKS]
    while True:
        if pos >= len(data):
            raise ImageLoadError(f"{_TRUNCATED} (GIF ends before its first frame).")
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_gif_blocks(data, pos + 2, budget)
        elif block == 0x2C:  # image descriptor, optional local palette, LZW size, sub-blocks
            if pos + 11 > len(data):
                raise ImageLoadError(f"{_TRUNCATED} (GIF frame header is cut off).")
            left, top, frame_w, frame_h, frame_flags = struct.unpack_from("<HHHHB", data, pos + 1)
            pos += 10 + (3 << ((frame_flags & 7) + 1) if frame_flags & 0x80 else 0) + 1
            pos = _skip_gif_blocks(data, pos, budget)
            size = (max(width, left + frame_w), max(height, top + frame_h))
            return size, _gif_has_more_frames(data, pos, budget)
        else:
            raise ImageLoadError(f"{_TRUNCATED} (unexpected GIF block 0x{block:02x}).")


def _gif_has_more_frames(data: bytes, pos: int, budget: list[int]) -> bool:
    try:
        while pos < len(data) and data[pos] == 0x21:
            pos = _skip_gif_blocks(data, pos + 2, budget)
    except ImageLoadError:
        return False
    return pos < len(data) and data[pos] == 0x2C


def _check_webp(data: bytes) -> tuple[int, int]:
    """Check the RIFF length and read the canvas size.

    The size must come from here: libwebp's animation decoder allocates (and
    clears) the whole canvas as soon as Pillow opens the file.
    """
    if len(data) < 30:
        raise ImageLoadError(f"{_TRUNCATED} (WebP header is cut off).")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if len(data) < 8 + riff_size:
        raise ImageLoadError(f"{_TRUNCATED} (WebP declares {8 + riff_size} bytes, the file has {len(data)}).")
    kind = data[12:16]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        width, height = (value & 0x3FFF for value in struct.unpack_from("<HH", data, 26))
    else:
        raise ImageLoadError(f"{_TRUNCATED} (unknown WebP chunk {kind!r}).")
    return width, height


def _check_bmp(data: bytes, limits: ImageLimits) -> None:
    if len(data) < 30:
        raise ImageLoadError(f"{_TRUNCATED} (BMP header is cut off).")
    (offset,) = struct.unpack_from("<I", data, 10)
    header_size = struct.unpack_from("<I", data, 14)[0]
    if header_size == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression, image_size = 0, 0
    else:
        if len(data) < 14 + 24:
            raise ImageLoadError(f"{_TRUNCATED} (BMP header is cut off).")
        width, height, _, bits, compression, image_size = struct.unpack_from("<iiHHII", data, 18)
    _check_size(abs(width), abs(height), limits)  # a bomb says so, rather than "truncated"
    if compression in (0, 3, 6):  # uncompressed rows: the size is known exactly
        needed = offset + ((bits * abs(width) + 31) // 32) * 4 * abs(height)
    else:  # RLE: the header states the compressed size
        needed = offset + image_size
    if len(data) < needed:
        raise ImageLoadError(f"{_TRUNCATED} (BMP needs {needed} bytes, the file has {len(data)}).")


def _check_tiff_strips(image: Image.Image, data: bytes) -> None:
    tags = getattr(image, "tag_v2", {})
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        if any(int(o) + int(c) > len(data) for o, c in zip(offsets, counts)):
            raise ImageLoadError(f"{_TRUNCATED} (TIFF image data runs past the end of the file).")


# --- 4. size ----------------------------------------------------------------------------


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise ImageLoadError(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {limits.max_pixels / 1e6:.1f} megapixels."
        )
    if min(width, height) < limits.min_side:
        raise ImageLoadError(f"the image is {width}x{height} pixels; it needs at least {limits.min_side} pixels on each side.")
    if max(width, height) > limits.max_aspect * min(width, height):
        raise ImageLoadError(
            f"the image is {width}x{height} pixels: too elongated to classify (limit {limits.max_aspect:g}:1)."
        )


# --- 5. pixels --------------------------------------------------------------------------


def _orient(image: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block costs a note, not the picture."""
    try:
        orientation = image.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001
        notes.append("the EXIF block is damaged; orientation taken as stored.")
        return image
    if orientation in range(2, 9):
        notes.append(f"rotated upright from EXIF orientation {orientation}.")
    return upright if upright is not None else image


def _warnings_to_notes(caught: list[warnings.WarningMessage], notes: list[str]) -> None:
    for warning in caught:
        text = str(warning.message).strip().splitlines()[0][:120] if str(warning.message).strip() else ""
        note = (
            "the EXIF block is damaged; orientation taken as stored."
            if "exif" in text.lower()
            else f"decoder warning: {text or warning.category.__name__}"
        )
        if note not in notes:
            notes.append(note)


def _luminance_from_integers(array: np.ndarray, bits: int | None, notes: list[str]) -> np.ndarray:
    """Integer samples to 0..255.

    Known 16-bit data is scaled by 255/65535 (rounded), so a dark 16-bit image stays
    dark. 32-bit data of unknown depth is read by its range: 0..255 as 8-bit
    levels, 0..65535 as 16-bit, anything else stretched from its min..max.
    """
    low, high = int(array.min()), int(array.max())
    values = array.astype(np.int64)
    if bits is None and low >= 0 and high <= 255:
        return values.astype(np.uint8)
    if bits == 16 or (low >= 0 and high <= 65535):
        notes.append("16-bit image reduced to 8 bits.")
        return ((values * 255 + 32767) // 65535).astype(np.uint8)
    notes.append(f"integer values span {low}..{high}; stretched linearly to 0..255.")
    return _stretch(values.astype(np.float64), low, high)


def _luminance_from_floats(array: np.ndarray, notes: list[str]) -> np.ndarray:
    """Float samples: [0, 1] scaled by 255, [0, 255] taken as levels, anything else stretched."""
    if not np.isfinite(array).all():
        raise ImageLoadError("the image contains NaN or infinite values; a float image must be finite.")
    low, high = float(array.min()), float(array.max())
    values = array.astype(np.float64)
    if low >= 0.0 and high <= 1.0:
        notes.append("float image in [0, 1] scaled to 8 bits.")
        return np.round(values * 255.0).astype(np.uint8)
    if low >= 0.0 and high <= 255.0:
        notes.append("float image in [0, 255] taken as 8-bit levels.")
        return np.round(values).astype(np.uint8)
    notes.append(f"float values span [{low:.4g}, {high:.4g}]; stretched linearly to 0..255.")
    return _stretch(values, low, high)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high == low:
        return np.full(values.shape, 0 if high < 0 else 255, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _flatten_alpha(image: Image.Image, notes: list[str]) -> Image.Image:
    rgba = image.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()  # one channel: (min, max)
    if low < 255:  # type: ignore[operator]
        notes.append("transparent areas were composited onto white.")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("1", "L"):
        return image.convert("RGB")
    if mode == "P":
        if "transparency" in image.info:
            return _flatten_alpha(image, notes)
        return image.convert("RGB")
    if mode in ("PA", "LA", "La", "RGBA", "RGBa"):
        return _flatten_alpha(image, notes)
    if mode == "I" or mode.startswith("I;16"):
        bits = 16 if mode.startswith("I;16") else None
        return Image.fromarray(_luminance_from_integers(np.asarray(image), bits, notes), mode="L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_luminance_from_floats(np.asarray(image), notes), mode="L").convert("RGB")
    if mode == "CMYK":
        notes.append("converted from CMYK without colour management; colours are approximate.")
        return image.convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"unsupported pixel mode {mode!r} ({error}).") from None


# --- the entry point --------------------------------------------------------------------

_FRAME_NOTE = {"GIF": "animated GIF", "WEBP": "animated WebP", "PNG": "animated PNG", "TIFF": "multi-page TIFF"}


_WARNINGS_LOCK = threading.Lock()


def _open(fmt: str, data: bytes) -> Image.Image:
    """Parse the header with the one plugin the sniffer chose (no guessing among others).

    The plugin class is called directly rather than through ``Image.open`` so that
    Pillow's own size check does not print a warning before ours refuses the file.
    """
    Image.init()
    factory: Callable[..., Image.Image] = Image.OPEN[fmt][0]
    return factory(io.BytesIO(data), "")


def _decode(data: bytes, limits: ImageLimits) -> LoadedImage:
    fmt = sniff_format(data)
    header_size: tuple[int, int] | None = None
    animated = False
    if fmt == "PNG":
        header_size = _check_png(data)
    elif fmt == "JPEG":
        header_size = _check_jpeg(data)
    elif fmt == "GIF":
        header_size, animated = _check_gif(data)
    elif fmt == "WEBP":
        header_size = _check_webp(data)
    elif fmt == "BMP":
        _check_bmp(data, limits)
    if header_size is not None:
        _check_size(*header_size, limits)
    notes: list[str] = []
    # Pillow reports damaged metadata through `warnings`; they become notes so a CLI
    # user's stderr carries only real errors. `catch_warnings` swaps process-wide
    # state, so concurrent loads (app sessions) take turns rather than interleave.
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = _open(fmt, data)
            _check_size(*image.size, limits)
            if fmt == "TIFF":
                _check_tiff_strips(image, data)
            if fmt != "GIF":
                animated = bool(getattr(image, "is_animated", False))
                image.seek(0)
            if animated:
                notes.append(f"{_FRAME_NOTE[fmt]}: only the first frame is used.")
            image.load()
            if fmt == "PNG" and data[24] == 16 and not image.mode.startswith("I"):
                notes.append("16-bit image reduced to 8 bits.")  # Pillow keeps the high byte of each sample
            rgb = _to_rgb(_orient(image, notes), notes)
            rgb.load()
        except ImageLoadError:
            raise
        except Image.DecompressionBombError:
            raise ImageLoadError("the image is larger than Pillow's decompression-bomb limit.") from None
        except MemoryError:
            raise ImageLoadError("the image is too large to decode in memory.") from None
        except Exception as error:  # noqa: BLE001 - whatever Pillow raises, the user needs one line
            reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            raise ImageLoadError(f"the {fmt} data cannot be decoded ({reason}).") from None
    _warnings_to_notes(caught, notes)
    return LoadedImage(rgb, fmt, notes)


def load_image(
    source: str | Path | bytes | bytearray | memoryview | BinaryIO,
    *,
    limits: ImageLimits = ImageLimits(),
) -> LoadedImage:
    """Decode a path, bytes or binary file into an upright RGB image, or refuse in one line.

    Messages start with the file's name when it has one, so a batch of files or
    a CLI run says which input was bad.
    """
    name = _source_name(source)
    try:
        return _decode(_read_bytes(source, limits), limits)
    except ImageLoadError as error:
        if name:
            raise ImageLoadError(f"{name}: {error}") from None
        raise


def load_upload(name: str, data: bytes) -> LoadedImage | str:
    """Load an uploaded file: a ``LoadedImage``, or a one-line error message (never a traceback)."""
    try:
        return load_image(data)
    except ValueError as error:  # ImageLoadError is a ValueError with a one-line message
        message = " ".join(str(error).split()) or type(error).__name__
        return f"{name}: {message}"
    except Exception as error:  # noqa: BLE001 - a decoder bug must still not reach the user as a traceback
        return f"{name}: could not read this file as an image ({type(error).__name__})."

