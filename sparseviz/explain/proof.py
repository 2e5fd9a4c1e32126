"""Check a split by experiment: group ablation, joint action, and one sentence from the numbers.

* Group ablation: the clean image plus only the pixels labelled obscuring (+ both), plus
  only the leading (+ both), plus all of them (= the adversarial image). Evidence is the
  centred logit ``z_c - mean(z)``; probabilities are reported next to it. The split
  **holds on this image** when the obscuring group lowers the true class's evidence more
  than the leading group does **and** the leading group raises the adversarial class's
  evidence more than the obscuring group does. When the two groups are the same pixels
  (every pixel "both", e.g. a one-pixel attack that does both), the comparisons are ties:
  they do **not** count as holding. A failing image with at most 8 changed pixels is checked
  further: if no two groups of its pixels at all pass the test (every pair of the 2^k subsets
  measured; e.g. a one-pixel attack whose pixel does both, or one pixel with most of both
  effects), its ``verdict`` is "inseparable" and it says so; it still counts as not holding.
* Joint action: each pixel pasted alone onto the clean image, as a share of the whole
  attack's margin change ``(e_a - e_y)(adv) - (e_a - e_y)(clean)``; how many pixels flip
  the model alone; and the smallest set of top-contributing pixels (ranked by
  obscuring + leading) that flips it together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .contributions import Contributions, PixelGame


SINGLES_MAX_PIXELS = 32  # pixels pasted alone: the strongest this many by contribution (one forward each)
SEPARABLE_MAX_PIXELS = 8  # every pair of groups up to 2^8 = 256 extra forwards (only on a failing image)
VERDICTS = {"holds": "holds", "fails": "does not hold", "inseparable": "cannot separate the two effects"}  # in words


@dataclass(frozen=True)
class GroupRow:
    group: str  # "clean", "obscuring", "leading", "all"
    pixels: int
    true_evidence: float  # centred logit of the true class
    adv_evidence: float  # centred logit of the adversarial class
    true_drop: float  # true_evidence(clean) - true_evidence(this group)
    adv_rise: float  # adv_evidence(this group) - adv_evidence(clean)
    true_prob: float
    adv_prob: float
    predicted: int


@dataclass(frozen=True)
class Ablation:
    rows: tuple[GroupRow, ...]
    holds: bool
    why: str  # the two comparisons in words (and which one failed)
    verdict: str = "holds"  # "holds", "fails", or "inseparable" (no two groups of these pixels pass; <= 8 px)

    def row(self, group: str) -> GroupRow:
        for row in self.rows:
            if row.group == group:
                return row
        raise KeyError(group)


@dataclass(frozen=True)
class JointAction:
    single_shares: np.ndarray  # (k,) each pixel alone, share of the whole margin change; NaN where not measured
    best_single_share: float  # the largest of them
    best_single: tuple[int, int]  # (y, x) of that pixel
    singles_sum_share: float  # what the measured pixels do one at a time, summed (1 = purely additive)
    alone_flips: int  # measured pixels that flip the prediction on their own
    smallest_flipping_set: int  # fewest top-ranked pixels (by contribution) that flip it together (ladder search)
    pixels: int
    singles_measured: int = 0  # pixels pasted alone: all of them, or the strongest SINGLES_MAX_PIXELS

    @property
    def all_singles(self) -> bool:
        return self.singles_measured >= self.pixels


def _rows(names: list[str], sizes: list[int], logits: torch.Tensor, y: int, a: int) -> tuple[GroupRow, ...]:
    evidence = logits - logits.mean(dim=1, keepdim=True)
    probs = logits.softmax(dim=1)
    e_y0, e_a0 = float(evidence[0, y]), float(evidence[0, a])
    return tuple(GroupRow(group=name, pixels=size, true_evidence=float(evidence[g, y]),
                          adv_evidence=float(evidence[g, a]), true_drop=e_y0 - float(evidence[g, y]),
                          adv_rise=float(evidence[g, a]) - e_a0, true_prob=float(probs[g, y]),
                          adv_prob=float(probs[g, a]), predicted=int(logits[g].argmax()))
                 for g, (name, size) in enumerate(zip(names, sizes)))


def holds_test(obscuring: GroupRow, leading: GroupRow, same_pixels: bool = False) -> tuple[bool, str]:
    """The per-image test of the module docstring, with the reason in words (ties do not hold)."""
    if same_pixels:
        return False, (f"every pixel does both, so the two groups are the same {_count(obscuring.pixels)} "
                       f"(true-class evidence -{obscuring.true_drop:.2f}, adversarial +{obscuring.adv_rise:.2f}) "
                       f"and the test is a tie")
    first = obscuring.true_drop > leading.true_drop
    second = leading.adv_rise > obscuring.adv_rise
    parts = [f"obscuring group lowers true-class evidence by {obscuring.true_drop:.2f} vs {leading.true_drop:.2f} "
             f"for the leading group ({'ok' if first else 'FAILS'})",
             f"leading group raises adversarial evidence by {leading.adv_rise:.2f} vs {obscuring.adv_rise:.2f} "
             f"for the obscuring group ({'ok' if second else 'FAILS'})"]
    return first and second, "; ".join(parts)


def group_masks(labels: list[str]) -> torch.Tensor:
    """(4, k) pixel weights of the groups clean, obscuring(+both), leading(+both), all."""
    obscuring = torch.tensor([lab in ("obscuring", "both") for lab in labels], dtype=torch.float32)
    leading = torch.tensor([lab in ("leading", "both") for lab in labels], dtype=torch.float32)
    return torch.stack([torch.zeros(len(labels)), obscuring, leading, torch.ones(len(labels))])


def dominant_pixel(contributions: Contributions) -> str | None:
    """A pixel with over half of both effects, in words; None if there is none."""
    o, l_ = contributions.shares()
    both = np.nonzero((o > 0.5) & (l_ > 0.5))[0]
    if not both.size:
        return None
    i = int(both[0])
    return (f"pixel ({contributions.ys[i]}, {contributions.xs[i]}) carries {o[i]:.0%} of the drop and {l_[i]:.0%} of "
            f"the rise, so whichever group holds it tends to win both comparisons")


def separable(game: PixelGame) -> bool | None:
    """Whether ANY two groups of the changed pixels pass the test: all 2^k subsets pasted onto the clean image.

    Only up to ``SEPARABLE_MAX_PIXELS`` (None above). This never chooses labels: it only tells a
    failing image whose pixels cannot be split into two such groups at all (e.g. one pixel that
    does both) from one where the labels are at fault.
    """
    k = game.k
    if k > SEPARABLE_MAX_PIXELS:
        return None
    codes = torch.arange(2 ** k)
    z = game.logits(((codes[:, None] >> torch.arange(k)) & 1).float())
    evidence = (z - z.mean(dim=1, keepdim=True))[:, game.classes.cpu()]
    drop, rise = -evidence[:, 0], evidence[:, 1]
    # S obscures more than T and T leads more than S, for some pair of subsets (S, T)
    return bool(((drop[:, None] > drop[None, :]) & (rise[None, :] > rise[:, None])).any())


def group_ablation(logits: torch.Tensor, groups: torch.Tensor, contributions: Contributions, y: int, a: int,
                   can_separate: bool | None = None) -> Ablation:
    """The test of the module docstring from the logits of the four :func:`group_masks` images.

    ``can_separate`` (from :func:`separable`) False makes a failure "inseparable": no two groups pass.
    """
    sizes = [int(g.sum()) for g in groups]
    rows = _rows(["clean", "obscuring", "leading", "all"], sizes, logits, y, a)
    holds, why = holds_test(rows[1], rows[2], bool(torch.equal(groups[1], groups[2])))
    verdict = "holds" if holds else "fails"
    if not holds and can_separate is False:
        verdict = "inseparable"
        why += (f"; no two groups of these {_count(contributions.k)} pass the test (all {2 ** contributions.k} "
                f"subsets measured): the effects cannot be separated on this image")
    dominant = None if holds else dominant_pixel(contributions)
    if dominant and contributions.k > 1:
        why += f"; {dominant}"
    return Ablation(rows=rows, holds=holds, why=why, verdict=verdict)


def _flips(logits: torch.Tensor, y: int, target: int | None) -> torch.Tensor:
    predicted = logits.argmax(dim=1)
    return predicted == target if target is not None else predicted != y


def _ladder(k: int) -> list[int]:
    """Prefix sizes 1, 2, 3, 4, 6, 8, 12, 16, 24, ... below k: a few forwards find the scale of the answer."""
    sizes, size = [], 1
    while size < k:
        sizes.append(size)
        size = size + 1 if size < 4 else size + size // 2
    return sorted(set(sizes))


def _smallest_flipping_prefix(game: PixelGame, order: np.ndarray, y: int, target: int | None) -> int:
    """Fewest top-ranked pixels that flip the model together: a ladder of sizes, then up to 8 evenly spaced
    sizes a pass between the last miss and the first hit, until every size there is checked.

    All k pixels always flip it (that is the adversarial image). Flipping need not be monotone in
    the size, so this is the smallest flipping prefix the search meets (every size below it in its
    final gap misses), found in about 20 forwards instead of one per size.
    """
    k = len(order)

    def flips(sizes: list[int]) -> list[int]:
        prefixes = torch.zeros(len(sizes), k)
        for row, size in enumerate(sizes):
            prefixes[row, torch.from_numpy(order[:size].copy())] = 1.0
        return [sizes[int(i)] for i in _flips(game.logits(prefixes), y, target).nonzero()[:, 0]] if sizes else []

    checked: set[int] = set()

    def first_hit(sizes: list[int], upto: int) -> int:
        sizes = [s for s in sizes if s not in checked]
        checked.update(sizes)
        return min(flips(sizes) + [upto])

    first = first_hit(_ladder(k), k)
    while True:  # narrow (last miss, first hit) with up to 8 evenly spaced sizes a pass, until it is every size
        low = max([s for s in checked if s < first], default=0)
        gap = first - low - 1
        if gap <= 0:
            return first
        step = max(1, -(-gap // 8))
        first = first_hit(list(range(low + step, first, step)) if step > 1 else list(range(low + 1, first)), first)


def prove(game: PixelGame, contributions: Contributions, labels: list[str], *, target: int | None = None
          ) -> tuple[Ablation, JointAction]:
    """Group ablation and joint action for one image, in batched forward passes.

    Each pixel is pasted alone only for the ``SINGLES_MAX_PIXELS`` strongest (by obscuring +
    leading): on a 150-pixel attack the rest would cost 118 forwards. The joint action then
    speaks of those pixels only (``singles_measured``; the sentence says "of the strongest 32").
    """
    k = contributions.k
    y, a = (int(c) for c in game.classes.cpu())
    groups = group_masks(labels)
    order = np.argsort(-(contributions.obscuring + contributions.leading), kind="stable")
    measured = torch.from_numpy(order[:SINGLES_MAX_PIXELS].copy())
    singles = torch.zeros(len(measured), k)
    singles[torch.arange(len(measured)), measured] = 1.0
    logits = game.logits(torch.cat([groups, singles]))
    ablation = group_ablation(logits[:4], groups, contributions, y, a)
    if not ablation.holds:
        ablation = group_ablation(logits[:4], groups, contributions, y, a, separable(game))

    margin = logits[:, a] - logits[:, y]
    whole = max(float(margin[3] - margin[0]), 1e-9)
    shares = np.full(k, np.nan)
    shares[measured.numpy()] = ((margin[4:] - margin[0]) / whole).numpy().astype(np.float64)
    best = int(np.nanargmax(shares))
    smallest = _smallest_flipping_prefix(game, order, y, target)
    joint = JointAction(
        single_shares=shares, best_single_share=float(shares[best]),
        best_single=(int(contributions.ys[best]), int(contributions.xs[best])),
        singles_sum_share=float(np.nansum(shares)), alone_flips=int(_flips(logits[4:], y, target).sum()),
        smallest_flipping_set=smallest, pixels=k, singles_measured=len(measured))
    return ablation, joint


def _where(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> str:
    """'near the top-left' etc. from the centroid of a group of pixels."""
    if ys.size == 0:
        return ""
    row = ("top", "middle", "bottom")[min(2, int(3 * ys.mean() / height))]
    col = ("left", "centre", "right")[min(2, int(3 * xs.mean() / width))]
    return "in the centre" if (row, col) == ("middle", "centre") else f"near the {row}-{col}"


def _count(n: int) -> str:
    return f"{n} pixel{'s' if n != 1 else ''}"


def sentence(contributions: Contributions, labels: list[str], joint: JointAction, true_name: str, adv_name: str,
             size: tuple[int, int]) -> str:
    """One plain-language sentence generated from the numbers."""
    labels_a = np.array(labels)
    parts = []
    for kind, verbs in (("obscuring", ("hides", "hide")), ("leading", ("adds", "add")), ("both", ("does", "do")),
                        ("neither", ("works", "work"))):
        members = labels_a == kind
        n = int(members.sum())
        if n:
            verb = verbs[n != 1] + {"obscuring": f" '{true_name}' evidence", "leading": f" '{adv_name}' evidence",
                                    "both": " both", "neither": " against the flip"}[kind]
            where = _where(contributions.ys[members], contributions.xs[members], *size)
            parts.append(f"{_count(n)} {where} {verb}".replace("  ", " "))
    text = "; ".join(parts)
    pool = "" if joint.all_singles else f" of the strongest {joint.singles_measured}"
    if joint.alone_flips:
        text += f". {_count(joint.alone_flips)}{pool} flip{'s' if joint.alone_flips == 1 else ''} the model alone"
    else:
        they = "they" if joint.all_singles else "those"
        text += (f". No pixel{pool} alone does it (the best does {joint.best_single_share:.0%} of the flip"
                 + (f"; one at a time {they} add up to {joint.singles_sum_share:.0%}" if joint.pixels > 1 else "")
                 + ")")
    if joint.smallest_flipping_set < joint.pixels:
        text += f"; the top {joint.smallest_flipping_set} together flip it"
    elif joint.pixels > 1 and not joint.alone_flips:
        text += f"; it takes all {joint.pixels} together"
    return text + "."
