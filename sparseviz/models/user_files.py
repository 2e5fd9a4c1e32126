"""A user's own model file: a TorchScript classifier, or a state dict for a registry architecture."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .registry import _LITE_PACKAGES, _TORCHVISION, MODELS
from .wrapper import ImageClassifier, ModelError, imagenet_categories, resolve_device


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
