"""Two models on one folder: per-image rows, the paired table, cross-transfer; report, CSV and
rows agree. And the local audit's rows do not depend on how many worker processes ran them."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from sparseviz import cli
from sparseviz.attacks import SparseConfig
from sparseviz.audit.compare import ModelAudit, compare, pair_table, paired_points, transfer_table
from sparseviz.audit.multi import parse_models
from sparseviz.audit.run import AUDIT_COLUMNS, AuditReport, AuditWorkerError, run_audit
from sparseviz.images import save_png
from sparseviz.images.folders import load_folder
from sparseviz.models.threads import attack_threads, one_thread
from tests.conftest import make_tiny_model, patch_tiny_registry

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def models(monkeypatch: pytest.MonkeyPatch) -> dict:
    return patch_tiny_registry(monkeypatch, "sparseviz.commands.audit.load_model")


def _photos(folder: Path, count: int) -> None:
    generator = torch.Generator().manual_seed(5)
    for i in range(count):
        save_png(torch.rand(3, 32, 32, generator=generator), folder / f"p{i}.png")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_two_models_report_csv_and_rows_agree(tmp_path: Path, models: dict) -> None:
    _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert cli.main(["audit", str(tmp_path / "in"), "--models", "tiny,tiny_other", "--out", str(out), "--quiet",
                     "--workers", "1", "--set", "steps=15"]) == 0
    rows = _csv(out / "comparison.csv")
    assert [r["image"] for r in rows] == ["p0.png", "p1.png", "p2.png"]
    for name in ("tiny", "tiny_other"):
        own = {r["image"]: r for r in _csv(out / name / "audit.csv")}
        for row in rows:  # the comparison repeats each model's own audit row
            assert row[f"pixels_{name}"] == own[row["image"]]["pixels"]
            assert row[f"success_{name}"] == own[row["image"]]["success"]
    assert {"transfer_tiny_to_tiny_other", "transfer_tiny_other_to_tiny"} <= set(rows[0])
    report = (out / "report.md").read_text()
    for heading in ("Which model is more fragile?", "Cross-transfer", "Does it survive everyday processing?"):
        assert heading in report
    fooled = sum(r["transfer_tiny_to_tiny_other"] == "1" for r in rows)
    checked = sum(r["transfer_tiny_to_tiny_other"] != "" for r in rows)
    assert f"{fooled}/{checked} = " in report or checked == 0
    page = (out / "report.html").read_text()
    assert "<svg" in page or "No image was fooled on both" in page


def test_bad_model_lists_are_one_line(tmp_path: Path, models: dict, capsys: pytest.CaptureFixture) -> None:
    _photos(tmp_path / "in", 1)
    for bad in ("tiny,,tiny_other", "tiny,tiny", "tiny,nope"):
        assert cli.main(["audit", str(tmp_path / "in"), "--models", bad, "--out", str(tmp_path / "o"),
                         "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "more than once" in err and "unknown model" in err
    assert parse_models(" a, b ") == ["a", "b"]


def _attacked(image: str, pixels: int | None, label: int = 0) -> dict:
    row = {column: "" for column in AUDIT_COLUMNS}
    row.update(image=image, status="attacked", success=int(pixels is not None), true_label=label, true_name="cat",
               adversarial_png=f"adversarials/{image}")
    if pixels is not None:
        row.update(pixels=pixels, adv_name="dog")
    return row


def test_paired_table_and_transfer_matrix_by_hand() -> None:
    a = AuditReport([_attacked("x", 2), _attacked("y", 10), _attacked("z", None)], [], {})
    b = AuditReport([_attacked("x", 4), _attacked("y", 10), _attacked("z", 3)], [], {})
    transfers = {("a", "b"): {"x": True, "y": None}, ("b", "a"): {"x": False, "y": False, "z": True}}
    comparison = compare([ModelAudit("a", a), ModelAudit("b", b)], transfers)
    pair = comparison.pairs[0]
    assert (pair.images, pair.both_fooled, pair.ties) == (3, 2, 1)
    assert pair.difference.value == -1.0  # median of (2-4, 10-10)
    assert pair.a_fewer.value == pytest.approx(1 / 3) and pair.b_fewer.value == pytest.approx(1 / 3)  # z: a not fooled
    assert comparison.transfer == {("a", "b"): (1, 1), ("b", "a"): (1, 3)}
    assert transfer_table(comparison)[0][2].startswith("1/1 = 100%")
    assert pair_table(comparison)[0][:4] == ["a", "b", 3, 2]
    assert paired_points(comparison, "a", "b") == [("x", 2.0, 4.0), ("y", 10.0, 10.0)]
    with pytest.raises(ValueError, match="two or more different models"):
        compare([ModelAudit("a", a)], {})


def test_attack_threads_restore_and_refuse() -> None:
    before = torch.get_num_threads()
    with attack_threads(2):
        assert torch.get_num_threads() == 2
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with attack_threads(0):
            pass


@pytest.mark.slow  # spawns two worker processes (each imports torch: seconds on a busy machine)
def test_local_serial_equals_local_parallel(tmp_path: Path) -> None:
    model = make_tiny_model()
    _photos(tmp_path / "in", 4)
    folder = load_folder(tmp_path / "in", model)
    config = SparseConfig(steps=15)
    serial = run_audit(model, folder, out=tmp_path / "a", config=config, workers=1)
    parallel = run_audit(model, folder, out=tmp_path / "b", config=config, workers=2)
    assert parallel.meta["workers"] == 2 and parallel.meta["torch_threads"] == 1

    def key(report: AuditReport) -> list:
        return [(r["image"], r["success"], r["pixels"], r["adv_name"], r["survives_jpeg75"]) for r in report.rows]

    assert key(serial) == key(parallel)
    for row in serial.rows:
        if row["adversarial_png"]:
            assert (tmp_path / "a" / row["adversarial_png"]).read_bytes() == \
                (tmp_path / "b" / row["adversarial_png"]).read_bytes()


def _die(module: object, inputs: object) -> None:
    """A forward pre-hook that kills its process, as the out-of-memory killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow  # spawns worker processes
def test_a_dead_worker_is_one_line(tmp_path: Path) -> None:
    model = make_tiny_model()
    model.register_forward_pre_hook(_die)
    _photos(tmp_path / "in", 2)
    with pytest.raises(AuditWorkerError, match="a worker process died while attacking p[01].png"):
        run_audit(model, load_folder(tmp_path / "in", model), out=tmp_path / "out", config=SparseConfig(steps=5),
                  workers=2)
