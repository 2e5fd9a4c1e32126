"""Two or more models audited on one folder: which is more fragile, and do their flips transfer?

Built from each model's own audit (the same rows ``sparseviz audit --model`` writes) plus one
forward pass per flip and other model for the cross-transfer check, so it works the same
whichever engine ran the audits. Pure functions of those rows except :func:`transfer_flags`.

- Paired comparison, per pair of models over the images both attacked: the median of the
  per-image pixel differences (images both fooled) with its bootstrap interval, and the share
  of images where each model needs fewer pixels (a model not fooled needs "infinitely many").
- Cross-transfer: the share of model A's adversarial images that also fool model B. A's image
  goes into B at A's size (as the app's transfer tab does: resizing would blur the few changed
  pixels away), and only where B gets A's clean image right (else there is nothing to fool).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..images import load_image, to_tensor
from ..models import ImageClassifier
from ..views.report import transfer_fooled
from .intervals import Estimate, paired_median_difference, share
from .run import AuditReport


@dataclass
class ModelAudit:
    """One model's audit of the folder and the images the transfer check needs."""

    name: str
    report: AuditReport
    originals: dict[str, torch.Tensor] = field(default_factory=dict)  # image -> clean model input (3, H, W)
    adversarials: dict[str, torch.Tensor] = field(default_factory=dict)  # image -> saved adversarial (flips only)


def read_adversarials(report: AuditReport, read: Callable[[str], bytes | None]) -> dict[str, torch.Tensor]:
    """The saved adversarial PNG of every flip, decoded (``read`` maps a path under the output folder to bytes)."""
    out = {}
    for row in report.flipped:
        data = read(str(row["adversarial_png"]))
        if data is not None:
            out[str(row["image"])] = to_tensor(load_image(data).image)
    return out


def _pixels(row: dict[str, Any] | None) -> float | None:
    """Pixels to flip an attacked image (inf when not fooled); None when it was not attacked."""
    if row is None or row["status"] != "attacked":
        return None
    return float(row["pixels"]) if row["success"] == 1 and row["pixels"] != "" else math.inf


@torch.no_grad()
def transfer_flags(source: ModelAudit, target_name: str, target: ImageClassifier) -> dict[str, bool | None]:
    """Per flip of ``source``: does its adversarial image fool ``target`` too (None: target gets the clean one wrong)?

    One batched forward pass per image (clean and adversarial together), so flags do not depend on batch mates.
    """
    flags: dict[str, bool | None] = {}
    for row in source.report.flipped:
        image = str(row["image"])
        if image not in source.originals or image not in source.adversarials:
            continue
        pair = torch.stack([source.originals[image], source.adversarials[image]]).to(target.device)
        clean, adversarial = (int(p) for p in target(pair).argmax(dim=1).cpu())
        flags[image] = transfer_fooled(clean, adversarial, int(row["true_label"]), None)
    return flags


@dataclass(frozen=True)
class Pair:
    """Model ``a`` against model ``b`` on the images both attacked."""

    a: str
    b: str
    images: int  # attacked by both
    both_fooled: int
    difference: Estimate  # median over images both fooled of pixels(a) - pixels(b)
    a_fewer: Estimate  # share of images where a needs fewer pixels than b
    b_fewer: Estimate
    ties: int


@dataclass(frozen=True)
class Comparison:
    models: list[str]
    rows: list[dict[str, Any]]  # per image: each model's status, success, pixels; each transfer flag
    pairs: list[Pair]
    transfer: dict[tuple[str, str], tuple[int, int]]  # (a, b) -> (a's flips that fool b, a's flips b got right clean)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else ["image"]

    def transfer_share(self, a: str, b: str) -> Estimate:
        flags = [float(r[f"transfer_{a}_to_{b}"]) for r in self.rows if r.get(f"transfer_{a}_to_{b}", "") != ""]
        return share(flags)


