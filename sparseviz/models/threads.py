"""The torch thread count an attack runs with, so every engine gives the same rows.

Float sums inside a convolution are split across threads; another thread count adds in
another order, and a sparse attack's pixel count can change by one (ocv_orange: 13 vs 12 px
with 2 vs 1 threads). Every engine (the local audit, its worker processes, the Ray actors,
and whoever else wants the same rows) runs each attack with ``ATTACK_THREADS`` threads and
gets its speed from running images in parallel instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

ATTACK_THREADS = 1  # one thread per attack: the same float order everywhere; cores go to parallel images


@contextmanager
def attack_threads(threads: int = ATTACK_THREADS) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, restoring the previous count afterwards.

    The count is per process (torch has no per-thread setting): a server that runs attacks
    in threads should give each its own process instead of relying on this.
    """
    if not 1 <= threads <= 1024:
        raise ValueError(f"threads must be in 1..1024; got {threads}.")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def one_thread() -> Iterator[None]:
    """Shorthand for ``attack_threads(1)``."""
    with attack_threads(1):
        yield
