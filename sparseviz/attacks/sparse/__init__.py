"""The reparameterized sparse (l0) attack.

Choosing *which* pixels to change is a discrete, NP-hard problem. We relax it:

    x_adv = x + m * (v - x),   m = sigmoid(a / T)  (N, 1, H, W),   v = sigmoid(w)  (N, 3, H, W)

``m`` says *where* (one gate per pixel, shared by its three channels), ``v`` says
*what colour* the pixel becomes; both stay in [0, 1] by construction, so ``x_adv``
never leaves the box. Adam descends on

    loss = max(margin(x_adv), -kappa) + lambda * sum(m)

where ``margin`` is negative exactly when the model is fooled (see ``base.margin``)
and ``sum(m)`` is the relaxed pixel count; ``lambda = sparsity_weight x`` a per-image
scale (adapted up while the binary mask fools the model, down while it does not).

The steps, one module each:

- ``optimize``: the gates start from each pixel's first-order payoff and the colours from
  the corners a signed gradient step points to; every step also evaluates the *binary*
  mask on the 8-bit image and keeps the sparsest binary solution that fools the model.
  A targeted run (hundreds of pixels) is still shrinking when the annealing ends, so its
  preset goes on at a warmer final temperature (``settle_steps``).
- ``refine`` and ``prune``: pixels whose removal keeps the image adversarial are dropped,
  least needed first, each removal checked exactly; the kept colours are re-optimised for
  margin between prunes, since the first success is barely past the boundary.
- ``swaps``: pruning never moves a pixel, so a gradient-guided swap search then tries to
  reach one pixel fewer at a time by trading needed pixels for others.
- ``checks``: post-processing runs for all images of a call together, each of its rounds
  one network call however many variants it checks, so a GPU's latency follows the number
  of rounds, not of images or candidates.

``config`` holds the public knobs (:class:`SparseConfig`) and the tuning
(:class:`SparseTuning`, presets ``UNTARGETED`` and ``TARGETED``); ``attack`` runs the
steps on the shared runner.
"""

from __future__ import annotations

from .attack import sparse_attack
from .config import QUICK, TARGETED, UNTARGETED, SparseConfig, SparseTuning

__all__ = ["QUICK", "TARGETED", "UNTARGETED", "SparseConfig", "SparseTuning", "sparse_attack"]
