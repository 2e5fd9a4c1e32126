"""One shared model, many sessions: parallel jobs must equal serial ones bit for bit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from sparseviz.attacks.sparse import SparseConfig, sparse_attack
from sparseviz.images.gallery import load_bundled
from sparseviz.images import to_tensor
from sparseviz.explain.interpret import explain

CONFIG = SparseConfig(steps=20).retuned(patience=6)


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def test_parallel_attacks_on_a_shared_tiny_model_equal_serial(tiny_model, tiny_images) -> None:
    labels = tiny_model.predict_proba(tiny_images).argmax(1)

    def job(index: int) -> torch.Tensor:
        return sparse_attack(tiny_model, tiny_images[index : index + 1], labels[index : index + 1], config=CONFIG).adversarials

    serial = [job(i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(job, range(4)))
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)
    assert _hooks(tiny_model) == 0


@pytest.mark.system  # threads on the real model: minutes on two cores
def test_parallel_attacks_on_the_shared_real_model_equal_serial(real_model) -> None:
    names = ["chelsea", "coins", "astronaut", "rocket"]
    images = [real_model.preprocess(to_tensor(load_bundled(n).image))[None] for n in names]
    labels = [real_model.predict_proba(image).argmax(1) for image in images]

    def job(index: int):
        return sparse_attack(real_model, images[index], labels[index], config=CONFIG)

    serial = [job(i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(job, range(4)))
    for a, b in zip(serial, parallel):
        assert torch.equal(a.adversarials, b.adversarials)
        assert torch.equal(a.success, b.success)
    assert _hooks(real_model) == 0


@pytest.mark.system
def test_parallel_attack_and_explain_jobs_equal_serial(real_model) -> None:
    """Four sessions each attack and explain their own photo on one shared model."""
    names = ["chelsea", "coins", "grace_hopper", "rocket"]
    images = [real_model.preprocess(to_tensor(load_bundled(n).image))[None] for n in names]
    labels = [real_model.predict_proba(image).argmax(1) for image in images]

    def job(index: int):
        result = sparse_attack(real_model, images[index], labels[index], config=CONFIG)
        explanation = explain(real_model, result, 0, method="gradcam")
        return result, explanation

    serial = [job(i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(job, range(4)))
    for (result_a, expl_a), (result_b, expl_b) in zip(serial, parallel):
        assert torch.equal(result_a.adversarials, result_b.adversarials)
        for key in expl_a.maps:
            assert (expl_a.maps[key] == expl_b.maps[key]).all()
        assert expl_a.to_dict()["pixels"] == expl_b.to_dict()["pixels"]
    assert _hooks(real_model) == 0
