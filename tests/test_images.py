"""Safe image loading, judged on the hostile corpus: the library, the CLI, and the limits."""

from __future__ import annotations

import io
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from hostile_corpus import CorpusCase, build_corpus, encode, quadrants
from sparseviz.cli import main
from sparseviz.images import ImageLimits, ImageLoadError, load_image, save_png, sniff_format, to_pil, to_tensor
from sparseviz.models import MODELS

with tempfile.TemporaryDirectory() as _collect_dir:  # ids only; the files are rebuilt per session below
    CASE_NAMES = [case.name for case in build_corpus(_collect_dir)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core box two intra-op threads spin against each other: 2.2 s vs 0.04 s per forward."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusCase]:
    return {case.name: case for case in build_corpus(tmp_path_factory.mktemp("corpus"))}


def _outcome(source: object) -> tuple[object, str | None]:
    try:
        return load_image(source), None  # type: ignore[arg-type]
    except ImageLoadError as error:
        return None, str(error)


def test_corpus_covers_the_brief(corpus: dict[str, CorpusCase]) -> None:
    cases = list(corpus.values())
    assert len(cases) >= 40
    assert sum(case.loads for case in cases) >= 15 and sum(not case.loads for case in cases) >= 15
    for required in ("empty.png", "truncated.png", "truncated.jpg", "random.png", "notes.png", "1x1.png", "2x3.png",
                     "20000x20000.png", "bomb.png", "gray16.png", "gray.png", "palette.png", "palette_trns.png",
                     "rgba.png", "cmyk.jpg", "la.png", "exif_rotate90.jpg", "animated.gif", "multipage.tiff",
                     "vector.svg", "phone.heic", "nan.tiff", "inf.tiff", "png_named.jpg"):
        assert required in corpus


@pytest.mark.parametrize("name", CASE_NAMES)
def test_load_image_on_corpus(corpus: dict[str, CorpusCase], name: str) -> None:
    case = corpus[name]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak onto a CLI user's stderr
        loaded, message = _outcome(case.path)
    assert time.perf_counter() - start < 2.0, f"{name} took too long"
    if case.loads:
        assert message is None, f"{name} refused: {message}"
        case.check(loaded)
    else:
        assert loaded is None, f"{name} loaded but should be refused ({case.description})"
        case.check_refusal(message)
        assert message.startswith(f"{case.path.name}: "), "a path's refusal names the file"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bytes_and_streams_behave_like_paths(corpus: dict[str, CorpusCase], name: str) -> None:
    case = corpus[name]
    if not case.path.is_file() or case.path.stat().st_size > 4 * 2**20:
        pytest.skip("not a small regular file")
    data = case.path.read_bytes()
    for source in (data, bytearray(data), io.BytesIO(data)):
        loaded, message = _outcome(source)
        if case.loads:
            case.check(loaded)
        else:
            case.check_refusal(message)
            assert not message.startswith(case.path.name), "bytes have no name to show"


def test_truncation_is_caught_without_pillows_global(corpus: dict[str, CorpusCase], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    truncated = [case for case in corpus.values() if case.refuse == "truncated"]
    assert len(truncated) >= 8
    for case in truncated:
        loaded, message = _outcome(case.path)
        assert loaded is None, f"{case.name} loaded with LOAD_TRUNCATED_IMAGES=True"
        case.check_refusal(message)


@pytest.mark.parametrize("name", ["20000x20000.png", "bomb.png", "bomb.gif", "bomb.jpg", "bomb.tiff", "bomb.bmp", "bomb.webp"])
def test_huge_images_are_refused_before_decoding(corpus: dict[str, CorpusCase], name: str) -> None:
    data = corpus[name].path.read_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageLoadError, match="megapixels"):
            load_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 0.5
    assert peak < 8 * 2**20, f"{name}: {peak / 2**20:.1f} MiB allocated while refusing"


def test_limits_are_configurable() -> None:
    data = encode(quadrants(), "PNG")  # 32x24
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(data, limits=ImageLimits(max_pixels=32 * 24 - 1))
    with pytest.raises(ImageLoadError, match="at least 30 pixels"):
        load_image(data, limits=ImageLimits(min_side=30))
    with pytest.raises(ImageLoadError, match="MiB limit"):
        load_image(data, limits=ImageLimits(max_bytes=100))
    with pytest.raises(ImageLoadError, match="elongated"):
        load_image(data, limits=ImageLimits(max_aspect=1.2))
    assert load_image(data, limits=ImageLimits(max_pixels=32 * 24)).image.size == (32, 24)


def test_an_endless_stream_is_cut_at_the_byte_limit() -> None:
    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            buffer[:] = b"\x89" * len(buffer)
            return len(buffer)

    with pytest.raises(ImageLoadError, match="MiB limit"):
        load_image(io.BufferedReader(Endless()), limits=ImageLimits(max_bytes=2**20))


def test_other_sources(tmp_path: Path) -> None:
    path = tmp_path / "photo.webp"
    path.write_bytes(encode(quadrants(), "WEBP", lossless=True))
    assert load_image(str(path)).format == "WEBP"
    with path.open("rb") as handle:
        assert load_image(handle).image.size == (32, 24)
    with pytest.raises(ImageLoadError, match="binary data"):
        load_image(io.StringIO("not bytes"))  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="expected a path"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    named = io.BytesIO(b"")
    named.name = "upload/cat.png"  # Streamlit's UploadedFile has a name like this
    with pytest.raises(ImageLoadError, match=r"^cat\.png: the file is empty"):
        load_image(named)


def test_loaded_image_does_not_depend_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    path.write_bytes(encode(quadrants(), "PNG"))
    loaded = load_image(path)
    path.unlink()
    assert np.asarray(loaded.image)[6, 8].tolist() == [255, 0, 0]


def test_sniff_ignores_the_extension() -> None:
    assert sniff_format(encode(quadrants(), "PNG")) == "PNG"
    assert sniff_format(encode(quadrants(), "GIF")) == "GIF"
    with pytest.raises(ImageLoadError, match="SVG"):
        sniff_format(b"\xef\xbb\xbf  <svg></svg>")


def test_tensor_round_trip_is_8_bit_exact(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randint(0, 256, (3, 20, 30), generator=generator).float() / 255
    assert torch.equal(to_tensor(to_pil(tensor)), tensor)
    path = save_png(tensor, tmp_path / "sub" / "x.png")
    assert torch.equal(to_tensor(load_image(path).image), tensor)
    assert to_pil(tensor).mode == "RGB" and to_pil(tensor).size == (30, 20)


# --- the CLI on the same corpus ----------------------------------------------------------

needs_weights = pytest.mark.skipif(
    not MODELS["efficientnet_lite0"].weights_available(), reason="efficientnet_lite0 weights not installed"
)


@needs_weights
@pytest.mark.parametrize("name", CASE_NAMES)
def test_cli_predict_on_corpus(corpus: dict[str, CorpusCase], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    case = corpus[name]
    code = main(["predict", str(case.path), "--model", "efficientnet_lite0", "--device", "cpu", "--top", "3"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if case.loads:
        assert code == 0, err
        assert err == ""
        assert len([line for line in out.splitlines() if "%" in line]) == 3
    else:
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("sparseviz predict: error: ")
        case.check_refusal(lines[0])
        assert out == ""


def test_image_module_leaves_pillow_globals_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    load_image(encode(quadrants(), "PNG"))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before
