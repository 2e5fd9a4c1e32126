"""Several models audited on one folder, on either engine, then compared.

Each model gets the ordinary one-model audit (its rows, report and adversarials in
``out/<model>/``); the comparison is then computed here, on the driver, from those files:
so both engines give the same comparison whenever they give the same rows.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..images.folders import LoadedFolder, load_folder
from ..models import ImageClassifier
from ..models.threads import ATTACK_THREADS
from .compare import Comparison, ModelAudit, compare, read_adversarials, transfer_flags
from .compare_report import write_comparison
from .run import AuditReport, run_audit, write_audit


def parse_models(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: names kept in order, blanks and repeats refused with one line."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"--models takes names separated by commas, e.g. efficientnet_lite0,efficientnet_lite1; "
                         f"got {text!r}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--models names {', '.join(repeated)} more than once.")
    return names


def comparison_of(audits: Sequence[ModelAudit], models: Mapping[str, ImageClassifier]) -> Comparison:
    """Cross-transfer for every ordered pair, then the paired table (the same call for every engine)."""
    transfers = {(a.name, b.name): transfer_flags(a, b.name, models[b.name])
                 for a, b in itertools.permutations(audits, 2)}
    return compare(audits, transfers)


def _from_disk(name: str, report: AuditReport, folder: LoadedFolder, out: Path) -> ModelAudit:
    def read(relative: str) -> bytes | None:
        path = out / relative
        return path.read_bytes() if path.is_file() else None

    return ModelAudit(name, report, {item.name: item.image for item in folder.images}, read_adversarials(report, read))


def _named(on_step: Callable[[str, str], None] | None, model: str) -> Callable[[str], None] | None:
    if on_step is None:
        return None
    return lambda image: on_step(model, image)


def run_local(models: Mapping[str, ImageClassifier], folder: str | Path, *, out: str | Path, config: Any = None,
              attack: str = "sparse", limit: int | None = None, workers: int = 1, threads: int = ATTACK_THREADS,
              easiest: int = 8, on_step: Callable[[str, str], None] | None = None
              ) -> tuple[Comparison, dict[str, AuditReport]]:
    """Audit ``folder`` with each model in turn here (``workers`` processes each), write every file, compare."""
    out = Path(out)
    started = time.perf_counter()
    audits, reports = [], {}
    for name, model in models.items():
        loaded = load_folder(folder, model, limit=limit)
        if not loaded.images:
            raise ValueError(f"no readable images in {folder}.")
        report = run_audit(model, loaded, out=out / name, config=config, attack=attack, on_step=_named(on_step, name),
                           workers=workers, threads=threads)
        write_audit(report, out / name, easiest=easiest)
        reports[name] = report
        audits.append(_from_disk(name, report, loaded, out / name))
    comparison = comparison_of(audits, models)
    write_comparison(comparison, reports, out, seconds=time.perf_counter() - started)
    return comparison, reports


def compare_finished(models: Mapping[str, ImageClassifier], folder: str | Path, reports: Mapping[str, AuditReport],
                     out: str | Path, *, limit: int | None = None, seconds: float | None = None) -> Comparison:
    """The comparison of audits another engine wrote under ``out/<model>/`` (clean inputs decoded here)."""
    out = Path(out)
    audits = [_from_disk(name, report, load_folder(folder, models[name], limit=limit), out / name)
              for name, report in reports.items()]
    comparison = comparison_of(audits, models)
    write_comparison(comparison, dict(reports), out, seconds=seconds)
    return comparison


__all__ = ["compare_finished", "comparison_of", "parse_models", "run_local"]
