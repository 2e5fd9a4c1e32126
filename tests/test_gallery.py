"""The bundled photos: present, attributed, small, loadable through the safe loader."""

from __future__ import annotations

import pytest
import torch

from sparseviz.images.gallery import ASSETS_DIR, bundled_images, load_bundled
from sparseviz.images import ImageLoadError, to_tensor
from sparseviz.models import ImageClassifier


def test_bundled_images_are_present_and_attributed() -> None:
    images = bundled_images()
    assert len(images) >= 8
    attribution = (ASSETS_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for name, path in images.items():
        assert path.is_file() and path.stem == name
        assert f"`{path.name}`" in attribution, f"{path.name} has no attribution line"
    total = sum(path.stat().st_size for path in ASSETS_DIR.iterdir() if path.is_file())
    assert total < 3 * 2**20


@pytest.mark.parametrize("name", sorted(bundled_images()))
def test_each_bundled_image_loads(name: str) -> None:
    loaded = load_bundled(name)
    assert loaded.image.mode == "RGB"
    assert 224 <= min(loaded.image.size) <= 256, "short side 256 (224 minimum for the classifiers)"
    assert loaded.notes == [], "bundled photos need no caveats"


def test_load_bundled_accepts_a_filename_and_refuses_unknown_names() -> None:
    assert load_bundled("chelsea.png").image.size == load_bundled("chelsea").image.size
    with pytest.raises(ImageLoadError, match=r"no bundled image named 'dog'; available: .*chelsea"):
        load_bundled("dog")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected"),
    [("coffee", {"espresso", "cup", "coffee mug"}), ("camera", {"tripod"}), ("chelsea", {"tiger cat", "tabby", "Egyptian cat"})],
)
def test_real_model_recognizes_bundled_photos(real_model: ImageClassifier, name: str, expected: set[str]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two spinning threads on a shared 2-core box are 50x slower
    try:
        image = real_model.preprocess(to_tensor(load_bundled(name).image))
        top = real_model.predict_proba(image[None])[0].topk(3).indices.tolist()
    finally:
        torch.set_num_threads(threads)
    assert expected & {real_model.class_names[i] for i in top}
