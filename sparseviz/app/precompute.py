"""Regenerate the shipped demo results: ``python -m sparseviz.app.precompute [--check] [NAME ...]``.

Runs each "Try these" preset (the default demo first) through the app's own attack job
(:func:`sparseviz.app.tasks.attack`, the config the page builds, one torch thread as the app's
workers) on the CPU, and writes ``assets/.demo/NAME.png`` and ``NAME.json``. ``--check`` writes
nothing and exits 1 when a shipped file differs from a fresh run (stale), as the test does.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..attacks.base import AttackResult
from ..models import DEFAULT_MODEL, ImageClassifier, load_model
from ..models.threads import attack_threads
from . import shipped, tasks


def regenerate(item: shipped.Shipped, model: ImageClassifier) -> AttackResult:
    """``item``'s attack run afresh exactly as the page runs it (same job function, config, label, target)."""
    image = shipped.clean_image(model, item.preset.photo)
    label = int(model.predict_proba(image).argmax(1)[0])
    target = None if item.preset.target is None else model.class_index(item.preset.target)
    with attack_threads(shipped.THREADS):
        return tasks.attack(tasks.Unattended(), model, "cpu", image, label, target, item.config())


def is_stale(item: shipped.Shipped, fresh: AttackResult) -> bool:
    """True when the shipped PNG is missing or holds other pixels than ``fresh``'s adversarial image."""
    if not item.png.is_file():
        return True
    return not torch.equal(shipped.read_png(item.png.read_bytes()), fresh.adversarials[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparseviz.app.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these demos (default: all): "
                        + ", ".join(item.name for item in shipped.all_shipped()))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a shipped file is stale")
    args = parser.parse_args(argv)
    items = [item for item in shipped.all_shipped() if not args.names or item.name in args.names]
    unknown = set(args.names) - {item.name for item in items}
    if unknown:
        parser.error(f"no demo named {', '.join(sorted(unknown))}")
    model = load_model(DEFAULT_MODEL, device="cpu")
    stale = 0
    for item in items:
        started = time.perf_counter()
        fresh = regenerate(item, model)
        summary = fresh.summary(0, model.class_names)
        line = (f"{item.name}: {summary['true_name']} -> {summary['adv_name']}, {summary['l0_pixels']} px, "
                f"{time.perf_counter() - started:.1f} s")
        if args.check:
            stale += is_stale(item, fresh)
            print(f"{line}: {'STALE' if is_stale(item, fresh) else 'up to date'}")
        else:
            shipped.write(item, model, fresh)
            shipped.verified(item, model)  # what the app will do with it
            print(f"{line}: wrote {item.png.name} ({item.png.stat().st_size // 1024} KiB) and {item.report.name}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
