"""`sparseviz predict IMAGE`: the model's top-k on the preprocessed image."""

from __future__ import annotations

import argparse

from ..images import load_image, to_tensor
from ..models import DEFAULT_MODEL, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="classify an image (top-k)")
    parser.add_argument("image", help="an image file (PNG, JPEG, WebP, BMP, GIF, TIFF)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.top <= 1000:
        raise ValueError(f"--top must be in 1..1000; got {args.top}.")
    loaded = load_image(args.image)
    for note in loaded.notes:
        print(f"note: {note}")
    model = load_model(args.model, device=args.device)
    image = model.preprocess(to_tensor(loaded.image))
    probs = model.predict_proba(image[None])[0]
    values, indices = probs.topk(min(args.top, model.num_classes))
    for value, index in zip(values.tolist(), indices.tolist()):
        print(f"{value:7.2%}  {index:4d}  {model.class_names[index]}")
    return 0
