"""`sparseviz attack IMAGE --out DIR`: run the sparse attack on one photo and save the evidence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from ..attacks import options
from ..attacks.base import AttackProgress
from ..attacks.sparse import SparseConfig, sparse_attack
from ..images import load_image, save_png, to_tensor
from ..models import DEFAULT_MODEL, ImageClassifier, load_model
from ..views.report import attack_report, save_verified_png
from ..views.text import progress_parts


def add_photo_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The arguments every one-photo command shares (attack, explain), with every sparse-attack option."""
    parser.add_argument("image", help="an image file (PNG, JPEG, WebP, BMP, GIF, TIFF)")
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME", help=f"a name from `sparseviz models` (default {DEFAULT_MODEL})")
    parser.add_argument("--target", help="targeted attack: a class index or name (default: untargeted)")
    parser.add_argument("--label", help="the true class (index or name); default: the model's clean prediction")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    options.add_arguments(parser, SparseConfig)


def load_photo(args: argparse.Namespace) -> tuple[ImageClassifier, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Model, preprocessed image (1, 3, H, W), label and optional target from the shared arguments."""
    loaded = load_image(args.image)
    for note in loaded.notes:
        print(f"note: {note}")
    model = load_model(args.model, device=args.device)
    image = model.preprocess(to_tensor(loaded.image))[None]
    label = model.class_index(args.label) if args.label is not None else int(model.predict_proba(image).argmax())
    target = None if args.target is None else model.class_index(args.target)
    if target is not None and target == label:
        raise ValueError(f"the target class {target} ({model.class_names[target]}) is already the true class.")
    return model, image, torch.tensor([label]), None if target is None else torch.tensor([target])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("attack", help="change as few pixels as possible to fool the model")
    add_photo_arguments(parser, "folder for original.png, adversarial.png, mask.png, report.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = options.from_arguments(SparseConfig, args)
    model, image, label, target = load_photo(args)
    bar = tqdm(total=config.total_steps_for(target is not None), desc="sparse attack", unit="step", disable=args.quiet)

    def on_progress(info: AttackProgress) -> None:
        bar.set_postfix_str(" | ".join(progress_parts(info)[1:]))  # the bar itself shows the step
        if info.phase == "optimize":
            bar.update(info.step - bar.n)
        else:  # later phases count model calls, not steps: name the phase and keep the bar
            bar.set_description(f"sparse attack ({info.phase})")

    result = sparse_attack(model, image, label, targets=target, config=config, progress=on_progress)
    bar.close()

    args.out.mkdir(parents=True, exist_ok=True)
    # Every number is measured on the images as saved: they are read back and must match.
    save_verified_png(result.originals[0], args.out / "original.png")
    save_verified_png(result.adversarials[0], args.out / "adversarial.png")
    save_png(result.pixel_mask[0].float().expand(3, -1, -1), args.out / "mask.png")
    report = attack_report(result, model.class_names, str(args.image), str(model.device))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))

    verdict = "fooled" if report["success"] else "NOT fooled"
    print(
        f"{verdict}: {report['true_name']} ({report['true_confidence']:.1%}) -> {report['adv_name']} "
        f"({report['adv_confidence']:.1%}) with {report['l0_pixels']} pixels in {report['seconds']:.1f} s; "
        f"wrote {args.out}/"
    )
    return 0 if report["success"] else 1
