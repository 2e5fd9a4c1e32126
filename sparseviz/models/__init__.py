"""Models: the wrapper (network + normalization + preprocessing + class names), the registry, users' files.

The package's public names live here so callers need not know which module holds them.
"""

from .registry import DEFAULT_MODEL, MODELS, ModelSpec, download_weights, load_model, other_models, warm_up
from .user_files import UserModelInfo, check_classifier, load_user_model, load_weights_file, parse_triple, user_model_info
from .wrapper import (
    ImageClassifier, InvocationCount, ModelError, WeightsUnavailableError, count_invocations, imagenet_categories,
    one_invocation, resolve_device,
)

__all__ = [
    "DEFAULT_MODEL", "MODELS", "ModelSpec", "download_weights", "load_model", "other_models", "warm_up",
    "UserModelInfo", "check_classifier", "load_user_model", "load_weights_file", "parse_triple", "user_model_info",
    "ImageClassifier", "InvocationCount", "ModelError", "WeightsUnavailableError", "count_invocations",
    "imagenet_categories", "one_invocation", "resolve_device",
]
