"""The app's heavy jobs as module-level functions of plain data (picklable for worker processes).

Each takes a :class:`~sparseviz.app.jobs.JobContext` first (stop flag and progress line) and
names its model instead of holding it, so a worker process loads each model once and the
same function runs in a thread, in a worker process, or in ``sparseviz.app.precompute``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ..attacks import PGDConfig, SparseConfig, pgd, sparse_attack
from ..attacks.base import AttackProgress, AttackResult
from ..models import ImageClassifier, load_model
from ..views.text import progress_line


class Context(Protocol):
    """What a job sees of its pool (``jobs.JobContext`` or a worker process's stand-in)."""

    def should_stop(self) -> bool: ...

    def report(self, fraction: float, text: str) -> None: ...


def model_named(name: str, device: str) -> ImageClassifier:
    """The registry model ``name`` on ``device``, built once per process (``load_model`` caches it)."""
    return load_model(name, device=device)


def attack(ctx: Context, model: str | ImageClassifier, device: str, image: torch.Tensor, label: int,
           target: int | None, config: SparseConfig) -> AttackResult:
    """The single page's sparse attack: progress lines, and a stop at the next step when asked."""
    net = model_named(model, device) if isinstance(model, str) else model

    def on_progress(info: AttackProgress) -> None:
        ctx.report(info.step / max(1, info.total_steps), progress_line(info))

    targets = None if target is None else torch.tensor([target])
    return sparse_attack(net, image, torch.tensor([label]), targets=targets, config=config, progress=on_progress,
                         should_stop=ctx.should_stop)


def explain(ctx: Context, model: str | ImageClassifier, device: str, result: AttackResult, method: str) -> Any:
    """The "Why it works" explanation of image 0, reporting the split's progress."""
    from ..explain import interpret

    net = model_named(model, device) if isinstance(model, str) else model
    return interpret.explain(net, result, 0, method=method,
                             progress=lambda fraction, stage: ctx.report(fraction, f"{stage}: {fraction:.0%}"))


def dense(ctx: Context, model: str | ImageClassifier, device: str, image: torch.Tensor, label: int,
          targets: torch.Tensor | None) -> AttackResult:
    """PGD on the same image, for the Compare tab."""
    net = model_named(model, device) if isinstance(model, str) else model
    return pgd(net, image, torch.tensor([label]), targets=targets, config=PGDConfig(), should_stop=ctx.should_stop)


def sweep(ctx: Context, model: str | ImageClassifier, device: str, image: torch.Tensor, label: int,
          weights: tuple[float, ...], target: int | None, config: SparseConfig) -> list[Any]:
    """The sparsity-weight sweep, one progress line per weight."""
    from ..audit import experiments

    net = model_named(model, device) if isinstance(model, str) else model
    return experiments.sparsity_sweep(
        net, image, label, weights, target=target, config=config, should_stop=ctx.should_stop,
        on_point=lambda i, p: ctx.report((i + 1) / len(weights), f"weight {p.sparsity_weight:g}: {p.pixels} pixels"))


def audit(ctx: Context, model: str | ImageClassifier, device: str, folders: dict[str, Any], collected: Any,
          config: SparseConfig, gallery: bool, ray_address: str | None, shown: int) -> Any:
    """The Audit page's audit: ``folders`` maps each model's name to its loaded images (the first is
    the audited model, the others are compared with it); progress per image, stops between images
    (the Ray engine, when chosen, runs to the end)."""
    from ..audit import session

    names = list(folders)
    main_name = names[0]
    models = {main_name: model_named(model, device) if isinstance(model, str) else model,
              **{name: model_named(name, device) for name in names[1:]}}
    total = len(folders[main_name].images) * len(names)
    done: list[str] = []

    def on_step(name: str) -> None:
        done.append(name)
        ctx.report(len(done) / max(1, total), f"{len(done)}/{total} done (last: {name})")

    if ray_address is not None:
        runs = {name: session.run_on_ray(name, collected, config=config, address=ray_address, on_row=on_step)
                for name in names}
        folders = {name: session.flat_names(loaded) for name, loaded in folders.items()}
    else:
        runs = {name: session.run_in_memory(models[name], folders[name], config=config, on_step=on_step,
                                            should_stop=ctx.should_stop) for name in names}
    compared = session.compare_runs(models, folders, runs) if len(names) > 1 else None
    return session.keep(runs[main_name], main_name, config, folders[main_name], collected, gallery=gallery,
                        on_ray=ray_address is not None, shown=shown, compared=compared)


def warm_worker() -> None:
    """First-use costs, paid in each worker before any job: imports (Captum, parts of torch), a
    first autograd pass (each held the GIL for about a second on a busy 2-core CPU) and the
    default model. A throwaway attack, PGD and explanation on a tiny network pay them up front."""
    from torch import nn

    from ..attacks import SparseConfig
    from ..explain import interpret
    from ..models import DEFAULT_MODEL, MODELS, resolve_device

    with torch.random.fork_rng():  # fixed tiny weights; the global random state is left as it was
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                            nn.Linear(16, 3))
    model = ImageClassifier(net, name="warm-up", class_names=["a", "b", "c"], input_size=16, resize_size=16,
                            mean=(0.5,) * 3, std=(0.25,) * 3, cam_layer="0")
    image = torch.linspace(0, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)
    label = model.predict_proba(image).argmax(1)
    result = sparse_attack(model, image, label, config=SparseConfig(steps=10))
    pgd(model, image, label)
    if bool(result.success[0]):
        interpret.explain(model, result, 0)
    if MODELS[DEFAULT_MODEL].weights_available():
        load_model(DEFAULT_MODEL, device=str(resolve_device("auto")))


class Unattended:
    """A context for runs nobody watches (precompute, warm-up): never stops, reports nothing."""

    def should_stop(self) -> bool:
        return False

    def report(self, fraction: float, text: str) -> None:
        pass


__all__ = ["Context", "Unattended", "attack", "audit", "dense", "explain", "model_named", "sweep", "warm_worker"]
