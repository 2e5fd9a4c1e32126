"""Short texts shown to people: an error as one line, an attack's progress as one line.

The CLI, the app's pages and the audit engines all use these, so a message reads the same everywhere.
"""

from __future__ import annotations

import math

from ..attacks.base import AttackProgress


def one_line(error: BaseException) -> str:
    """The first line of an error's message with its spacing collapsed; the type's name when it has none.

    Library errors say what to fix in their first line; what follows (a path, a trace) is for logs.
    """
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    return next((line for line in lines if line), type(error).__name__)


def progress_parts(info: AttackProgress, index: int = 0) -> list[str]:
    """``[phase and step, pixels selected, best so far, true-class confidence]`` for image ``index``.

    Parts that are not known yet (no adversarial found, no confidence measured) are left out.
    """
    parts = [f"{info.phase}: step {info.step}/{info.total_steps}", f"{int(info.current_pixels[index])} pixels selected"]
    best = int(info.best_pixels[index])
    if best >= 0:
        parts.append(f"best so far {best} px")
    confidence = float(info.true_confidence[index])
    if not math.isnan(confidence):
        parts.append(f"true-class confidence {confidence:.1%}")
    return parts


def progress_line(info: AttackProgress, index: int = 0) -> str:
    """One line for a progress bar's label, e.g. ``optimize: step 40/200 | 12 pixels selected | best so far 9 px``."""
    return " | ".join(progress_parts(info, index))
