"""Contracts every registered attack honours, checked through the one registry."""

from __future__ import annotations

import pytest

from sparseviz.attacks import ATTACKS


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_refuses_bad_inputs_with_a_clear_message(name, tiny_model, tiny_images) -> None:
    run = ATTACKS[name].run
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    with pytest.raises(ValueError, match="true class"):
        run(tiny_model, tiny_images, labels, targets=labels.clone())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        run(tiny_model, tiny_images[0], labels[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run(tiny_model, tiny_images * 255, labels)
    with pytest.raises(ValueError, match="labels"):
        run(tiny_model, tiny_images, labels[:2])
