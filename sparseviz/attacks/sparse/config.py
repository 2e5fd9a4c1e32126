"""The sparse attack's options: a few public knobs, and one frozen tuning object with two presets.

``SparseConfig`` is what a user chooses (CLI flags, app widgets): how hard to push for
fewer pixels, how many steps, the seed and the time budget. ``SparseTuning`` holds every
number the search runs on. A call uses ``config.tuning`` when one is given, else the
preset for its kind (:data:`UNTARGETED` or :data:`TARGETED`; targets come per call), then
applies ``config.tuning_changes`` on top (``--set sparse.tuning.FIELD=VALUE`` in
``sparseviz bench``, the app's quick mode). The measurements behind each preset value are
in ``benchmarks/results/tuning.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..options import option, tuning_changes_field, tuning_field, validate
from ..runner import AttackConfig

TuningValue = float | int | bool
TuningChanges = tuple[tuple[str, TuningValue], ...]


@dataclass(frozen=True, kw_only=True)
class SparseTuning:
    """Every number the sparse attack runs on; the presets differ only where the kind of attack
    (untargeted: a few pixels, found fast; targeted: hundreds, shrinking for long) needs it.

    Reasons and measurements for each value: ``benchmarks/results/tuning.md``.
    """

    # --- optimisation -------------------------------------------------------------------------
    mask_lr: float = option(0.25, low=1e-4, high=10.0, help="Adam step on the gate logits (they live in about [-6, 6])")
    value_lr: float = option(0.1, low=1e-4, high=10.0, help="Adam step on the colour logits")
    momentum: float = option(0.5, low=0.0, high=0.999,
                             help="Adam's beta1: low, so the gates react within a few steps to lambda")
    kappa: float = option(2.0, low=0.0, high=100.0,
                          help="stop pushing the margin once it is this far past the boundary (logits)")
    margin_slack: float = option(1e-3, low=0.0, high=1.0, help="a kept solution beats the boundary by at least this "
                                 "(logits), so float differences between batch sizes never flip the final 8-bit check")
    initial_pixels: int = option(400, low=1, high=10_000_000, help="gates initially open: the top first-order pixels")
    temperature_start: float = option(1.0, low=1e-3, high=100.0, help="gate softness at step 0")
    temperature_end: float = option(0.1, low=1e-3, high=100.0, help="gate softness at the end of the annealing "
                                    "(close to binary; a colder gate far from zero can no longer close)")
    lambda_start: float = option(0.4, low=0.0, high=100.0,
                                 help="lambda at step 0, as a fraction of the median open pixel's payoff")
    lambda_up: float = option(1.5, low=1.0, high=100.0, help="per-step factor on lambda while the binary mask fools the model")
    lambda_down: float = option(0.7, low=0.01, high=1.0, help="per-step factor on lambda while it does not")
    patience: int = option(12, low=1, high=10_000,
                           help="stop an image once its best pixel count has not improved for this many steps")
    settle_steps: int = option(0, low=0, high=10_000,
                               help="more steps at the final temperature after the annealed ones, for images still shrinking")
    relaxed_view: bool = option(False, help="also descend on the soft-gated image (smoother search, 2 images per step)")
    # --- colour refinement and pruning --------------------------------------------------------
    prune: bool = option(True, help="drop pixels the final solution does not need (false: no post-processing)")
    refine_steps: int = option(5, low=0, high=10_000,
                               help="Adam steps on the kept pixels' colours (for margin) before each prune; 0 = none")
    refine_cycles: int = option(4, low=0, high=100, help="refine-and-prune cycles after the first prune")
    cycle_gain: float = option(0.15, low=0.0, high=1.0,
                               help="another cycle only after one that removed this share of the pixels (and 2 or more)")
    refine_min: int = option(8, low=0, high=10_000_000,
                             help="sets of at most this many pixels skip colour refinement (pruning and swaps handle them)")
    refine_first_min: int = option(150, low=0, high=10_000_000,
                                   help="colours are refined before the first prune only for sets over this many pixels")
    large_set: int = option(48, low=0, high=10_000_000,
                            help="sets over this many pixels get twice the refinement steps (their prune needs the slack)")
    exact_limit: int = option(48, low=0, high=10_000_000,
                              help="sets over this many pixels are pruned in first-order order first, then exactly")
    exact_cap: int = option(192, low=0, high=10_000_000,
                            help="a set that stalls first order gets exact checks of this many least-needed pixels")
    prefix_lengths: int = option(8, low=1, high=10_000, help="prefix lengths of the first-order order checked per call")
    prefix_calls: int = option(2, low=1, high=100, help="calls narrowing the longest removable prefix per first-order round")
    first_order_stall: float = option(0.15, low=0.0, high=1.0,
                                      help="first-order rounds stop paying (go exact) once one removes under this share")
    greedy_passes: int = option(3, low=0, high=10_000, help="calls of greedy single removals at most, after the exact order")
    greedy_window: int = option(8, low=1, high=10_000, help="removals checked per greedy call (prefixes of the exact order)")
    # --- swap search --------------------------------------------------------------------------
    swap_rounds: int = option(4, low=0, high=10_000,
                              help="after pruning, swap rounds per attempt at one pixel fewer; 0 = no swaps")
    swap_proposals: int = option(8, low=1, high=10_000, help="candidate swaps checked per round (one forward pass each)")
    swap_calls: int = option(120, low=0, high=10_000_000, help="model calls per image the swap search may spend; 0 = none")

    def __post_init__(self) -> None:
        validate(self)
        if self.temperature_end > self.temperature_start:
            raise ValueError(f"temperature_end ({self.temperature_end}) must be at most temperature_start "
                             f"({self.temperature_start}): the gates cool down; change both.")

    @staticmethod
    def untargeted() -> SparseTuning:
        """The preset for untargeted attacks (a few pixels, found within tens of steps)."""
        return UNTARGETED

    @staticmethod
    def targeted() -> SparseTuning:
        """The preset for targeted attacks (hundreds of pixels that keep shrinking for long)."""
        return TARGETED

    @staticmethod
    def preset(targeted: bool) -> SparseTuning:
        """The preset for a call of this kind (what a config without an explicit tuning uses)."""
        return TARGETED if targeted else UNTARGETED

    def changed(self, changes: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> SparseTuning:
        """This tuning with some fields changed; an unknown field raises ``ValueError`` naming the known ones."""
        values = dict(changes)
        known = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"SparseTuning has no field {', '.join(map(repr, unknown))}; fields: {', '.join(known)}.")
        return dataclasses.replace(self, **values) if values else self


UNTARGETED = SparseTuning()
TARGETED = SparseTuning(temperature_end=0.2, patience=16, settle_steps=200, relaxed_view=True, refine_cycles=8,
                        cycle_gain=0.05, exact_cap=64, swap_calls=0)
QUICK: Mapping[str, TuningValue] = {"refine_steps": 0, "swap_calls": 0}
"""Tuning changes for quick runs (load tests, slow machines): no colour refinement, no swap search."""


@dataclass(frozen=True, kw_only=True)
class SparseConfig(AttackConfig):
    """The sparse attack's public knobs; everything else is ``tuning`` (see the module docstring)."""

    sparsity_weight: float = option(1.0, low=0.0, high=1000.0, ui=(0.1, 4.0, 0.05),
                                    help="the main knob: higher = fewer pixels, at some risk of failing")
    steps: int = option(100, low=1, high=10_000, ui=(1, 2000, 10),
                        help="at most this many annealed optimisation steps; most images stop much earlier")
    seed: int = option(0, low=0, high=2**63 - 1, ui=(0, 2**31 - 1, 1),
                       help="seeds the (tiny) tie-breaking noise; same seed = same result")
    tuning: SparseTuning | None = tuning_field(
        SparseTuning, help="the search's tuning; none = the preset for the call's kind (untargeted or targeted)")
    tuning_changes: TuningChanges = tuning_changes_field(
        help="(field, value) changes applied to the tuning the call uses (explicit or preset)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tuning is not None and not isinstance(self.tuning, SparseTuning):
            raise ValueError(f"tuning must be a SparseTuning or None; got {type(self.tuning).__name__}.")
        changes = self.tuning_changes.items() if isinstance(self.tuning_changes, Mapping) else self.tuning_changes
        normalised = tuple(sorted(dict(changes).items()))
        object.__setattr__(self, "tuning_changes", normalised)  # hashable and order-free, whatever was passed
        for base in (UNTARGETED, TARGETED) if self.tuning is None else (self.tuning,):
            base.changed(normalised)  # unknown fields and invalid values raise now, not mid-run

    def retuned(self, **changes: TuningValue) -> SparseConfig:
        """This config with more tuning changes (e.g. ``retuned(patience=8)``), kept for either kind of call."""
        return dataclasses.replace(self, tuning_changes=(*self.tuning_changes, *changes.items()))

    def tuning_for(self, targeted: bool) -> SparseTuning:
        """The tuning a call of this kind runs on: the explicit one or the preset, with the changes."""
        base = self.tuning if self.tuning is not None else SparseTuning.preset(targeted)
        return base.changed(self.tuning_changes)

    def total_steps_for(self, targeted: bool) -> int:
        """At most this many optimisation steps: the annealed ones, then the settle steps."""
        return self.steps + self.tuning_for(targeted).settle_steps

    def required_margin(self, tuning: SparseTuning) -> float:
        """How far past the decision boundary a kept solution must be (logits).

        Below weight 1 the attack pays for confidence with pixels: a solution must fool
        the model by ln(1 / sparsity_weight) logits (capped at kappa), so lowering the
        weight gives more pixels and a more confident flip, raising it the reverse.
        """
        confidence = math.log(1.0 / self.sparsity_weight) if self.sparsity_weight > 0 else math.inf
        return tuning.margin_slack + min(tuning.kappa, max(0.0, confidence))
