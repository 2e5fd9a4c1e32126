"""`sparseviz explain IMAGE --out DIR`: sparse attack, then why it worked.

Writes explanation.json (every number), pixels.csv (one row per changed pixel),
ablation.csv (the group ablation) and PNG figures (maps, pixels, ablation, contributions).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from ..explain.contributions import SPLIT_METHODS, SplitConfig
from ..explain.interpret import METHODS, ExplainConfig, Explanation
from ..explain.proof import VERDICTS


def register(subparsers: argparse._SubParsersAction) -> None:
    from .attack import add_photo_arguments

    defaults, split = ExplainConfig(), SplitConfig()
    parser = subparsers.add_parser("explain", help="attack one photo and explain the changed pixels (obscuring/leading)")
    add_photo_arguments(parser, "folder for explanation.json, pixels.csv, ablation.csv and the PNG figures")
    parser.add_argument("--method", default="gradcam", choices=METHODS, help="attribution maps (default gradcam)")
    parser.add_argument("--split", default=split.method, choices=SPLIT_METHODS,
                        help=f"how the flip is shared among the pixels (default {split.method})")
    parser.add_argument("--ig-steps", type=int, default=split.ig_steps,
                        help=f"Integrated Gradients steps for the split (default {split.ig_steps})")
    parser.add_argument("--permutations", type=int, default=split.shapley_permutations,
                        help=f"sampled Shapley permutations above {split.exact_max_pixels} pixels "
                             f"(default {split.shapley_permutations})")
    parser.add_argument("--smoothgrad", type=int, default=defaults.smoothgrad_samples, metavar="N",
                        help=f"noisy samples of the smoothgrad maps (default {defaults.smoothgrad_samples})")
    parser.set_defaults(handler=run)


def write_explanation(explanation: Explanation, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the explanation's JSON (per-pixel table, ablation, joint action, rules) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**(extra or {}), **explanation.to_dict()}, indent=2))
    return path


def write_tables(explanation: Explanation, folder: str | Path) -> list[Path]:
    """pixels.csv (one row per changed pixel) and ablation.csv (one row per group)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in (("pixels.csv", [p.as_dict() for p in explanation.pixels]),
                       ("ablation.csv", [dict(r.__dict__) for r in explanation.ablation])):
        path = folder / name
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}
                             for row in rows)
        written.append(path)
    return written


def _progress(fraction: float, stage: str) -> None:
    print(f"\r  {stage}: {fraction:4.0%}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..attacks import options
    from ..attacks.sparse import SparseConfig, sparse_attack
    from ..views.figures import save_figures
    from ..images import save_png
    from ..explain.interpret import explain
    from .attack import load_photo

    try:
        split = SplitConfig(method=args.split, ig_steps=args.ig_steps, shapley_permutations=args.permutations)
        config = ExplainConfig(split=split, smoothgrad_samples=args.smoothgrad)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model, image, label, target = load_photo(args)
    result = sparse_attack(model, image, label, targets=target, config=options.from_arguments(SparseConfig, args))
    if not bool(result.success[0]):
        print("the attack did not fool the model; nothing to explain.")
        return 1
    explanation = explain(model, result, 0, method=args.method, config=config,
                          progress=None if getattr(args, "quiet", False) else _progress)
    print(file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    save_png(result.originals[0], args.out / "original.png")
    save_png(result.adversarials[0], args.out / "adversarial.png")
    write_explanation(explanation, args.out / "explanation.json",
                      {"image": str(args.image), "attack": result.summary(0, model.class_names)})
    tables = write_tables(explanation, args.out)
    figures = save_figures(explanation, result, args.out)
    for note in explanation.warnings:
        print(f"note: {note}")
    c = explanation.counts
    agreement = "n/a" if explanation.agreement is None else f"{explanation.agreement:.2f}"
    print(f"{explanation.true_name} -> {explanation.adv_name} with {len(explanation.pixels)} px: "
          f"{c['obscuring']} obscuring, {c['leading']} leading, {c['both']} both, {c['neither']} neither; "
          f"split {VERDICTS[explanation.verdict]} on this image; "
          f"{args.method} maps agree {agreement} (Spearman)")
    print(explanation.sentence)
    print(f"wrote {args.out / 'explanation.json'}, {', '.join(p.name for p in tables + figures)}")
    return 0
