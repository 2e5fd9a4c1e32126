"""What an attack result measures, on the 8-bit image a user can save, and how tables are written.

One home for the numbers the CLI, bench, audit and the app all report: the changed
pixels, the top-k classes, the per-image report dict, the PNG save that is read back
and checked, the transfer criterion, and Markdown/HTML table rendering.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..attacks.base import AttackResult
from ..images import to_pil, to_tensor, to_uint8


def changed_pixels(original: torch.Tensor, adversarial: torch.Tensor) -> list[dict[str, Any]]:
    """Every pixel of two (3, H, W) images whose 8-bit colour differs: y, x, before and after RGB."""
    before, after = to_uint8(original), to_uint8(adversarial)
    return [
        {"y": y, "x": x, "before": before[:, y, x].tolist(), "after": after[:, y, x].tolist()}
        for y, x in (before != after).any(dim=0).nonzero().tolist()
    ]


def top_k(probs: torch.Tensor, class_names: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """Rows {class, index, probability} for the k most probable classes (fewer if the model has fewer)."""
    values, indices = probs.detach().cpu().topk(min(k, probs.numel()))
    return [{"class": class_names[int(i)], "index": int(i), "probability": float(v)} for v, i in zip(values, indices)]


def attack_report(
    result: AttackResult, class_names: Sequence[str], image_name: str, device: str, index: int = 0
) -> dict[str, Any]:
    """The JSON-ready report of one attacked image (``report.json`` of the CLI, the app's download)."""
    report = {"image": image_name, **result.summary(index, list(class_names))}
    report["seed"] = result.params.get("seed")
    report["device"] = device
    report["params"] = result.params
    report["changed_pixels"] = changed_pixels(result.originals[index], result.adversarials[index])
    for key, probs in (("top5_before", result.clean_probs[index]), ("top5_after", result.adv_probs[index])):
        report[key] = [[row["class"], row["probability"]] for row in top_k(probs, class_names)]
    return report


def png_bytes(image: torch.Tensor, *, check: bool = True) -> bytes:
    """A (3, H, W) image in [0, 1] as lossless PNG bytes; with ``check``, decoded again and refused
    unless it holds exactly the 8-bit values every number was measured on."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    if check:
        with Image.open(io.BytesIO(data)) as written:  # our own bytes: read as they are, whatever the size
            if not torch.equal(to_uint8(to_tensor(written)), to_uint8(image.cpu())):
                raise RuntimeError("a PNG does not round-trip exactly; refusing to report numbers for it.")
    return data


def save_verified_png(image: torch.Tensor, path: str | Path) -> torch.Tensor:
    """Save a (3, H, W) image as a checked PNG (see :func:`png_bytes`); returns the image as saved,
    so callers measure (and transfer) exactly what the file holds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    return to_uint8(image.cpu()).float() / 255


def transfer_fooled(clean: int, adversarial: int, label: int, target: int | None) -> bool | None:
    """Whether another model's predictions (clean, adversarial) count as fooled too.

    Untargeted: it got the clean image right and the adversarial one wrong. Targeted:
    it predicts the target on the adversarial image. None when not comparable: it
    already disagrees on the clean image (or already predicts the target).
    """
    if target is None:
        return None if clean != label else adversarial != label
    return None if clean == target else adversarial == target


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; a '|' inside a cell is written as '/' so it cannot split the cell."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)])


def html_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table with every cell escaped."""
    def cells(values: Sequence[Any], tag: str) -> str:
        return "".join(f"<{tag}>{html.escape(str(value))}</{tag}>" for value in values)

    return "<table><tr>" + cells(header, "th") + "</tr>" + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows) + "</table>"


def compare_rows(named: Sequence[tuple[str, AttackResult]], class_names: Sequence[str],
                 index: int = 0) -> list[dict[str, Any]]:
    """One table row per attack result on the same image (the app's dense-vs-sparse comparison)."""
    rows = []
    for name, result in named:
        s = result.summary(index, list(class_names))
        rows.append({"attack": name, "fooled": s["success"], "pixels changed": s["l0_pixels"],
                     "channel entries": s["l0_entries"], "l2": round(s["l2"], 3), "linf": round(s["linf"], 4),
                     "adversarial class": s["adv_name"], "seconds": round(s["seconds"], 2)})
    return rows
