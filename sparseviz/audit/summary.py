"""An audit's summary numbers with their 95% intervals, and its survival table.

Pure functions of the report's rows, shared by ``report.md``/``report.html`` and the Audit
page, so both show the same numbers. Intervals come from :mod:`.intervals` (the bootstrap's
one home).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..images.processing import EVERYDAY
from .intervals import Estimate, flipped_within, median_pixels, share

BUDGETS = (1, 5, 10, 20, 50, 100)  # k of "share flipped with at most k pixels"
ECDF_LABEL = "share of images flipped with at most k pixels (1 − robust accuracy at budget k)"


def attacked_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "attacked"]


def attacked_pixels(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """One value per attacked image: its pixels when flipped, ``inf`` when the attack failed."""
    return np.array([float(r["pixels"]) if r["success"] == 1 and r["pixels"] != "" else np.inf
                     for r in attacked_rows(rows)], dtype=float)


def summary_estimates(rows: Sequence[dict[str, Any]], budgets: Sequence[int] = BUDGETS
                      ) -> list[tuple[str, Estimate, str]]:
    """(measure, estimate, how to print it: "percent" or "number") for the summary table."""
    pixels = attacked_pixels(rows)
    out: list[tuple[str, Estimate, str]] = [
        ("success rate (images fooled / attacked)", share(np.isfinite(pixels).astype(float)), "percent"),
        ("median pixels (fooled images)", median_pixels(pixels), "number"),
    ]
    for k, estimate in zip(budgets, flipped_within(pixels, budgets)):
        out.append((f"flipped with at most {k} pixel{'s' if k > 1 else ''}", estimate, "percent"))
    return out


def summary_table(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Rows [measure, value [95% interval]] for the report and the page."""
    return [[name, estimate.percent() if kind == "percent" else estimate.text("{:g}")]
            for name, estimate, kind in summary_estimates(rows)]


def survival_estimates(rows: Sequence[dict[str, Any]]) -> list[tuple[str, int, Estimate, Estimate, str, Estimate]]:
    """Per transform: (title, flips checked, share still fooling, share of clean controls still right,
    the class most flips land in after it, share still fooling among flips whose clean control stays right).

    The last one is the attack's own survival: where the step alone already misleads the model on
    the clean photo, a "surviving" flip says little about the attack."""
    flips = [r for r in rows if r["success"] == 1 and r.get("survives_jpeg95", "") != ""]
    out = []
    for name, (title, _) in EVERYDAY.items():
        survives = [float(r[f"survives_{name}"]) for r in flips]
        clean = [float(r[f"clean_ok_{name}"]) for r in flips]
        landed = [str(r[f"class_{name}"]) for r in flips if int(r[f"survives_{name}"]) == 1]
        common = max(sorted(set(landed)), key=landed.count) if landed else "-"
        controlled = [float(r[f"survives_{name}"]) for r in flips if int(r[f"clean_ok_{name}"]) == 1]
        out.append((title, len(flips), share(survives), share(clean), common, share(controlled)))
    return out


SURVIVAL_HEADER = ["processing", "flips checked", "still fooled [95% CI]", "clean photo still right [95% CI]",
                   "still fooled where the clean photo stays right [95% CI]", "most frequent class when it survives"]


def survival_table(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[title, n, fools.percent(), clean.percent(), controlled.percent(), common]
            for title, n, fools, clean, common, controlled in survival_estimates(rows)]


__all__ = ["BUDGETS", "ECDF_LABEL", "SURVIVAL_HEADER", "attacked_pixels", "summary_estimates", "summary_table",
           "survival_estimates", "survival_table"]
