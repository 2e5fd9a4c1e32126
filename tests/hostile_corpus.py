"""A corpus of hostile and odd image inputs, built at test time, each with its expected outcome.

``build_corpus(tmp_dir)`` writes every file (nothing is downloaded, nothing is
checked in) and returns one :class:`CorpusCase` per input. A case either loads,
with its upright size, probe pixels and an expected note, or is refused, with a
substring of the one-line message. ``CorpusCase.check`` / ``check_refusal`` hold
the assertions so the CLI, library and app tests all judge the same way.

Most images share one layout, a 32x24 picture in four quadrants, so that
orientation mistakes show up as wrong colours at the probe points.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
W, H = 32, 24  # the quadrant picture: red | green over blue | white
QUADRANT_PROBES = ((8, 6, RED), (24, 6, GREEN), (8, 18, BLUE), (24, 18, WHITE))

Probe = tuple[int, int, tuple[int, int, int]]  # (x, y, expected RGB)


@dataclass(frozen=True)
class CorpusCase:
    name: str  # short id (pytest id)
    path: Path
    description: str
    refuse: str | None = None  # expected substring of the refusal (case-insensitive); None: must load
    size: tuple[int, int] | None = None  # (width, height) once loaded, upright
    probes: tuple[Probe, ...] = ()
    tolerance: int = 3  # per-channel slack: lossy formats get more
    note: str | None = None  # substring one of the notes must contain
    format: str | None = None  # the sniffed format, whatever the extension says

    @property
    def loads(self) -> bool:
        return self.refuse is None

    def check(self, loaded: object) -> None:
        """Assert a ``LoadedImage`` is what this case expects."""
        image = loaded.image  # type: ignore[attr-defined]
        assert image.mode == "RGB", f"{self.name}: mode {image.mode}"
        if self.size is not None:
            assert image.size == self.size, f"{self.name}: size {image.size}, expected {self.size}"
        check_pixels(self.name, np.asarray(image), self.probes, self.tolerance)
        notes = " | ".join(loaded.notes)  # type: ignore[attr-defined]
        if self.note is not None:
            assert self.note.lower() in notes.lower(), f"{self.name}: notes {notes!r} lack {self.note!r}"
        if self.format is not None:
            assert loaded.format == self.format, f"{self.name}: format {loaded.format}"  # type: ignore[attr-defined]

    def check_refusal(self, message: str) -> None:
        """Assert a refusal message is one line and names this case's problem."""
        assert self.refuse is not None, f"{self.name} should have loaded but was refused: {message}"
        assert "\n" not in message.strip(), f"{self.name}: message is not one line: {message!r}"
        assert self.refuse.lower() in message.lower(), f"{self.name}: {message!r} lacks {self.refuse!r}"


def check_pixels(name: str, array: np.ndarray, probes: tuple[Probe, ...], tolerance: int) -> None:
    for x, y, expected in probes:
        got = tuple(int(v) for v in array[y, x])
        assert max(abs(g - e) for g, e in zip(got, expected)) <= tolerance, (
            f"{name}: pixel ({x}, {y}) is {got}, expected {expected} (+-{tolerance})"
        )


# --- builders ---------------------------------------------------------------------------


