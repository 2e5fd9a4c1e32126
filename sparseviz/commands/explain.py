"""`sparseviz explain IMAGE --out DIR`: sparse attack, then why it worked (explanation.json + PNG figures)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..interpret import METHODS, ExplainConfig, Explanation


def register(subparsers: argparse._SubParsersAction) -> None:
    from .attack import add_photo_arguments

    defaults = ExplainConfig()
    parser = subparsers.add_parser("explain", help="attack one photo and explain the changed pixels (obscuring/leading)")
    add_photo_arguments(parser, "folder for explanation.json, maps.png, pixels.png, ablation.png")
    parser.add_argument("--method", default="gradcam", choices=METHODS, help="attribution method (default gradcam)")
    parser.add_argument("--attribution-threshold", type=float, default=defaults.attribution_threshold,
                        help=f"percentile rank that counts as evidence on a map (default {defaults.attribution_threshold})")
    parser.add_argument("--causal-threshold", type=float, default=defaults.causal_threshold,
                        help=f"share of the attack's logit shift one pixel must undo (default {defaults.causal_threshold})")
    parser.add_argument("--smoothgrad", type=int, default=0, metavar="N", help="SmoothGrad samples (0 = off)")
    parser.set_defaults(handler=run)


def write_explanation(explanation: Explanation, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the explanation's JSON (per-pixel table, ablation, top-k, rules) to ``path``; reusable by `attack`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**(extra or {}), **explanation.to_dict()}, indent=2))
    return path


def run(args: argparse.Namespace) -> int:
    from ..attacks import options
    from ..attacks.sparse import SparseConfig, sparse_attack
    from ..figures import save_figures
    from ..images import save_png
    from ..interpret import explain
    from .attack import load_photo

    config = ExplainConfig(attribution_threshold=args.attribution_threshold, causal_threshold=args.causal_threshold,
                           smoothgrad_samples=args.smoothgrad)
    model, image, label, target = load_photo(args)
    result = sparse_attack(model, image, label, targets=target, config=options.from_arguments(SparseConfig, args))
    if not bool(result.success[0]):
        print("the attack did not fool the model; nothing to explain.")
        return 1
    explanation = explain(model, result, 0, method=args.method, config=config)
    args.out.mkdir(parents=True, exist_ok=True)
    save_png(result.originals[0], args.out / "original.png")
    save_png(result.adversarials[0], args.out / "adversarial.png")
    write_explanation(explanation, args.out / "explanation.json",
                      {"image": str(args.image), "attack": result.summary(0, model.class_names)})
    figures = save_figures(explanation, result, args.out)
    for note in explanation.warnings:
        print(f"warning: {note}")
    c = explanation.counts
    print(f"{explanation.true_name} -> {explanation.adv_name} with {len(explanation.pixels)} px: "
          f"{c['obscuring']} obscuring, {c['leading']} leading, {c['both']} both, {c['neither']} neither; "
          f"views agree on {explanation.agreement:.0%}")
    print(f"wrote {args.out / 'explanation.json'} and {', '.join(p.name for p in figures)}")
    return 0
