"""How close each attack comes to the fewest pixels known for each photo (AttackBench's "optimality").

The best-known count of a photo is the fewest changed pixels any run ever reached on it
(every attack of the registry, plus long runs of the sparse attack with a much larger
budget and several seeds). It lives in a CSV next to this script's results, and only ever
goes down: a later run that finds fewer pixels replaces the entry (``--update``).

    python benchmarks/optimality.py RUN.csv [RUN.csv ...] --best-known TABLE.csv [--update] [--out REPORT.md]

Each RUN.csv is a ``sparseviz bench`` results.csv; a ``LABEL=path`` argument renames its
attacks to ``LABEL`` (for long runs of the same attack with other settings). Ratios are
pixels / best-known on the saved 8-bit images; a failure counts as an infinite ratio, so
the median and 90th percentile are over every attacked photo.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

BANDS = ("high", "mid", "low")


def read_runs(arguments: list[str]) -> list[dict[str, str]]:
    """Attacked rows of every run, with ``attack`` relabelled where the argument says so."""
    rows = []
    for argument in arguments:
        label, _, path = argument.rpartition("=") if "=" in argument else ("", "", argument)
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["status"] != "attacked":
                    continue
                if label:
                    row["attack"] = label
                rows.append(row)
    return rows


def read_best(path: Path) -> dict[str, tuple[int, str]]:
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["image"]: (int(row["best_pixels"]), row["source"]) for row in csv.DictReader(handle)}


def update_best(best: dict[str, tuple[int, str]], rows: list[dict[str, str]]) -> dict[str, tuple[int, str]]:
    """The fewer of the table's count and every successful row's, per photo."""
    merged = dict(best)
    for row in rows:
        if row["success"] != "1":
            continue
        pixels = int(row["l0_pixels"])
        if row["image"] not in merged or pixels < merged[row["image"]][0]:
            merged[row["image"]] = (pixels, row["attack"])
    return merged


def write_best(path: Path, best: dict[str, tuple[int, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "best_pixels", "source"])
        for image in sorted(best):
            writer.writerow([image, *best[image]])


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (inf-safe: failures stay infinite)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(rows: list[dict[str, str]], best: dict[str, tuple[int, str]]) -> str:
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    success: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row["image"] not in best:
            continue
        ok = row["success"] == "1"
        ratio = int(row["l0_pixels"]) / max(1, best[row["image"]][0]) if ok else math.inf
        for key in ((row["attack"], "all"), (row["attack"], row["band"])):
            ratios[key].append(ratio)
        success[row["attack"]].append(int(ok))

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        median, p90 = statistics.median(values) if math.inf not in values else quantile(values, 0.5), quantile(values, 0.9)
        return f"{median:.2f} / {p90:.2f}".replace("inf", "∞")

    lines = [
        "| attack | success | ratio median / p90, all | high | mid | low | photos within 1.25x |",
        "|---|---|---|---|---|---|---|",
    ]
    for attack in sorted(success, key=lambda name: quantile(ratios[(name, "all")], 0.5)):
        values = ratios[(attack, "all")]
        within = sum(v <= 1.25 for v in values)
        lines.append(
            f"| {attack} | {sum(success[attack])}/{len(success[attack])} | {cell(values)} | "
            + " | ".join(cell(ratios[(attack, band)]) for band in BANDS)
            + f" | {within}/{len(values)} |"
        )
    counts = [pixels for pixels, _ in best.values()]
    lines.append("")
    lines.append(f"Best-known pixels over {len(counts)} photos: median {statistics.median(counts):g}, max {max(counts)}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="bench results.csv files, optionally LABEL=path")
    parser.add_argument("--best-known", required=True, type=Path, help="the best-known table (CSV)")
    parser.add_argument("--update", action="store_true", help="lower the table's entries where these runs did better")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    rows = read_runs(args.runs)
    best = read_best(args.best_known)
    if args.update:
        best = update_best(best, rows)
        write_best(args.best_known, best)
    text = report(rows, best)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
