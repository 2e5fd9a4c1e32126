"""Audit inputs: per-file and whole-batch limits on uploads and zips; hostile members skipped, never fatal."""

from __future__ import annotations

import io
import zipfile

from conftest import make_tiny_model
from hostile_corpus import build_corpus
from sparseviz.audit.inputs import BatchLimits, clean_name, collect_gallery, collect_uploads, collect_zip, decode
from sparseviz.images.gallery import bundled_images
from sparseviz.images import ImageLimits

COFFEE = bundled_images()["coffee"].read_bytes()


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_clean_name_keeps_labels_harmless():
    assert clean_name("../../etc/passwd.png") == "etc/passwd.png"
    assert clean_name("/abs/./x.png") == "abs/x.png"
    assert clean_name("a\\b\\c.png") == "a/b/c.png"
    assert clean_name("..") == "unnamed"


def test_zip_members_are_read_and_refusals_have_reasons():
    data = _zip({
        "a/coffee.png": COFFEE, "a/inner.zip": _zip({"x.png": COFFEE}), "a/b/c/d/e/deep.png": COFFEE,
        "__MACOSX/a/._coffee.png": b"junk", "a/.hidden.png": COFFEE, "a/folder/": b"",
    })
    collected = collect_zip("batch.zip", data)
    assert list(collected.files) == ["batch.zip/a/coffee.png"]
    reasons = dict(collected.skipped)
    assert "inside the archive" in reasons["batch.zip/a/inner.zip"]
    assert "folders deep" in reasons["batch.zip/a/b/c/d/e/deep.png"]
    assert len(reasons) == 2  # resource forks, hidden files and folders are not listed


def test_zip_bomb_is_bounded_per_file_and_as_a_whole():
    limits = BatchLimits(max_total_bytes=250_000, image=ImageLimits(max_bytes=100_000))
    bomb = b"\0" * 5_000_000  # 5 MB of zeros compresses to a few KB
    collected = collect_zip("bomb.zip", _zip({"bomb.png": bomb, "one.png": b"1" * 90_000, "two.png": b"2" * 90_000,
                                              "three.png": b"3" * 90_000}), limits)
    reasons = dict(collected.skipped)
    assert "per-file limit" in reasons["bomb.zip/bomb.png"]
    assert "together exceed" in reasons["bomb.zip/three.png"]
    assert collected.total_bytes <= limits.max_total_bytes and len(collected.files) == 2


def test_a_member_that_lies_about_its_size_is_cut_off_while_reading():
    limits = BatchLimits(image=ImageLimits(max_bytes=1000))
    data = bytearray(_zip({"liar.png": b"\0" * 50_000}))
    # claim 10 bytes in the central directory (offset 24 of the entry holds the uncompressed size)
    central = data.rindex(b"PK\x01\x02")
    data[central + 24: central + 28] = (10).to_bytes(4, "little")
    collected = collect_zip("liar.zip", bytes(data), limits)
    assert not collected.files
    assert collected.skipped and collected.skipped[0][0] == "liar.zip/liar.png"


def test_file_count_and_archive_size_limits():
    limits = BatchLimits(max_files=2, max_archive_bytes=10**7)
    collected = collect_zip("many.zip", _zip({f"{i}.png": COFFEE for i in range(4)}), limits)
    assert len(collected.files) == 2 and sum("file limit" in r for _, r in collected.skipped) == 2
    tiny = BatchLimits(max_archive_bytes=100)
    assert "larger than" in collect_zip("big.zip", _zip({"x.png": COFFEE}), tiny).skipped[0][1]
    many = BatchLimits(max_members=3)
    assert "entries" in collect_zip("m.zip", _zip({f"{i}.png": b"x" for i in range(5)}), many).skipped[0][1]


def test_broken_and_encrypted_archives_are_skipped():
    assert "not a readable zip" in collect_zip("bad.zip", b"PK\x03\x04garbage").skipped[0][1]
    data = bytearray(_zip({"secret.png": COFFEE}, zipfile.ZIP_STORED))
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 0x1  # mark the entry encrypted
    assert "encrypted" in collect_zip("enc.zip", bytes(data)).skipped[0][1]


def test_uploads_with_a_zip_duplicates_and_hostile_files(tmp_path, one_torch_thread):
    hostile = [c for c in build_corpus(tmp_path) if c.path.is_file() and not c.loads][:8]
    uploads = [("coffee.png", COFFEE), ("coffee.png", COFFEE), ("set.zip", _zip({"x/coffee.png": COFFEE}))]
    uploads += [(c.path.name, c.path.read_bytes()) for c in hostile]
    collected = collect_uploads(uploads)
    assert {"coffee.png", "coffee (2).png", "set.zip/x/coffee.png"} <= set(collected.files)
    folder = decode(collected, make_tiny_model())
    assert [i.name for i in folder.images] == ["coffee.png", "coffee (2).png", "set.zip/x/coffee.png"]
    assert len(folder.skipped) == len(hostile) and all(reason for _, reason in folder.skipped)
    assert all("Traceback" not in reason for _, reason in folder.skipped)


def test_gallery_names_match_the_cli_folder_listing():
    collected = collect_gallery(["coffee", "chelsea", "nope"])
    assert list(collected.files) == ["coffee.png", "chelsea.png"]
    assert collected.skipped == [("nope", "no such bundled photo.")]
