"""Model registry and wrapper: normalization owned by the wrapper, zoo paths, clear errors."""

from __future__ import annotations

import pytest
import torch

from sparseviz.models import (
    MODELS,
    ImageClassifier,
    ModelError,
    WeightsUnavailableError,
    load_model,
    resolve_device,
)

TORCHVISION = ["resnet18", "resnet50", "vgg16", "mobilenet_v3_large", "efficientnet_b0"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in TORCHVISION])  # vgg16: 138M parameters to initialise
def test_torchvision_zoo_builds_with_weights_none(name: str) -> None:
    model = load_model(name, pretrained=False)
    assert model.num_classes == 1000 and model.class_names[281] == "tabby"
    assert model.input_size == 224 and model.resize_size >= 224
    assert model.cam_layer is not None
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert load_model(name, pretrained=False) is model, "loaded once per process"


@pytest.mark.parametrize("name", TORCHVISION)
def test_missing_torchvision_weights_say_how_to_get_them(name: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    assert not MODELS[name].weights_available()
    with pytest.raises(WeightsUnavailableError, match=f"sparseviz download {name}"):
        load_model(name)


def test_wrapper_owns_normalization() -> None:
    network = torch.nn.Flatten()
    model = ImageClassifier(
        network, name="id", class_names=[str(i) for i in range(12)], input_size=2, resize_size=2,
        mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0),
    )
    images = torch.ones(1, 3, 2, 2)
    expected = torch.tensor([1.0] * 4 + [3.0] * 4 + [1.0] * 4)
    assert torch.allclose(model(images)[0], expected)


def test_preprocess_resizes_crops_and_quantizes(real_model) -> None:
    image = torch.rand(3, 300, 451)
    out = real_model.preprocess(image)
    assert out.shape == (3, 224, 224)
    assert torch.equal(out, torch.round(out * 255) / 255)


def test_default_model_works_offline_and_classifies_a_photo(real_model) -> None:
    assert MODELS["efficientnet_lite0"].weights_available()
    assert real_model.input_size == 224 and real_model.class_names[967] == "espresso"


def test_class_index_by_name_or_number(real_model) -> None:
    assert real_model.class_index("tabby") == 281
    assert real_model.class_index("Tabby") == 281
    assert real_model.class_index("281") == 281
    with pytest.raises(ValueError, match="ambiguous"):
        real_model.class_index("gold")
    with pytest.raises(ValueError, match="out of range"):
        real_model.class_index(1000)


def test_errors_are_clear() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_train_mode_is_refused_with_a_warning(tiny_model) -> None:
    with pytest.warns(UserWarning, match="eval mode"):
        tiny_model.train()
    assert not tiny_model.training and not any(m.training for m in tiny_model.modules())
