"""`sparseviz bench` end to end on tiny images and the tiny model: the CSV must agree with the saved PNGs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sparseviz import cli
from sparseviz.attacks.base import is_adversarial, to_uint8
from sparseviz.audit.bench import (
    BenchRun, band_table, build_config, confidence_band, head_to_head, parse_overrides, summary_table,
)
from sparseviz.images import load_image, save_png, to_tensor
from sparseviz.images.folders import load_folder
from tests.conftest import patch_tiny_registry

FAST_SETTINGS = [
    "--set", "sparsefool.max_iter=5", "--set", "pgd0.steps=5", "--set", "sparse_rs.queries=30",
    "--set", "sparse_rs.min_pixels=4", "--set", "sparse.steps=15",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def models(monkeypatch: pytest.MonkeyPatch):
    """`load_model` in the bench command answers with tiny models (no weights, milliseconds per call)."""
    return patch_tiny_registry(monkeypatch, "sparseviz.commands.bench.load_model")


def _photos(folder: Path, count: int = 2) -> None:
    generator = torch.Generator().manual_seed(7)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        save_png(torch.rand(3, 40, 48, generator=generator), folder / f"photo{i}.png")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_bench_end_to_end(tmp_path: Path, models: dict, capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    _photos(images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "README.md").write_text("not an image, not reported")
    out = tmp_path / "out"
    attacks = "sparse,sparsefool,pgd0,sparse_rs,pgd,fgsm"
    code = cli.main(["bench", "--images", str(images), "--model", "tiny", "--attacks", attacks,
                     "--transfer", "tiny_other", "--out", str(out), "--quiet", *FAST_SETTINGS])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "README.md" not in captured.err

    rows = _rows(out / "results.csv")
    assert len(rows) == 2 * 6
    assert {r["attack"] for r in rows} == set(attacks.split(","))
    assert "transfer_tiny_other" in rows[0]
    source, other = models["tiny"], models["tiny_other"]
    for row in rows:
        assert row["status"] == "attacked" and row["label_source"] == "clean prediction"
        original = source.preprocess(to_tensor(load_image(images / row["image"]).image))
        saved = to_tensor(load_image(out / row["adversarial_png"]).image)
        label = int(row["true_label"])
        with torch.no_grad():
            assert int(source(original[None]).argmax()) == label
            fooled = bool(is_adversarial(source(saved[None]), torch.tensor([label]), None)[0])
        # the CSV describes the saved file exactly
        assert int(row["success"]) == int(fooled)
        changed = (to_uint8(saved) != to_uint8(original)).any(dim=0)
        assert int(row["l0_pixels"]) == int(changed.sum())
        assert int(row["l0_entries"]) == int((to_uint8(saved) != to_uint8(original)).sum())
        assert float(row["seconds"]) > 0 and int(row["model_calls"]) >= 2
        if not fooled:
            assert int(row["l0_pixels"]) == 0
        # transfer: blank unless the attack worked and the other model agrees on the clean image
        with torch.no_grad():
            other_clean = int(other(original[None]).argmax())
            other_adv = int(other(saved[None]).argmax())
        if fooled and other_clean == label:
            assert row["transfer_tiny_other"] == str(int(other_adv != label))
        else:
            assert row["transfer_tiny_other"] == ""
    for row in rows:
        if row["attack"] == "pgd0":
            assert int(row["l0_pixels"]) <= 1024

    summary = (out / "summary.md").read_text()
    assert "| sparse |" in summary and "| sparsefool |" in summary and "transfer to tiny_other" in summary
    assert "torch threads" in summary and "Device: cpu" in summary
    assert "clean prediction" in summary and "broken.jpg" in summary
    assert "max_iter': 5" in summary  # the budget actually used is recorded
    assert "Head to head with `sparse`" in summary and "| sparsefool | " in summary.split("Head to head")[1]
    assert (out / "summary.html").read_text().startswith("<!doctype html>")


def test_bench_class_folders_skip_misclassified(tmp_path: Path, models: dict) -> None:
    model = models["tiny"]
    images = tmp_path / "images"
    generator = torch.Generator().manual_seed(3)
    picture = torch.rand(3, 32, 32, generator=generator)
    predicted = int(model(model.preprocess(picture)[None]).argmax())
    wrong = (predicted + 1) % model.num_classes
    save_png(picture, images / model.class_names[predicted] / "right.png")
    save_png(picture, images / model.class_names[wrong] / "wrong.png")
    save_png(picture, images / "no_such_class" / "lost.png")
    folder = load_folder(images, model)
    assert folder.layout == "class folders"
    assert [item.folder_label for item in folder.images] == [predicted, wrong]
    assert folder.skipped and folder.skipped[0][0].startswith("no_such_class")

    out = tmp_path / "out"
    assert cli.main(["bench", "--images", str(images), "--model", "tiny", "--attacks", "pgd0,fgsm",
                     "--out", str(out), "--quiet", "--set", "pgd0.steps=3"]) == 0
    rows = _rows(out / "results.csv")
    by_image = {(r["image"].split("/")[0], r["attack"]): r for r in rows}
    assert by_image[(model.class_names[wrong], "pgd0")]["status"] == "misclassified (not attacked)"
    assert by_image[(model.class_names[wrong], "pgd0")]["success"] == ""
    assert by_image[(model.class_names[predicted], "pgd0")]["label_source"] == "folder"
    assert "not attacked" in (out / "summary.md").read_text()


def test_bench_targeted(tmp_path: Path, models: dict) -> None:
    images = tmp_path / "images"
    _photos(images, 1)
    out = tmp_path / "out"
    assert cli.main(["bench", "--images", str(images), "--model", "tiny", "--attacks", "pgd0,sparse_rs",
                     "--targeted", "--out", str(out), "--quiet", "--set", "pgd0.steps=5", "--set", "sparse_rs.queries=30"]) == 0
    for row in _rows(out / "results.csv"):
        assert row["target_label"] != "" and row["target_label"] != row["true_label"]
        if row["success"] == "1":
            assert row["adv_label"] == row["target_label"]


def test_config_overrides() -> None:
    assert parse_overrides(["sparsefool.max_iter=3", "pgd0.search=false"]) == {
        "sparsefool": {"max_iter": "3"}, "pgd0": {"search": "false"}}
    config = build_config("pgd0", {"search": "false", "pixels": "7"}, max_seconds=2.5)
    assert config.search is False and config.pixels == 7 and config.max_seconds == 2.5
    assert build_config("sparse_rs", {"max_seconds": "none"}).max_seconds is None
    with pytest.raises(ValueError, match="options:"):
        build_config("pgd0", {"nope": "1"})
    with pytest.raises(ValueError, match="pgd0.pixels expects a whole number"):
        build_config("pgd0", {"pixels": "many"})
    with pytest.raises(ValueError, match=r"pixels must be a number in \[1"):
        build_config("pgd0", {"pixels": "0"})
    with pytest.raises(ValueError, match="ATTACK.OPTION=VALUE"):
        parse_overrides(["max_iter=3"])


def test_bench_cli_errors(tmp_path: Path, models: dict, capsys: pytest.CaptureFixture) -> None:
    _photos(tmp_path / "images", 1)
    args = ["bench", "--images", str(tmp_path / "images"), "--model", "tiny", "--out", str(tmp_path / "out"), "--quiet"]
    assert cli.main([*args, "--attacks", "sparse,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert cli.main([*args, "--attacks", "pgd0", "--set", "sparsefool.max_iter=3"]) == 2
    assert cli.main(["bench", "--images", str(tmp_path / "missing"), "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["bench", "--images", str(empty), "--model", "tiny", "--out", str(tmp_path / "o"), "--quiet"]) == 2


# --- audit ----------------------------------------------------------------------------


def test_audit_end_to_end(tmp_path: Path, models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sparseviz.commands.audit.load_model", lambda name, **_: models[name])
    model = models["tiny"]
    folder = tmp_path / "photos"
    generator = torch.Generator().manual_seed(11)
    pictures = [torch.rand(3, 32, 32, generator=generator) for _ in range(3)]
    predicted = [int(model(model.preprocess(p)[None]).argmax()) for p in pictures]
    for i, (picture, label) in enumerate(zip(pictures, predicted)):
        save_png(picture, folder / model.class_names[label] / f"img{i}.png")
    wrong = (predicted[0] + 1) % model.num_classes
    save_png(pictures[0], folder / model.class_names[wrong] / "mislabelled.png")
    (folder / model.class_names[predicted[0]] / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    out = tmp_path / "audit"
    assert cli.main(["audit", str(folder), "--model", "tiny", "--out", str(out), "--quiet", "--workers", "1", "--set", "steps=15"]) == 0

    rows = _rows(out / "audit.csv")
    assert len(rows) == 4  # three attacked + one misclassified; the truncated file is skipped
    statuses = {r["image"].split("/")[-1]: r["status"] for r in rows}
    assert statuses["mislabelled.png"].startswith("misclassified")
    report = (out / "report.md").read_text()
    for heading in ("How many pixels it takes", "Most fragile images", "Most fragile classes",
                    "Where the flips land", "The easiest flips", "Every image", "Skipped files"):
        assert heading in report
    assert "truncated.png" in report
    for row in rows:
        if row["success"] == "1":
            original = model.preprocess(to_tensor(load_image(folder / row["image"]).image))
            saved = to_tensor(load_image(out / row["adversarial_png"]).image)
            assert int(row["pixels"]) == int((to_uint8(saved) != to_uint8(original)).any(dim=0).sum())
            kinds = sum(int(row[k]) for k in ("obscuring", "leading", "both", "neither"))
            assert kinds == int(row["pixels"]), "every changed pixel gets one obscuring/leading label"
            stem = row["image"].rsplit(".", 1)[0].replace("/", "__")
            assert (out / "thumbnails" / f"{stem}.png").is_file()
            assert f"thumbnails/{stem}.png" in report
    assert "<img src='thumbnails/" in (out / "report.html").read_text()


def test_audit_flat_folder_with_garbage(tmp_path: Path, models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sparseviz.commands.audit.load_model", lambda name, **_: models[name])
    folder = tmp_path / "flat"
    _photos(folder, 2)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("hello")
    (folder / "noextension").write_bytes(b"GIF89a")
    out = tmp_path / "audit"
    assert cli.main(["audit", str(folder), "--model", "tiny", "--out", str(out), "--quiet", "--workers", "1", "--set", "steps=10"]) == 0
    report = (out / "report.md").read_text()
    assert "clean prediction" in report
    for name in ("empty.png", "text.jpg", "noextension"):
        assert name in report
    assert cli.main(["audit", str(folder), "--model", "tiny", "--out", str(out), "--set", "nope=1"]) == 2


def test_head_to_head_ratios_are_per_image_and_pixels_only_where_both_fooled() -> None:
    def row(attack: str, image: str, success: int, pixels: int, seconds: float) -> dict:
        return {"attack": attack, "image": image, "status": "attacked", "success": success,
                "l0_pixels": pixels, "seconds": seconds}

    rows = [
        row("sparse", "a", 1, 2, 1.0), row("sparse", "b", 1, 5, 2.0), row("sparse", "c", 1, 40, 4.0),
        row("other", "a", 1, 3, 10.0), row("other", "b", 1, 5, 2.0), row("other", "c", 0, 0, 40.0),
    ]
    run = BenchRun(rows, {"attacks": ["sparse", "other"]})
    header, table = head_to_head(run)
    assert len(table) == 1 and table[0][0] == "other"
    line = dict(zip(header, table[0]))
    assert line["both fooled"] == "2/3"
    # pixels over a and b only: sparse median 3.5 vs other 4; c (other failed) does not count
    assert line["pixels median (sparse / attack), both fooled"] == "3.5 / 4"
    assert line["sparse fewer / equal / more pixels"] == "1 / 1 / 0"
    assert line["time ratio attack / sparse: median per image"] == "10.00x"  # ratios 10, 1, 10
    assert line["same, on images both fooled"] == "5.50x"  # ratios 10, 1
    assert line["ratio of median times"] == "5.00x"  # 10 / 2
    assert head_to_head(BenchRun(rows[3:], {"attacks": ["other"]}))[1] == []


def test_band_table_splits_by_clean_confidence_and_times_only_successes() -> None:
    def row(image: str, confidence: float, success: int, pixels: int, seconds: float, invocations: float) -> dict:
        return {"attack": "sparse", "image": image, "status": "attacked", "success": success, "l0_pixels": pixels,
                "l0_entries": pixels, "model_calls": 1, "seconds": seconds, "model_invocations": invocations, "band": confidence_band(confidence)}

    rows = [row("a", 0.95, 1, 30, 4.0, 50), row("b", 0.85, 0, 0, 1.0, 20), row("c", 0.5, 1, 3, 2.0, 40),
            row("d", 0.1, 1, 1, 1.0, 30), row("e", 0.39, 1, 5, 3.0, 34)]
    run = BenchRun(rows, {"attacks": ["sparse"]}, [])
    header, table = band_table(run)
    lines = {line[1]: dict(zip(header, line)) for line in table}
    assert list(lines) == ["high", "mid", "low"]
    assert lines["high"]["success"] == "1/2" and lines["high"]["pixels median"] == "30"
    assert lines["high"]["median s / image"] == "2.50" and lines["high"]["median s / successful image"] == "4.00"
    assert lines["low"]["pixels max"] == "5" and lines["low"]["median invocations / image"] == "32"
    overall = dict(zip(*[summary_table(run)[0], summary_table(run)[1][0]]))
    assert overall["median s / successful image"] == "2.50"  # the failed image's 1 s does not count


def test_bench_reports_invocations_per_image_of_a_batch(tmp_path: Path, models: dict) -> None:
    images = tmp_path / "images"
    _photos(images, count=4)
    per_image = {}
    for batch in (1, 4):
        out = tmp_path / f"out{batch}"
        assert cli.main(["bench", "--images", str(images), "--model", "tiny", "--attacks", "sparse", "--out", str(out),
                         "--quiet", "--batch-size", str(batch), "--set", "sparse.steps=20"]) == 0
        rows = _rows(out / "results.csv")
        assert {r["band"] for r in rows} <= {"high", "mid", "low"}
        per_image[batch] = sum(float(r["model_invocations"]) for r in rows) / len(rows)
    # The four images share each call: far fewer sequential calls per image than one at a time.
    assert per_image[4] <= per_image[1] / 2
