"""Model files from users: weights-only state dicts, trusted TorchScript, and the sanity probe."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from sparseviz.models import (
    ImageClassifier,
    ModelError,
    UserModelInfo,
    check_classifier,
    load_user_model,
    load_weights_file,
)


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core box two intra-op threads spin against each other (50x slower forwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _OpenFile:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


class Small(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


class Broken(nn.Module):
    def __init__(self, output: str) -> None:
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "raise":
            raise RuntimeError("boom: the layer exploded")
        if self.output == "nan":
            return torch.full((x.shape[0], 10), float("nan"))
        if self.output == "seven":
            return torch.zeros(x.shape[0], 7)
        return torch.zeros(x.shape[0])  # 1-D: not logits


def wrap(network: nn.Module, num_classes: int = 10) -> ImageClassifier:
    return ImageClassifier(
        network, name="probe", class_names=[f"c{i}" for i in range(num_classes)],
        input_size=32, resize_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
    )


@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18_10.pth"
    torch.save(network.state_dict(), path)
    return path, network


# --- weights-only loading -----------------------------------------------------------------


@pytest.mark.parametrize("container", ["zip", "legacy", "raw-pickle"])
def test_a_pickle_that_runs_code_is_refused_not_run(tmp_path: Path, container: str) -> None:
    def write(path: Path, marker: Path) -> None:
        payload = {"conv1.weight": torch.zeros(1), "evil": _OpenFile(marker)}
        if container == "raw-pickle":
            path.write_bytes(pickle.dumps(payload))
        else:
            torch.save(payload, path, _use_new_zipfile_serialization=container == "zip")

    # The payload is real: an unrestricted load creates its marker file.
    proof, proof_marker = tmp_path / "proof.pth", tmp_path / "proof_marker"
    write(proof, proof_marker)
    loader = pickle.loads if container == "raw-pickle" else None
    if loader is not None:
        loader(proof.read_bytes())
    else:
        torch.load(proof, weights_only=False)
    assert proof_marker.exists()

    evil, marker = tmp_path / "weights.pth", tmp_path / "pwned"
    write(evil, marker)
    with pytest.raises(ModelError) as caught:
        load_weights_file("resnet18", evil)
    assert not marker.exists(), "the file's code ran"
    message = str(caught.value)
    assert "\n" not in message
    assert "weights.pth" in message
    assert "only plain state dicts are accepted" in message
    if container != "raw-pickle":  # torch names the global; a protocol-4 pickle fails earlier, on an opcode
        assert "io.open, which could run code" in message


def test_state_dict_round_trip_matches_the_source(resnet18_state: tuple[Path, nn.Module]) -> None:
    path, network = resnet18_state
    model = load_weights_file("resnet18", path, num_classes=10)
    assert model.num_classes == 10 and model.class_names[3] == "class 3"
    images = torch.rand(2, 3, 64, 64)
    expected = network((images - model.mean) / model.std)
    assert torch.allclose(model(images), expected, atol=1e-5)
    assert not any(p.requires_grad for p in model.parameters())


def test_class_names_set_the_head_size(resnet18_state: tuple[Path, nn.Module]) -> None:
    names = [f"bird {i}" for i in range(10)]
    model = load_weights_file("resnet18", resnet18_state[0], class_names=names)
    assert model.class_names == names and model.cam_layer is not None
    with pytest.raises(ModelError, match="num_classes=9 but 10 class names"):
        load_weights_file("resnet18", resnet18_state[0], num_classes=9, class_names=names)


def test_wrong_head_size_says_which_num_classes(resnet18_state: tuple[Path, nn.Module]) -> None:
    with pytest.raises(ModelError, match=r"classifier has 10 outputs.*pass num_classes=10"):
        load_weights_file("resnet18", resnet18_state[0])


def test_weights_for_another_architecture_are_refused(tmp_path: Path, resnet18_state: tuple[Path, nn.Module]) -> None:
    with pytest.raises(ModelError, match=r"do not fit efficientnet_lite0: .*another architecture") as caught:
        load_weights_file("efficientnet_lite0", resnet18_state[0], num_classes=10)
    assert "\n" not in str(caught.value)
    # Same key names, other shapes: a resnet18 file offered as resnet50.
    with pytest.raises(ModelError, match=r"do not fit resnet50: .*wrong shape"):
        load_weights_file("resnet50", resnet18_state[0], num_classes=10)


def test_wrapped_checkpoints_and_prefixes_are_unwrapped(tmp_path: Path, resnet18_state: tuple[Path, nn.Module]) -> None:
    state = torch.load(resnet18_state[0], weights_only=True)
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert load_weights_file("resnet18", path, num_classes=10).num_classes == 10


@pytest.mark.parametrize("content", ["garbage", "torchscript", "tensor", "missing"])
def test_files_that_are_not_state_dicts(tmp_path: Path, content: str) -> None:
    path = tmp_path / "weights.pt"
    if content == "garbage":
        path.write_bytes(b"definitely not weights" * 10)
        expected = "not a PyTorch state-dict file"
    elif content == "torchscript":
        torch.jit.script(Small()).save(str(path))
        expected = "is a TorchScript model, not a state dict"
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
        expected = "does not hold a state dict"
    else:
        expected = "not found"
    with pytest.raises(ModelError, match=expected) as caught:
        load_weights_file("resnet18", path)
    assert "\n" not in str(caught.value)


def test_unknown_architecture_and_bad_counts(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown architecture 'alexnet'"):
        load_weights_file("alexnet", tmp_path / "x.pt")
    with pytest.raises(ModelError, match="at least 1"):
        load_weights_file("resnet18", tmp_path / "x.pt", num_classes=0)


def test_nan_weights_are_caught_by_the_probe(tmp_path: Path, resnet18_state: tuple[Path, nn.Module]) -> None:
    state = torch.load(resnet18_state[0], weights_only=True)
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="NaN or infinite logits"):
        load_weights_file("resnet18", path, num_classes=10)


# --- TorchScript / torch.export: only when trusted ----------------------------------------


def test_user_model_needs_explicit_trust(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    torch.jit.script(Small()).save(str(path))
    info = UserModelInfo(input_size=32, class_names=[f"c{i}" for i in range(10)])
    for trusted in (False, 0, None):
        with pytest.raises(ModelError, match="trusted=True"):
            load_user_model(path, info, trusted=trusted)  # type: ignore[arg-type]


def test_trusted_torchscript_model_loads_and_predicts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = Small().eval()
    path = tmp_path / "small.pt"
    torch.jit.script(network).save(str(path))
    info = UserModelInfo(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), class_names=[f"c{i}" for i in range(10)])
    model = load_user_model(path, info, trusted=True)
    images = torch.rand(3, 3, 32, 32)
    assert torch.allclose(model(images), network((images - 0.5) / 0.5), atol=1e-6)
    assert model.predict_proba(images).shape == (3, 10)
    from_bytes = load_user_model(path.read_bytes(), info, trusted=True, name="upload.pt")  # an upload, never on disk
    assert from_bytes.name == "upload" and torch.equal(from_bytes(images), model(images))


def test_trusted_but_broken_files_get_one_line(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00" * 100)
    info = UserModelInfo(input_size=32, class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(ModelError, match="not a TorchScript or torch.export model file"):
        load_user_model(path, info, trusted=True)
    wrong_count = tmp_path / "seven.pt"
    torch.jit.script(Small(7)).save(str(wrong_count))
    with pytest.raises(ModelError, match="returns 7 classes but 10 class names"):
        load_user_model(wrong_count, info, trusted=True)


def test_trusted_torch_export_model_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = Small().eval()
    path = tmp_path / "small.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(network, (torch.rand(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(path))
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(network, (torch.rand(1, 3, 32, 32),)), str(static))
    info = UserModelInfo(input_size=32, class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(ModelError, match="any batch size"):
        load_user_model(static, info, trusted=True)
    with pytest.raises(ModelError, match="trusted=True"):
        load_user_model(path, info, trusted=False)
    model = load_user_model(path, info, trusted=True)
    images = torch.rand(1, 3, 32, 32)
    assert torch.allclose(model(images), network((images - model.mean) / model.std), atol=1e-5)
    from_bytes = load_user_model(path.read_bytes(), info, trusted=True, name="upload.pt2")
    assert torch.allclose(from_bytes(images), model(images))


# --- check_classifier ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("raise", r"failed on a \(1, 3, 32, 32\) input: boom"),
        ("nan", "NaN or infinite logits"),
        ("seven", "returns 7 classes but 10 class names"),
        ("flat", r"shape \(N, classes\)"),
    ],
)
def test_check_classifier_explains_broken_models(output: str, message: str) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        check_classifier(wrap(Broken(output)))
    assert "\n" not in str(caught.value)


def test_check_classifier_accepts_a_sound_model() -> None:
    check_classifier(wrap(Small()))
