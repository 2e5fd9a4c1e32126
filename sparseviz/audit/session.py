"""What the app's Audit page runs and keeps: one library call per button.

:func:`run_in_memory` runs :func:`~sparseviz.audit.run_audit` and
:func:`~sparseviz.audit.write_audit` (the same code as ``sparseviz audit``) in a scratch
folder and keeps the files it wrote as bytes, so the page offers the very CSV and HTML
report the CLI writes. :func:`extremes` picks the most and least fragile images, and
:func:`reopen` rebuilds one image's :class:`AttackResult` from its saved 8-bit PNGs so the
single-image view can show it without attacking again.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..attacks.base import AttackResult, is_adversarial
from ..images import load_image, to_tensor
from ..images.folders import LoadedFolder
from ..models import ImageClassifier
from .compare import Comparison, ModelAudit, read_adversarials
from .compare_report import write_comparison
from .inputs import Collected
from .multi import comparison_of
from .run import AuditReport, run_audit, write_audit

REPORT_FILES = ("audit.csv", "report.html", "report.md")


@dataclass(frozen=True)
class AuditRun:
    """A finished (or stopped) audit: the report and every file ``sparseviz audit`` would have written."""

    report: AuditReport
    files: dict[str, bytes]  # path relative to the output folder -> bytes (audit.csv, report.html, adversarials/...)

    def file(self, relative: str) -> bytes | None:
        return self.files.get(relative)

    def zip_bytes(self) -> bytes:
        """The whole output folder as one zip (the HTML report's thumbnails included)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for relative, data in sorted(self.files.items()):
                archive.writestr(f"sparseviz-audit/{relative}", data)
        return buffer.getvalue()


def run_in_memory(model: ImageClassifier, folder: LoadedFolder, *, config: Any = None,
                  on_step: Callable[[str], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, easiest: int = 8) -> AuditRun:
    """``sparseviz audit`` on already loaded images, its output folder returned as bytes."""
    with tempfile.TemporaryDirectory(prefix="sparseviz-audit-") as scratch:
        report = run_audit(model, folder, out=scratch, config=config, on_step=on_step, should_stop=should_stop)
        write_audit(report, scratch, easiest=easiest)
        root = Path(scratch)
        files = {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}
    return AuditRun(report, files)


RAY_ENV = "SPARSEVIZ_AUDIT_RAY"  # "local" (a private Ray on this machine) or "host:port" of a Ray head


def ray_address() -> str | None:
    """Where the server was told to run audits on Ray: None = not configured (local engine only)."""
    value = os.environ.get(RAY_ENV, "").strip()
    return value or None


def run_on_ray(model_name: str, collected: Collected, *, config: Any = None, address: str = "local",
               on_row: Callable[[str], None] | None = None, easiest: int = 8) -> AuditRun:
    """``sparseviz audit --engine ray`` on the page's files, its output folder returned as bytes.

    The files are written flat (``a/b.png`` as ``a__b.png``) so the engine reads them as one
    unlabelled folder, as the local engine does; rows are named by those flat names.
    """
    from .ray_engine import RaySettings, RegistryModel, run_ray_audit

    settings = RaySettings(address=None if address == "local" else address)
    with tempfile.TemporaryDirectory(prefix="sparseviz-audit-") as scratch:
        inputs, out = Path(scratch) / "in", Path(scratch) / "out"
        inputs.mkdir()
        for name, data in collected.files.items():
            (inputs / name.replace("/", "__")).write_bytes(data)
        report = run_ray_audit(inputs, RegistryModel(model_name), out=out, config=config, settings=settings,
                               on_row=None if on_row is None else lambda record, new: on_row(str(record.get("image", ""))))
        report.skipped.extend(collected.skipped)  # refused before decoding (limits, archives)
        write_audit(report, out, easiest=easiest)
        files = {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    return AuditRun(report, files)


def flat_names(folder: LoadedFolder) -> LoadedFolder:
    """The folder with its images named as the Ray engine names rows (``a/b.png`` as ``a__b.png``)."""
    images = [dataclasses.replace(item, name=item.name.replace("/", "__")) for item in folder.images]
    return LoadedFolder(images, folder.skipped, folder.layout)


@dataclass(frozen=True)
class ComparedRun:
    """Several models' audits of the same images and their comparison, with the files the CLI writes
    at the top of ``sparseviz audit --models`` (``comparison.csv``, ``report.html``, ``report.md``)."""

    comparison: Comparison
    runs: dict[str, AuditRun]
    files: dict[str, bytes]

    def file(self, relative: str) -> bytes | None:
        return self.files.get(relative)


def compare_runs(models: Mapping[str, ImageClassifier], folders: Mapping[str, LoadedFolder],
                 runs: Mapping[str, AuditRun]) -> ComparedRun:
    """The comparison of finished runs (on either engine): cross-transfer here, files as the CLI writes them."""
    audits = [ModelAudit(name, run.report, {item.name: item.image for item in folders[name].images},
                         read_adversarials(run.report, run.file)) for name, run in runs.items()]
    comparison = comparison_of(audits, models)
    with tempfile.TemporaryDirectory(prefix="sparseviz-compare-") as scratch:
        write_comparison(comparison, {name: run.report for name, run in runs.items()}, scratch)
        files = {path.name: path.read_bytes() for path in Path(scratch).iterdir() if path.is_file()}
    return ComparedRun(comparison, dict(runs), files)


@dataclass(frozen=True)
class KeptAudit:
    """An audit as the Audit page keeps it: the run, its settings, and what reopening a shown image needs."""

    run: AuditRun
    model: str
    config: Any  # the attack's config
    originals: dict[str, torch.Tensor]  # shown image -> its model input, to reopen it in the single-image view
    sources: dict[str, bytes]  # shown image -> the uploaded bytes (uploads only)
    gallery: bool  # the images are bundled photos (reopened by name) rather than uploads
    compared: ComparedRun | None = None  # other models audited on the same images, and the comparison


def keep(run: AuditRun, model_name: str, config: Any, folder: LoadedFolder, collected: Collected, *, gallery: bool,
         on_ray: bool, shown: int, compared: ComparedRun | None = None) -> KeptAudit:
    """Keep a run with the originals and sources of the ``shown`` most and least fragile images only."""
    def row_name(name: str) -> str:  # the Ray engine reads the files flat (a/b.png as a__b.png)
        return name.replace("/", "__") if on_ray else name

    originals = {row_name(item.name): item.image for item in folder.images}
    sources = {row_name(name): data for name, data in collected.files.items()}
    names = [str(row["image"]) for row in sum(extremes(run.report, shown), [])]
    return KeptAudit(run, model_name, config, {name: originals[name] for name in names if name in originals},
                     {name: sources[name] for name in names if name in sources}, gallery, compared)


def thumbnail_path(row: dict[str, Any]) -> str | None:
    """Where the audit saved this row's thumbnail (flips only), as a key of ``AuditRun.files``."""
    if row.get("success") != 1 or not row.get("adversarial_png"):
        return None
    return f"thumbnails/{Path(str(row['adversarial_png'])).name}"


def extremes(report: AuditReport, count: int = 4) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(most fragile, least fragile) attacked rows, ``count`` each at most and never the same image twice.

    Most fragile: fewest pixels first. Least fragile: not fooled first, then most pixels. With
    few images the two halves split them (3 images: 2 most, 1 least).
    """
    attacked = [r for r in report.rows if r["status"] == "attacked"]
    most = report.flipped[:min(count, max(1, len(attacked) // 2 + len(attacked) % 2))]
    robust = sorted(attacked, key=lambda r: (r["success"] == 1, -(r["pixels"] or 0) if r["pixels"] != "" else 0,
                                             r["image"]))
    least = [r for r in robust if r not in most][:count]
    return most, least


def success_rate(report: AuditReport) -> tuple[int, int]:
    """(images fooled, images attacked)."""
    attacked = [r for r in report.rows if r["status"] == "attacked"]
    return len(report.flipped), len(attacked)


def reopen(model: ImageClassifier, original: torch.Tensor, run: AuditRun, row: dict[str, Any]) -> AttackResult:
    """One audited image's result, rebuilt from its original (model input) and its saved adversarial PNG.

    Both images go through one fresh forward pass, so success and confidences are measured
    again on the 8-bit images, as every attack result is.
    """
    data = run.file(str(row["adversarial_png"]))
    if data is None:
        raise ValueError(f"{row['image']} has no saved adversarial image (it was not attacked).")
    adversarial = to_tensor(load_image(data).image)
    if adversarial.shape != original.shape:
        raise ValueError(f"{row['image']}: the saved adversarial does not match the model input's size.")
    images = torch.stack([original, adversarial]).to(model.device)
    labels = torch.tensor([int(row["true_label"])])
    with torch.no_grad():
        logits = model(images).cpu()
    probs = logits.softmax(dim=1)
    return AttackResult(
        attack=str(run.report.meta.get("attack", "sparse")), model_name=model.name,
        originals=original[None].cpu(), adversarials=adversarial[None], labels=labels, targets=None,
        success=is_adversarial(logits[1:], labels, None), clean_probs=probs[:1], adv_probs=probs[1:],
        model_calls=torch.tensor([int(row["model_calls"] or 0)]), seconds=float(row["seconds"] or 0.0),
        params=dict(run.report.meta.get("config", {})),
    )


__all__ = ["AuditRun", "ComparedRun", "compare_runs", "flat_names", "RAY_ENV", "REPORT_FILES", "ray_address", "run_on_ray", "extremes", "reopen", "run_in_memory", "success_rate", "thumbnail_path"]
