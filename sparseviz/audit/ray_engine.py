"""The folder audit spread over a Ray cluster: Ray Data streams files through CPU decode
tasks into a pool of attack actors, and this process writes each row as it arrives.

Why it is built this way:
- Files are listed here with the local audit's own rules (so both engines see the same
  files) and read, hashed, decoded and preprocessed by Ray Data tasks on CPUs.
- Each actor loads the model once (on its GPU when it has one) and attacks a batch at a
  time through ``audit.audit_batch``, the function the local engine uses, so a row does
  not depend on the engine or the batching.
- Only this process writes the output folder: ``rows.jsonl`` gets one line per image as
  soon as its files are on disk, so a crash loses at most the batches in flight, and a
  re-run skips every image whose key (name + content hash + model + attack settings) is
  already there. The report is then built from all rows, exactly as the local engine does.
- Ray retries a batch whose actor died (``max_restarts``/``max_task_retries``); rows are
  kept by key, first one wins, so every image ends with exactly one row.

Ray is optional (``pip install sparseviz[ray]``); nothing here imports it at module load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..attacks import ATTACKS
from ..attacks.base import to_uint8
from .run import AuditReport, audit_batch, audit_meta, build_report, write_files
from ..images.folders import BenchImage, image_files, load_file
from ..views.text import one_line
from .bench import machine_info
from ..images import ImageLimits
from ..models import ImageClassifier, load_model
from ..models.threads import ATTACK_THREADS

ROWS_FILE = "rows.jsonl"  # one JSON object per image, appended as results arrive
MODEL_PROBE_SECONDS = 600.0  # a worker that cannot build the model within this is reported, not waited on
RESTARTS = 4  # times Ray restarts a dead actor and retries its batch before the job fails
CONNECT_SECONDS = 5.0  # a TCP check of the head's address before Ray's own (much longer) retries


class RayAuditError(ValueError):
    """An expected failure of a distributed run (no Ray, no cluster, no weights): one line."""


ModelLoader = Callable[[str], ImageClassifier]  # device -> model; must pickle (it runs on the workers)


@dataclass(frozen=True)
class RegistryModel:
    """A registry model built on each worker from that worker's installed weights."""

    name: str

    def __call__(self, device: str) -> ImageClassifier:
        return load_model(self.name, device=device)


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: a private Ray on this machine (loopback only); else "host:port" of a head
    workers: int = 1  # attack actors; each holds one copy of the model
    gpus_per_worker: float = 0.0  # 0 = CPU actors; 1 = one GPU each (the model and the attack run on it)
    cpus_per_worker: float = 1.0  # CPUs Ray reserves per actor
    threads: int = ATTACK_THREADS  # torch threads per actor: 1, as the local engine, so both give the same rows
    batch_size: int = 4  # images per attack call; larger batches keep a GPU busy

    def __post_init__(self) -> None:
        for name, value, low, high in (("workers", self.workers, 1, 10_000), ("threads", self.threads, 1, 1024),
                                       ("batch_size", self.batch_size, 1, 100_000),
                                       ("gpus_per_worker", self.gpus_per_worker, 0, 64),
                                       ("cpus_per_worker", self.cpus_per_worker, 0.01, 1024)):
            if not low <= value <= high:
                raise RayAuditError(f"{name} must be in {low}..{high}; got {value}.")


# --- keys and the row log -------------------------------------------------------------


