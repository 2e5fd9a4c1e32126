"""What a classroom demo says: the default photo, one-click presets, and the sentences around a result.

The app only draws these; the wording lives here so it is tested once and the CLI or a
notebook can print the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..attacks.base import AttackResult

# The model (EfficientNet-Lite0) calls coffee.png "espresso" at 94.6%: a confident prediction, so
# the flip shows that a few pixels fool a *sure* model (chelsea, the old default, is a 39/35 cat tie).
DEFAULT_PHOTO = "coffee"
NEAR_TIE_GAP = 0.10  # top-1 minus top-2 probability below this: the model is unsure, say so


@dataclass(frozen=True)
class Preset:
    """One click in the "Try these" row: a photo, a goal and a sparsity weight that show one lesson."""

    label: str  # button text
    lesson: str  # one line shown under the row after the click
    photo: str  # bundled photo name
    target: str | None = None  # class name; None = untargeted
    sparsity_weight: float = 1.0


PRESETS: tuple[Preset, ...] = (
    Preset("Confident flip: espresso", "A model 95% sure of 'espresso' changes its mind over a few dozen pixels.",
           DEFAULT_PHOTO),
    Preset("Camera -> 'banana'", "A targeted attack: the pixels are chosen to make the model see a banana.",
           "camera", target="banana"),
    Preset("High sparsity weight (4)", "A high weight buys fewer pixels; the flip is usually just over the line.",
           DEFAULT_PHOTO, sparsity_weight=4.0),
    Preset("Low sparsity weight (0.25)", "A low weight spends more pixels for a more confident wrong answer.",
           DEFAULT_PHOTO, sparsity_weight=0.25),
)


def percent(probability: float) -> str:
    """94.6% -> "95%", but never rounds a small non-zero share to "0%"."""
    value = 100 * probability
    return f"{value:.0f}%" if value >= 1 or value == 0 else f"{value:.1f}%"


def top2(probs: torch.Tensor, class_names: Sequence[str]) -> tuple[tuple[str, float], tuple[str, float]]:
    values, indices = probs.detach().float().cpu().topk(2)
    return ((class_names[int(indices[0])], float(values[0])), (class_names[int(indices[1])], float(values[1])))


def is_near_tie(probs: torch.Tensor, gap: float = NEAR_TIE_GAP) -> bool:
    """True when the runner-up is within ``gap`` of the top class: a flip then proves little."""
    values = probs.detach().float().cpu().topk(2).values
    return float(values[0] - values[1]) < gap


def clean_verdict(probs: torch.Tensor, class_names: Sequence[str]) -> str:
    """ "The model is 95% sure this is espresso (runner-up: cup 2%)." plus a near-tie warning."""
    (first, p1), (second, p2) = top2(probs, class_names)
    line = f"The model is **{percent(p1)}** sure this is **{first}** (runner-up: {second} {percent(p2)})."
    if is_near_tie(probs):
        line += (f" **Near tie:** the model is unsure between {first} and {second}, so a flip here shows "
                 "uncertainty more than fragility. Try a photo it is sure about.")
    return line


def flip_headline(result: AttackResult, class_names: Sequence[str], index: int = 0) -> str:
    """ "espresso 95% -> soup bowl 29% with 85 pixels", the one line a class remembers."""
    summary = result.summary(index, list(class_names))
    before = f"{summary['true_name']} {percent(summary['true_confidence'])}"
    pixels = summary["l0_pixels"]
    if not summary["success"]:
        return f"{before}: not fooled" + (" (stopped early)" if summary["interrupted"] else "")
    return (f"{before} -> {summary['adv_name']} {percent(summary['adv_confidence'])} with {pixels} "
            f"pixel{'s' if pixels != 1 else ''}")



# Large type for a projector: the key numbers must read from the back of a room (checked at
# 1280x720 and 1920x1080 in tests/test_browser.py). Scoped to containers keyed "big_*".
PROJECTOR_CSS = """
<style>
[class*="st-key-big_"] [data-testid="stMetricValue"] { font-size: 3.4rem; font-weight: 700; line-height: 1.1; }
[class*="st-key-big_"] [data-testid="stMetricLabel"] p { font-size: 1.2rem; }
.sv-headline { font-size: 2.2rem; font-weight: 700; line-height: 1.25; margin: 0.2em 0 0.4em 0; }
.sv-verdict { font-size: 1.35rem; line-height: 1.4; }
</style>
"""

__all__ = ["DEFAULT_PHOTO", "NEAR_TIE_GAP", "PRESETS", "PROJECTOR_CSS", "Preset", "clean_verdict", "flip_headline", "is_near_tie",
           "percent", "top2"]
