"""Where the sparse attack's time goes: inside the network (forward and backward) or around it.

On a GPU the network takes 5-15 ms per call, so the attack's latency there is set by the
number of sequential calls and by the host-side work between them (Python loops, tensor
bookkeeping, synchronising reads). This measures that host-side share on the CPU: wall time
of each attack minus the time spent inside the network's forward and in autograd's
backward entry points (both timed by wrapping them). One torch thread by default.

    python benchmarks/host_overhead.py ../shared/imagenet-dev --every 10
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from sparseviz.attacks import sparse_attack
from sparseviz.images import load_image, to_tensor
from sparseviz.models import load_model


class NetworkTimer:
    """Adds up the wall time spent in a module's forward and in autograd's backward calls."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._forward = network.forward
        network.forward = self._timed(self._forward)  # type: ignore[method-assign]
        torch.autograd.backward = self._timed(torch.autograd.backward)  # type: ignore[assignment]
        torch.autograd.grad = self._timed(torch.autograd.grad)  # type: ignore[assignment]

    def _timed(self, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder with manifest.csv (file, label, clean_conf), e.g. ../shared/imagenet-dev")
    parser.add_argument("--every", type=int, default=10, help="every k-th photo in file order")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0", device="cpu")
    timer = NetworkTimer(model.network)
    with open(args.photos / "manifest.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["file"])[:: args.every]
    host = []
    for row in rows:
        image = model.preprocess(to_tensor(load_image(args.photos / row["file"]).image))[None]
        timer.seconds = 0.0
        start = time.perf_counter()
        result = sparse_attack(model, image, torch.tensor([int(row["label"])]))
        total = time.perf_counter() - start
        host.append(total - timer.seconds)
        print(json.dumps({"photo": row["file"], "seconds": round(total, 2), "network": round(timer.seconds, 2),
                          "host": round(total - timer.seconds, 3), "pixels": int(result.l0_pixels[0]),
                          "invocations": result.model_invocations}), flush=True)
    print(f"host-side seconds per photo: median {statistics.median(host):.3f}, max {max(host):.3f} over {len(host)} photos")


if __name__ == "__main__":
    main()