def settings_digest(model_name: str, attack: str, config: Any) -> str:
    """What makes a row reusable besides the image: the model and every attack setting."""
    text = json.dumps({"model": model_name, "attack": attack, "config": dataclasses.asdict(config)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path, limit: int = ImageLimits().max_bytes) -> str:
    """SHA-256 of a regular file's bytes (up to the loader's size limit); a fixed word for what cannot be read."""
    try:
        if not path.is_file():  # FIFOs and devices are never opened
            return "not-a-regular-file"
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            digest.update(handle.read(limit + 1))
        return digest.hexdigest()
    except OSError:
        return "unreadable"


def image_key(name: str, content: str, settings: str) -> str:
    # The name is part of the key so that two copies of one photo each keep their row.
    return hashlib.sha256(f"{name}\0{content}\0{settings}".encode()).hexdigest()


class RowLog:
    """``rows.jsonl``: append-only, one line per finished image, read back on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash: that image is simply done again
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                records.setdefault(record["key"], record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # finish a torn line so this record stays readable
                    handle.write(b"\n")
            handle.write((json.dumps(record) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())


# --- work done on the cluster -----------------------------------------------------------


def model_shell(model: ImageClassifier) -> ImageClassifier:
    """The model's class names and preprocessing without its weights: cheap to ship to decode tasks."""
    mean, std = model.mean, model.std
    return ImageClassifier(
        nn.Identity(), name=model.name, class_names=model.class_names, input_size=model.input_size,
        resize_size=model.resize_size, mean=mean.flatten().tolist(), std=std.flatten().tolist(),
        interpolation=model.interpolation, cam_layer=None,
    )


def _worker_device(gpus: float) -> str:
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def _probe_model(loader: ModelLoader, gpus: float) -> ImageClassifier | str:
    """Build the model where the actors will; a shell on success, else the one-line reason."""
    try:
        return model_shell(loader(_worker_device(gpus)))
    except Exception as error:  # noqa: BLE001 - whatever the worker lacks, the user gets one line
        text = one_line(error)
        return f"the cluster cannot build the model: {text}"


@dataclass(frozen=True)
class _Decode:
    """CPU task: read, hash and (unless already done) decode and preprocess one file."""

    shell: ImageClassifier
    settings: str
    done: frozenset[str]

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        path, name = Path(item["path"]), str(item["name"])
        key = image_key(name, file_digest(path), self.settings)
        record: dict[str, Any] = {"key": key, "name": name, "label": -1, "pixels": b"", "reason": "",
                                  "done": key in self.done}
        if record["done"]:
            return record
        loaded = load_file(path, name, item["class_name"] or None, self.shell)
        if isinstance(loaded, tuple):
            record["reason"] = loaded[1]
        else:
            record["pixels"] = to_uint8(loaded.image).numpy().tobytes()
            record["label"] = -1 if loaded.folder_label is None else loaded.folder_label
        return record


class _AttackWorker:
    """Actor: loads the model once, then turns batches of decoded images into finished rows."""

    def __init__(self, loader: ModelLoader, attack: str, config: Any, threads: int, gpus: float) -> None:
        torch.set_num_threads(threads)
        self.model = loader(_worker_device(gpus))
        self.attack, self.config = attack, config
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.size = self.model.input_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        items: list[tuple[int, BenchImage]] = []
        for i, key in enumerate(batch["key"]):
            name = str(batch["name"][i])
            if batch["done"][i]:
                records.append({"key": str(key), "done": True})
            elif batch["reason"][i]:
                records.append({"key": str(key), "image": name, "skipped": str(batch["reason"][i]), "worker": self.worker})
            else:
                pixels = np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(3, self.size, self.size)
                label = int(batch["label"][i])
                image = torch.from_numpy(pixels.copy()).float() / 255.0
                items.append((len(records), BenchImage(name, image, None if label < 0 else label)))
                records.append({"key": str(key)})
            blobs.append(b"")
        if items:
            rows = audit_batch(self.model, [item for _, item in items], attack=self.attack, config=self.config)
            for (position, _), done in zip(items, rows):
                records[position].update({"row": done.row, "worker": self.worker,
                                          "files": {path: len(data) for path, data in done.files.items()}})
                blobs[position] = b"".join(done.files.values())
        return {"key": np.array([r["key"] for r in records], dtype=object),
                "record": np.array([json.dumps(r) for r in records], dtype=object),
                "blob": np.array(blobs, dtype=object)}


# --- connecting -------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayAuditError("--engine ray needs Ray: pip install 'sparseviz[ray]'.") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, with the address in the message, when nothing listens there."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].rpartition(":")
    if not host or not port.isdigit():
        raise RayAuditError(f"--address must be HOST:PORT of a Ray head (e.g. 10.0.0.5:6379); got {address!r}.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise RayAuditError(f"no Ray head reachable at {address} ({error.strerror or type(error).__name__}).") from None


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[Any]:
    """Connect to ``settings.address``, or start a private loopback-only Ray; leave Ray as it was found."""
    if settings.address is None and not _ray_connected():
        # A private instance: bound to 127.0.0.1 and, unless the user chose otherwise, guarded by a
        # fresh token held only in this process's environment (nothing written to ~/.ray). Set before
        # Ray is imported: its token loader reads the environment once.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    ray = _import_ray()
    if ray.is_initialized():  # the caller (a notebook, a test) already connected: use that cluster
        yield ray
        return
    if settings.address is not None:
        _check_reachable(settings.address)
        init: dict[str, Any] = {"address": settings.address}
    else:
        cpus = settings.workers * settings.cpus_per_worker + 1  # +1 keeps decode tasks moving
        init = {"address": "local", "num_cpus": max(1, int(np.ceil(cpus))), "include_dashboard": False,
                "_node_ip_address": "127.0.0.1"}  # "local": never join a cluster found in /tmp/ray or RAY_ADDRESS
    try:
        ray.init(**init, log_to_driver=False, logging_level="ERROR", configure_logging=True)
    except Exception as error:  # noqa: BLE001 - connection/auth failures come in many types; one line each
        text = one_line(error)
        where = f"the Ray head at {settings.address}" if settings.address else "a local Ray instance"
        raise RayAuditError(f"cannot connect to {where}: {text}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_resources(ray: Any, settings: RaySettings) -> None:
    """Refuse at once what the cluster can never schedule (Ray would wait for it forever)."""
    total = ray.cluster_resources()
    gpus_needed = settings.workers * settings.gpus_per_worker
    if gpus_needed > total.get("GPU", 0):
        raise RayAuditError(f"{settings.workers} workers x {settings.gpus_per_worker:g} GPU need {gpus_needed:g} GPUs; "
                            f"the cluster has {total.get('GPU', 0):g}.")
    if settings.cpus_per_worker > total.get("CPU", 0):
        raise RayAuditError(f"a worker needs {settings.cpus_per_worker:g} CPUs; the cluster has {total.get('CPU', 0):g}.")


def _probe(ray: Any, loader: ModelLoader, settings: RaySettings) -> ImageClassifier:
    remote = ray.remote(num_cpus=min(1.0, settings.cpus_per_worker), num_gpus=settings.gpus_per_worker or None,
                        max_retries=0)(_probe_model)
    try:
        answer = ray.get(remote.remote(loader, settings.gpus_per_worker), timeout=MODEL_PROBE_SECONDS)
    except Exception as error:  # noqa: BLE001 - a worker that cannot even import sparseviz, or a timeout
        text = one_line(error)
        raise RayAuditError(f"the cluster could not load the model: {text}") from None
    if isinstance(answer, str):
        raise RayAuditError(answer)
    return answer


# --- the driver -------------------------------------------------------------------------


def run_ray_audit(
    folder: str | Path,
    loader: ModelLoader,
    *,
    out: str | Path,
    attack: str = "sparse",
    config: Any = None,
    settings: RaySettings = RaySettings(),
    on_row: Callable[[dict[str, Any], bool], None] | None = None,
) -> AuditReport:
    """Audit ``folder`` on Ray; rows stream to ``out/rows.jsonl`` and files under ``out``.

    ``on_row(record, new)`` sees each record (``row`` for an attacked or misclassified image,
    ``skipped`` for an unusable file): new ones right after they are on disk, and with
    ``new=False`` those an earlier run already did (not attacked again).
    """
    if attack not in ATTACKS:
        raise RayAuditError(f"unknown attack {attack!r}; choose from: {', '.join(ATTACKS)}.")
    config = config if config is not None else ATTACKS[attack].config_type()
    folder, out = Path(folder), Path(out)
    files, layout = image_files(folder)
    log = RowLog(out / ROWS_FILE)
    previous = log.read()
    started = time.perf_counter()
    with ray_session(settings) as ray:
        _check_resources(ray, settings)
        shell = _probe(ray, loader, settings)
        digest = settings_digest(shell.name, attack, config)
        items = [{"path": str(path.resolve()), "name": str(path.relative_to(folder)), "class_name": cls or ""}
                 for path, cls in files]
        current = _stream(ray, items, shell, digest, previous, loader, attack, config, settings, log, out, on_row)
    rows = [record["row"] for record in current.values() if "row" in record]
    skipped = [(record["image"], record["skipped"]) for record in current.values() if "skipped" in record]
    meta = machine_info(shell)
    workers = sorted({record["worker"] for record in current.values() if "worker" in record})
    meta.update(audit_meta(shell.name, attack, config, layout))
    meta.update({"device": f"Ray ({settings.workers} x {settings.gpus_per_worker:g} GPU workers; "
                           f"{len(workers)} worker processes wrote rows)",
                 "torch_threads": settings.threads, "total_seconds": time.perf_counter() - started})
    return build_report(rows, skipped, meta, order=[str(path.relative_to(folder)) for path, _ in files])


def _stream(ray: Any, items: list[dict[str, Any]], shell: ImageClassifier, digest: str,
            previous: dict[str, dict[str, Any]], loader: ModelLoader, attack: str, config: Any,
            settings: RaySettings, log: RowLog, out: Path, on_row: Callable[[dict[str, Any], bool], None] | None
            ) -> dict[str, dict[str, Any]]:
    """Run the pipeline; returns this folder's records by key (earlier runs' and new ones)."""
    current: dict[str, dict[str, Any]] = {}
    if not items:
        return current
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws one bar for the whole job
    context.print_on_execution_start = False
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 200))
    # Decoding costs milliseconds an image; one decode task per worker keeps the actors fed without
    # filling small machines with processes that each import torch.
    dataset = dataset.map(_Decode(shell, digest, frozenset(previous)), num_cpus=0.5,
                          compute=ray.data.TaskPoolStrategy(size=settings.workers))
    with warnings.catch_warnings():
        # Bounded restarts are only expressible as remote args in Ray 2.60 (deprecated for 2.64); Ray Data's
        # default is unbounded, which would loop forever on a batch that kills its actor every time.
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            _AttackWorker, fn_constructor_kwargs={"loader": loader, "attack": attack, "config": config,
                                                  "threads": settings.threads, "gpus": settings.gpus_per_worker},
            batch_size=settings.batch_size, compute=ray.data.ActorPoolStrategy(size=settings.workers),
            num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker or None, batch_format="numpy",
            max_restarts=RESTARTS, max_task_retries=RESTARTS,
        )
    results = iter(dataset.iter_rows())
    try:
        while True:
            try:
                result = next(results)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - Ray wraps task failures in many types
                text = one_line(error)
                raise RayAuditError(f"the Ray job failed ({len(current)} images done, kept in {out / ROWS_FILE}; "
                                    f"run again to resume): {text}") from None
            key = str(result["key"])
            record = json.loads(result["record"])
            if record.get("done"):
                if key not in current:
                    current[key] = previous[key]
                    if on_row is not None:
                        on_row(previous[key], False)
                continue
            if key in current:
                continue  # a batch redone after a fault: the first answer stands
            blob, offset = bytes(result["blob"]), 0
            for relative, size in record.pop("files", {}).items():
                write_files(out, {relative: blob[offset:offset + size]})
                offset += size
            log.append(record)
            current[key] = record
            if on_row is not None:
                on_row(record, True)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # stops the pipeline: an interrupted run leaves no actor holding the cluster
    return current


__all__ = ["ROWS_FILE", "RayAuditError", "RaySettings", "RegistryModel", "RowLog", "run_ray_audit"]