def quadrants(width: int = W, height: int = H) -> Image.Image:
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = RED
    array[: height // 2, width // 2 :] = GREEN
    array[height // 2 :, : width // 2] = BLUE
    array[height // 2 :, width // 2 :] = WHITE
    return Image.fromarray(array)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG from an already-compressed IDAT stream: any declared size, cheaply."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zero_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit all-black PNG of any size; 20000x20000 compresses to ~50 KB."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    rows_per_chunk = max(1, 2**20 // len(row))
    parts = []
    for start in range(0, height, rows_per_chunk):
        parts.append(compressor.compress(row * min(rows_per_chunk, height - start)))
    parts.append(compressor.flush())
    return raw_png(width, height, 1, 0, b"".join(parts))


def png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    return raw_png(width, height, 16, 2, zlib.compress(rows))


def minimal_tiff(width: int, height: int, strip: bytes) -> bytes:
    """An 8-bit grayscale little-endian TIFF with one strip, declaring any size."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(strip)),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_offset if tag == 273 else value
        body += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", ifd_offset) + body + b"\x00\x00\x00\x00" + strip


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF declaring a huge screen and frame, with a few bytes of LZW data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite a JPEG's SOF0 frame size (the scan data stays that of a tiny image)."""
    index = data.index(b"\xff\xc0")
    return data[: index + 5] + struct.pack(">HH", height, width) + data[index + 9 :]


def _frames(colors: list[tuple[int, int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", (W, H), color) for color in colors]


# --- the corpus -------------------------------------------------------------------------


def build_corpus(tmp_dir: str | Path) -> list[CorpusCase]:
    """Write every corpus file under ``tmp_dir`` and return the cases (about 1 s)."""
    root = Path(tmp_dir)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[CorpusCase] = []

    def add(filename: str, content: bytes | Callable[[Path], None], description: str, **expect: object) -> None:
        path = root / filename
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        cases.append(CorpusCase(name=filename, path=path, description=description, **expect))  # type: ignore[arg-type]

    base = quadrants()
    png = encode(base, "PNG")
    jpeg = encode(base, "JPEG", quality=95)
    exact = dict(size=(W, H), probes=QUADRANT_PROBES)
    lossy = dict(size=(W, H), probes=QUADRANT_PROBES, tolerance=40)

    # --- empty, junk, not-an-image -------------------------------------------------------
    add("empty.png", b"", "zero-byte file", refuse="empty")
    add("random.png", np.random.default_rng(0).bytes(4096), "random bytes named .png", refuse="unsupported format")
    add("random.jpg", np.random.default_rng(1).bytes(300), "random bytes named .jpg", refuse="unrecognized")
    add("notes.png", b"shopping list\n- eggs\n- milk\n" * 20, "a text file renamed .png", refuse="plain text")
    add("page.jpg", b"<!DOCTYPE html><html><body>hi</body></html>", "an HTML page renamed .jpg", refuse="HTML")
    add(
        "drawing.png",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        "an SVG renamed .png", refuse="SVG",
    )
    add("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "an SVG", refuse="SVG")
    add("phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "an iPhone HEIC photo", refuse="HEIC")
    add("photo.avif", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64, "an AVIF photo", refuse="AVIF")
    add("scan.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "a PDF renamed .png", refuse="PDF")
    add("icon.ico", encode(base, "ICO"), "an ICO (Pillow reads it, sparseviz does not)", refuse="ICO")
    add("archive.png", b"PK\x03\x04" + b"\x00" * 100, "a ZIP renamed .png", refuse="ZIP")
    add("directory.png", lambda path: path.mkdir(), "a directory named like an image", refuse="not a regular file")
    add("huge_file.png", lambda path: _sparse_file(path, 21 * 2**20), "a 21 MiB file (over the byte limit)", refuse="MiB limit")

    # --- truncated and damaged ----------------------------------------------------------
    add("truncated.png", png[: len(png) // 2], "PNG cut in half", refuse="truncated")
    add("no_iend.png", png[:-12], "PNG missing only its IEND chunk", refuse="truncated")
    add("bad_crc.png", _flip_idat_byte(png), "PNG with a corrupted IDAT byte", refuse="checksum")
    add("truncated.jpg", jpeg[: len(jpeg) // 2], "JPEG cut in half", refuse="truncated")
    add("no_eoi.jpg", jpeg[:-2], "JPEG missing only its end-of-image marker", refuse="truncated")
    add("header_only.jpg", jpeg[: jpeg.index(b"\xff\xda")], "JPEG headers without any scan", refuse="truncated")
    gif = encode(base, "GIF")
    add("truncated.gif", gif[: len(gif) // 2], "GIF cut in half", refuse="truncated")
    webp = encode(base, "WEBP", lossless=True)
    add("truncated.webp", webp[: len(webp) // 2], "WebP cut in half", refuse="truncated")
    bmp = encode(base, "BMP")
    add("truncated.bmp", bmp[: len(bmp) // 2], "BMP cut in half", refuse="truncated")
    tiff = encode(base, "TIFF")
    add("truncated.tiff", tiff[: len(tiff) // 2], "TIFF cut in half", refuse="truncated")
    add("bad_depth.png", raw_png(W, H, 3, 0, zlib.compress(b"\x00" * 100)), "PNG with an invalid bit depth", refuse="cannot be decoded")

    # --- sizes ---------------------------------------------------------------------------
    add("1x1.png", encode(Image.new("RGB", (1, 1), RED), "PNG"), "a 1x1 image", refuse="1x1")
    add("2x3.png", encode(Image.new("RGB", (2, 3), RED), "PNG"), "a 2x3 image", refuse="2x3")
    add("strip.png", encode(Image.new("L", (400, 8)), "PNG"), "a 400x8 strip", refuse="elongated")
    add("20000x20000.png", zero_png(20000, 20000), "a real, complete 20000x20000 PNG (all black)", refuse="20000x20000")
    add("bomb.png", raw_png(100000, 100000, 8, 2, zlib.compress(b"\x00" * 1000)),
        "PNG bomb: 74 bytes declaring 100000x100000", refuse="megapixels")
    add("bomb.gif", gif_header_only(65535, 65535), "GIF declaring a 65535x65535 frame", refuse="megapixels")
    add("bomb.jpg", jpeg_with_size(jpeg, 60000, 60000), "JPEG whose frame header says 60000x60000", refuse="megapixels")
    add("bomb.tiff", minimal_tiff(100000, 100000, b"\x00" * 16), "TIFF declaring 100000x100000 over 16 bytes", refuse="megapixels")
    add("bomb.bmp", bmp[:18] + struct.pack("<ii", 50000, 50000) + bmp[26:], "BMP header saying 50000x50000", refuse="megapixels")
    add("bomb.webp", _webp_canvas(encode(_frames([RED, GREEN])[0], "WEBP", save_all=True,
        append_images=_frames([GREEN]), lossless=True), 16384, 16384),
        "animated WebP with a 16384x16384 canvas (libwebp would allocate 1 GiB on open)", refuse="megapixels")
    add("many_scans.jpg", _jpeg_with_repeated_scan(encode(base, "JPEG", progressive=True), 150),
        "progressive JPEG with 150 scans (a decoding-time bomb)", refuse="scans")
    index = png.index(b"IDAT") - 4
    add("chunk_flood.png", png[:index] + png_chunk(b"tEXt", b"") * 100_001 + png[index:],
        "PNG with 100,001 empty text chunks (a parsing-time bomb)", refuse="chunks")
    add("block_flood.gif", gif_header_only(16, 16)[:-5] + b"\x01\x00" * 1_000_001 + b"\x00\x3b",
        "GIF frame split into a million 1-byte blocks", refuse="blocks")
    add("8x8.png", encode(Image.new("RGB", (8, 8), GREEN), "PNG"), "the smallest accepted size", size=(8, 8), probes=((4, 4, GREEN),))

    # --- float and integer TIFFs --------------------------------------------------------
    floats = np.full((H, W), 0.5, np.float32)
    floats[0, 0] = np.nan
    add("nan.tiff", encode(Image.fromarray(floats), "TIFF"), "float TIFF with a NaN", refuse="NaN")
    floats[0, 0] = np.inf
    add("inf.tiff", encode(Image.fromarray(floats), "TIFF"), "float TIFF with +inf", refuse="infinite")
    unit = np.zeros((H, W), np.float32)
    unit[:, W // 2 :] = 1.0
    unit[H // 2 :, :] = 0.25
    add(
        "float_unit.tiff", encode(Image.fromarray(unit), "TIFF"), "float TIFF in [0, 1]",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, WHITE), (8, 18, (64, 64, 64))), note="[0, 1]",
    )
    add(
        "float_wide.tiff", encode(Image.fromarray(unit * 20 - 5), "TIFF"), "float TIFF in [-5, 15]: stretched",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, WHITE), (8, 18, (64, 64, 64))), note="stretched",
    )
    add(
        "float_levels.tiff", encode(Image.fromarray(unit * 200), "TIFF"), "float TIFF in [0, 200]: 8-bit levels",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, (200,) * 3), (8, 18, (50,) * 3)), note="8-bit levels",
    )
    words = np.zeros((H, W), np.uint16)
    words[:, W // 2 :] = 65535
    words[H // 2 :, : W // 2] = 100 * 257
    add(
        "gray16.tiff", encode(Image.fromarray(words), "TIFF"), "16-bit grayscale TIFF (I;16)",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, WHITE), (8, 18, (100,) * 3)), note="16-bit",
    )
    ints = words.astype(np.int32) * 4 - 1000
    add(
        "int32.tiff", encode(Image.fromarray(ints), "TIFF"), "32-bit integer TIFF beyond 16 bits: stretched",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, WHITE)), note="stretched",
    )

    # --- modes ---------------------------------------------------------------------------
    add("rgb.png", png, "plain RGB PNG", format="PNG", **exact)
    add("png_named.jpg", png, "a PNG with a .jpg extension", format="PNG", **exact)
    add("jpeg_named.png", jpeg, "a JPEG with a .png extension", format="JPEG", **lossy)
    add("no_extension", png, "a PNG without an extension", format="PNG", **exact)
    add(
        "gray16.png", encode(Image.fromarray(words), "PNG"), "16-bit grayscale PNG: scaled, not clipped",
        size=(W, H), probes=((8, 6, BLACK), (24, 6, WHITE), (8, 18, (100,) * 3)), note="16-bit",
    )
    add(
        "dark16.png", encode(Image.fromarray(np.full((H, W), 200, np.uint16)), "PNG"),
        "16-bit PNG whose samples are all below 256: stays dark", size=(W, H), probes=((5, 5, (1, 1, 1)),), tolerance=0,
    )
    rgb16 = np.zeros((H, W, 3), np.uint16)
    rgb16[: H // 2, : W // 2] = (65535, 0, 0)
    rgb16[: H // 2, W // 2 :] = (0, 32896, 0)
    rgb16[H // 2 :, :] = (257 * 10, 257 * 20, 257 * 30)
    add(
        "rgb16.png", png16_rgb(rgb16), "48-bit RGB PNG", size=(W, H), note="16-bit",
        probes=((8, 6, RED), (24, 6, (0, 128, 0)), (8, 18, (10, 20, 30))), tolerance=1,
    )
    gray = np.asarray(base.convert("L"))
    add("gray.png", encode(base.convert("L"), "PNG"), "8-bit grayscale PNG", size=(W, H),
        probes=tuple((x, y, (int(gray[y, x]),) * 3) for x, y, _ in QUADRANT_PROBES))
    add("bilevel.png", encode(base.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
        "1-bit PNG", size=(W, H), probes=((8, 6, BLACK), (24, 18, WHITE)))
    add("palette.png", encode(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG"), "palette PNG", **exact)
    add("palette_trns.png", encode(_palette_with_transparency(), "PNG"), "palette PNG, one colour transparent",
        size=(W, H), probes=((8, 6, WHITE), (24, 6, GREEN), (8, 18, BLUE)), note="onto white")
    add("rgba.png", encode(_with_alpha(base), "PNG"), "RGBA PNG, left half transparent",
        size=(W, H), probes=((8, 6, WHITE), (24, 6, GREEN), (8, 18, WHITE), (24, 18, WHITE)), note="onto white")
    add("rgba_opaque.png", encode(base.convert("RGBA"), "PNG"), "RGBA PNG, fully opaque", **exact)
    add("la.png", encode(_with_alpha(base.convert("L")).convert("LA"), "PNG"), "gray+alpha PNG",
        size=(W, H), probes=((8, 6, WHITE), (24, 6, (int(gray[6, 24]),) * 3)), note="onto white")
    add("cmyk.jpg", encode(_cmyk_quadrants(), "JPEG", quality=95), "CMYK JPEG", note="CMYK", format="JPEG", **lossy)
    add("gray.jpg", encode(base.convert("L"), "JPEG", quality=95), "grayscale JPEG", size=(W, H),
        probes=tuple((x, y, (int(gray[y, x]),) * 3) for x, y, _ in QUADRANT_PROBES), tolerance=30)
    add("progressive.jpg", encode(base, "JPEG", quality=95, progressive=True), "progressive JPEG", **lossy)
    add("trailing.jpg", jpeg + b"\x00camera trailer" * 10, "JPEG with bytes after its end marker", **lossy)
    add("broken_exif.jpg", _jpeg_with_app1(jpeg, b"Exif\x00\x00MM\x00*\xff\xff\xff\xff"),
        "JPEG with a broken EXIF block", note="EXIF", **lossy)
    add("webp_lossless.webp", webp, "lossless WebP", format="WEBP", **exact)
    add("bmp24.bmp", bmp, "24-bit BMP", format="BMP", **exact)
    add("tiff_lzw.tif", encode(base, "TIFF", compression="tiff_lzw"), "LZW-compressed TIFF", format="TIFF", **exact)
    add("single.gif", gif, "single-frame GIF", format="GIF", **exact)
    add("ztxt_bomb.png", _png_with_ztxt_bomb(png), "PNG with a zTXt chunk inflating to 16 MiB", refuse="too large")

    # --- orientation ---------------------------------------------------------------------
    # Stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to view"):
    # upright it is 24x32 with blue | red over white | green.
    upright_6 = ((6, 8, BLUE), (18, 8, RED), (6, 24, WHITE), (18, 24, GREEN))
    add("exif_rotate90.jpg", encode(base, "JPEG", quality=95, exif=_orientation(6)), "JPEG with EXIF orientation 6",
        size=(H, W), probes=upright_6, tolerance=40, note="orientation 6")
    upright_3 = ((8, 6, WHITE), (24, 6, BLUE), (8, 18, GREEN), (24, 18, RED))
    add("exif_rotate180.png", encode(base, "PNG", exif=_orientation(3)), "PNG with EXIF orientation 3",
        size=(W, H), probes=upright_3, note="orientation 3")

    # --- several frames ------------------------------------------------------------------
    frames = _frames([RED, GREEN, BLUE])
    first = dict(size=(W, H), probes=((4, 4, RED), (28, 20, RED)), note="first frame")
    add("animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "animated GIF, 3 frames", **first)
    add("animated.webp", encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
        "animated WebP, 3 frames", **first)
    add("animated.png", encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), "APNG, 3 frames", **first)
    add("multipage.tiff", encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]), "3-page TIFF", **first)
    return cases


# --- small helpers for the corpus -------------------------------------------------------


def _webp_canvas(webp: bytes, width: int, height: int) -> bytes:
    assert webp[12:16] == b"VP8X"
    return webp[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + webp[30:]


def _jpeg_with_repeated_scan(jpeg: bytes, count: int) -> bytes:
    """Repeat the first scan (its header and its entropy-coded data) ``count`` times."""
    start = jpeg.index(b"\xff\xda")
    data_start = start + 2 + struct.unpack_from(">H", jpeg, start + 2)[0]
    end = data_start
    while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
        end += 1
    return jpeg[:start] + jpeg[start:end] * count + jpeg[start:]


def _sparse_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(size)


def _flip_idat_byte(png: bytes) -> bytes:
    index = png.index(b"IDAT") + 10
    return png[:index] + bytes([png[index] ^ 0xFF]) + png[index + 1 :]


def _with_alpha(image: Image.Image) -> Image.Image:
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, image.width // 2, image.height))
    result = image.convert("RGBA" if image.mode != "L" else "LA")
    result.putalpha(alpha)
    return result


def _palette_with_transparency() -> Image.Image:
    image = quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image.info["transparency"] = image.getpixel((8, 6))  # the red quadrant's index
    return image


def _cmyk_quadrants() -> Image.Image:
    cmyk = {RED: (0, 255, 255, 0), GREEN: (255, 0, 255, 0), BLUE: (255, 255, 0, 0), WHITE: (0, 0, 0, 0)}
    image = Image.new("CMYK", (W, H))
    for (x0, y0), color in zip(((0, 0), (W // 2, 0), (0, H // 2), (W // 2, H // 2)), (RED, GREEN, BLUE, WHITE)):
        image.paste(cmyk[color], (x0, y0, x0 + W // 2, y0 + H // 2))
    return image


def _orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _png_with_ztxt_bomb(png: bytes) -> bytes:
    body = b"Comment\x00\x00" + zlib.compress(b"\x00" * 16 * 2**20, 9)
    index = png.index(b"IDAT") - 4
    return png[:index] + png_chunk(b"zTXt", body) + png[index:]