def compare(audits: Sequence[ModelAudit], transfers: dict[tuple[str, str], dict[str, bool | None]]) -> Comparison:
    """The paired table, per-pair summaries and the transfer matrix from each model's audit."""
    names = [audit.name for audit in audits]
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"compare needs two or more different models; got {', '.join(names) or 'none'}.")
    by_model = {audit.name: {str(r["image"]): r for r in audit.report.rows} for audit in audits}
    order: list[str] = []
    for audit in audits:
        order += [str(r["image"]) for r in audit.report.rows if str(r["image"]) not in order]
    rows = []
    for image in order:
        row: dict[str, Any] = {"image": image}
        for name in names:
            own = by_model[name].get(image)
            row[f"status_{name}"] = "" if own is None else own["status"]
            row[f"success_{name}"] = "" if own is None else own["success"]
            row[f"pixels_{name}"] = "" if own is None else own["pixels"]
            row[f"adv_name_{name}"] = "" if own is None else own["adv_name"]
        for a, b in itertools.permutations(names, 2):
            flag = transfers.get((a, b), {}).get(image)
            row[f"transfer_{a}_to_{b}"] = "" if flag is None else int(flag)
        rows.append(row)
    pairs = [_pair(a, b, by_model[a], by_model[b], order) for a, b in itertools.combinations(names, 2)]
    matrix = {}
    for a, b in itertools.permutations(names, 2):
        flags = [flag for flag in transfers.get((a, b), {}).values() if flag is not None]
        matrix[(a, b)] = (sum(flags), len(flags))
    return Comparison(names, rows, pairs, matrix)


def _pair(a: str, b: str, rows_a: dict[str, dict[str, Any]], rows_b: dict[str, dict[str, Any]],
          order: Sequence[str]) -> Pair:
    both = [(pa, pb) for pa, pb in ((_pixels(rows_a.get(i)), _pixels(rows_b.get(i))) for i in order)
            if pa is not None and pb is not None]
    fooled = [(pa, pb) for pa, pb in both if math.isfinite(pa) and math.isfinite(pb)]
    difference = paired_median_difference([pa for pa, _ in fooled], [pb for _, pb in fooled])
    a_fewer = share([float(pa < pb) for pa, pb in both])
    b_fewer = share([float(pb < pa) for pa, pb in both])
    return Pair(a, b, len(both), len(fooled), difference, a_fewer, b_fewer, sum(pa == pb for pa, pb in both))


def paired_points(comparison: Comparison, a: str, b: str) -> list[tuple[str, float, float]]:
    """(image, pixels a, pixels b) for images both models flipped: the paired scatter plot's points."""
    points = []
    for row in comparison.rows:
        if row[f"success_{a}"] == 1 and row[f"success_{b}"] == 1:
            points.append((str(row["image"]), float(row[f"pixels_{a}"]), float(row[f"pixels_{b}"])))
    return points


PAIR_HEADER = ["model A", "model B", "images attacked by both", "fooled by both",
               "median pixels A − B [95% CI]", "A needs fewer [95% CI]", "B needs fewer [95% CI]", "ties"]


def pair_table(comparison: Comparison) -> list[list[Any]]:
    return [[p.a, p.b, p.images, p.both_fooled, p.difference.text("{:g}"), p.a_fewer.percent(), p.b_fewer.percent(),
             p.ties] for p in comparison.pairs]


def transfer_table(comparison: Comparison) -> list[list[Any]]:
    """Rows: the model that made the image; columns: the model it is shown to (diagonal: -)."""
    table = []
    for a in comparison.models:
        cells: list[Any] = [a]
        for b in comparison.models:
            if a == b:
                cells.append("-")
            else:
                fooled, comparable = comparison.transfer[(a, b)]
                estimate = comparison.transfer_share(a, b)
                cells.append(f"{fooled}/{comparable} = {estimate.percent()}" if comparable else "no flips to check")
        table.append(cells)
    return table


def transfer_header(comparison: Comparison) -> list[str]:
    return ["adversarial made on \\ shown to"] + comparison.models


__all__ = ["Comparison", "ModelAudit", "PAIR_HEADER", "Pair", "compare", "pair_table", "paired_points",
           "read_adversarials", "transfer_flags", "transfer_header", "transfer_table"]
