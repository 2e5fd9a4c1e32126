"""Sparsity sweep, transfer check and user-model form parsing on the tiny model."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_model
from sparseviz.audit import experiments
from sparseviz.models import user_model_info
from sparseviz.attacks import SparseConfig, sparse_attack


def test_sweep_runs_each_weight_like_a_single_attack(tiny_model, tiny_images):
    image = tiny_images[:1]
    label = int(tiny_model.predict_proba(image).argmax())
    config = SparseConfig(steps=20, seed=2)
    seen = []
    points = experiments.sparsity_sweep(tiny_model, image, label, [2.0, 0.5], config=config,
                                        on_point=lambda i, p: seen.append((i, p.sparsity_weight)))
    assert [p.sparsity_weight for p in points] == [0.5, 2.0]  # sorted
    assert seen == [(0, 0.5), (1, 2.0)]
    for point in points:
        direct = sparse_attack(tiny_model, image, torch.tensor([label]),
                               config=SparseConfig(steps=20, seed=2, sparsity_weight=point.sparsity_weight))
        assert point.pixels == int(direct.l0_pixels[0]) and point.success == bool(direct.success[0])


def test_sweep_stops_when_asked(tiny_model, tiny_images):
    points = experiments.sparsity_sweep(tiny_model, tiny_images[:1], 0, [0.5, 1.0], should_stop=lambda: True)
    assert points == []
    with pytest.raises(ValueError, match="one image"):
        experiments.sparsity_sweep(tiny_model, tiny_images, 0)


def test_transfer_to_itself_is_fooled_and_other_label_sets_are_notes(tiny_model, tiny_images):
    image = tiny_images[:1]
    label = tiny_model.predict_proba(image).argmax(1)
    result = sparse_attack(tiny_model, image, label, config=SparseConfig(steps=30))
    assert bool(result.success[0])
    small = make_tiny_model(seed=1, num_classes=2)
    rows = experiments.transfer(result, {"same": tiny_model, "other": make_tiny_model(seed=3), "two": small})
    same = rows[0]
    assert same.fooled is True and same.clean_label == int(label) and same.adv_label == int(result.adv_labels[0])
    assert rows[1].fooled in (True, False, None)
    if int(label) >= 2:
        assert rows[2].fooled is None and "classes" in rows[2].note


def test_user_model_info_parsing():
    info = user_model_info(32, "0.5, 0.5, 0.5", "0.25 0.25 0.25", "a\n\n b \n")
    assert info.input_size == 32 and info.mean == (0.5, 0.5, 0.5) and info.class_names == ["a", "b"]
    assert len(user_model_info(224, "0,0,0", "1,1,1").class_names) == 1000
    with pytest.raises(ValueError, match="three"):
        user_model_info(224, "0.5, 0.5", "1,1,1")
    with pytest.raises(ValueError, match="positive"):
        user_model_info(224, "0,0,0", "1,0,1")
    with pytest.raises(ValueError, match="input size"):
        user_model_info(4, "0,0,0", "1,1,1")
    with pytest.raises(ValueError, match="finite"):
        user_model_info(224, "nan,0,0", "1,1,1")
