"""The development set: real photos the attack was never tuned on, generated from installed packages.

    python benchmarks/devset.py --out bench-out/devset          # writes 48 PNGs + manifest.csv

The bundled gallery (``sparseviz/assets/``) is easy for EfficientNet-Lite0 (mean clean confidence
about 0.40) and defaults tuned on it did not carry over to other photos. This set is
made of *other* square crops (several positions and scales) of the public-domain photos
that scikit-image, scikit-learn and matplotlib ship, so nothing is downloaded and nothing large is
committed. Every crop is classified by the reference model once and the set is drawn to
cover three clean-confidence bands equally:

    high  p(top-1) >= 0.8      mid  0.4 <= p < 0.8      low  p < 0.4

with at most a few crops per source photo and per (source, predicted class), so no one
photo dominates. The choice depends only on the installed photo files and the model,
never on how an attack does on them. Files are 256x256 PNGs: the models' preprocessing
(resize to 256, centre crop 224) then feeds the exact central 224x224 pixels, with no
further resampling. ``manifest.csv`` lists each file's source, crop box, licence, clean
class, confidence and band; benchmarks read the band from it (:func:`read_bands`).

Licences: see ``SOURCES`` (public domain or CC0, as stated by the packages' docstrings;
``motorcycle_*`` come with no stated licence, so they are only generated locally for
measurement and never redistributed).
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

FILE_SIZE = 256  # the reference models' resize size: their centre crop is then exactly 224x224
BANDS = (("high", 0.8, 1.01), ("mid", 0.4, 0.8), ("low", 0.0, 0.4))
PER_BAND = 16  # up to 16 a band; the installed photos give only 9 crops at >= 0.8 (41 in all)
PER_SOURCE = 7  # at most this many crops of one source photo (across bands)
PER_SOURCE_CLASS = 3  # at most this many crops of one source with the same clean class
SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)  # crop side as a fraction of the photo's short side
POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the crop sits along each free axis


@dataclass(frozen=True)
class Source:
    name: str
    package: str  # "skimage", "matplotlib" or "sklearn"
    relative: str  # path inside the package's data folder
    licence: str


SOURCES = (
    Source("chelsea", "skimage", "chelsea.png", "CC0 (Stefan van der Walt)"),
    Source("coffee", "skimage", "coffee.png", "CC0 (Rachel Michetti)"),
    Source("astronaut", "skimage", "astronaut.png", "public domain (NASA)"),
    Source("rocket", "skimage", "rocket.jpg", "public domain (SpaceX)"),
    Source("camera", "skimage", "camera.png", "CC0 (Lav Varshney)"),
    Source("clock_motion", "skimage", "clock_motion.png", "public domain (Stefan van der Walt)"),
    Source("coins", "skimage", "coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    Source("horse", "skimage", "horse.png", "CC0 (openclipart)"),
    Source("motorcycle_left", "skimage", "motorcycle_left.png", "no licence stated (Middlebury 2014); local use only"),
    Source("motorcycle_right", "skimage", "motorcycle_right.png", "no licence stated (Middlebury 2014); local use only"),
    Source("grace_hopper", "matplotlib", "grace_hopper.jpg", "public domain (U.S. Navy)"),
    Source("present", "matplotlib", "Minduka_Present_Blue_Pack.png", "CC0 / public domain (openclipart, Minduka)"),
    Source("china", "sklearn", "china.jpg", "CC BY 2.0 (danielbuechele on Flickr)"),
    Source("flower", "sklearn", "flower.jpg", "CC BY 2.0 (vultilion on Flickr)"),
)


def _data_dir(package: str) -> Path:
    if package == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent
    if package == "sklearn":
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def _open_rgb(path: Path) -> Image.Image:
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def candidate_crops() -> list[tuple[str, Source, tuple[int, int, int, int], Image.Image]]:
    """Every (name, source, box, 256x256 crop) the set may draw from, in a fixed order."""
    crops = []
    for source in SOURCES:
        path = _data_dir(source.package) / source.relative
        if not path.is_file():
            continue
        photo = _open_rgb(path)
        width, height = photo.size
        short = min(width, height)
        for scale in SCALES:
            side = int(round(short * scale))
            if side < 128:  # too few real pixels: the crop would be mostly upsampling
                continue
            xs = sorted({int(round(p * (width - side))) for p in POSITIONS})
            ys = sorted({int(round(p * (height - side))) for p in POSITIONS})
            for top in ys:
                for left in xs:
                    box = (left, top, left + side, top + side)
                    crop = photo.crop(box).resize((FILE_SIZE, FILE_SIZE), Image.LANCZOS)
                    name = f"{source.name}_s{int(scale * 100):03d}_x{left}_y{top}"
                    crops.append((name, source, box, crop))
    return crops


def band_of(confidence: float) -> str:
    for band, low, high in BANDS:
        if low <= confidence < high:
            return band
    raise ValueError(f"confidence {confidence} outside [0, 1]")


@torch.no_grad()
def _classify(model, crops: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    from sparseviz.images import to_tensor

    labels, confidences = [], []
    for start in range(0, len(crops), 32):
        batch = torch.stack([model.preprocess(to_tensor(image)) for image in crops[start : start + 32]])
        probs = model.predict_proba(batch)
        confidence, label = probs.max(dim=1)
        labels.append(label.cpu())
        confidences.append(confidence.cpu())
    return torch.cat(labels), torch.cat(confidences)


def select(rows: list[dict], per_band: int = PER_BAND) -> list[dict]:
    """Draw ``per_band`` rows per band, spreading over sources (round-robin, fixed order)."""
    chosen: list[dict] = []
    per_source: dict[str, int] = {}
    per_source_class: dict[tuple[str, int], int] = {}
    for band, _, _ in BANDS:
        pool = [row for row in rows if row["band"] == band]
        by_source: dict[str, list[dict]] = {}
        for row in pool:
            by_source.setdefault(row["source"], []).append(row)
        taken = 0
        while taken < per_band and any(by_source.values()):
            for source in list(by_source):
                queue = by_source[source]
                while queue:
                    row = queue.pop(0)
                    key = (source, row["clean_label"])
                    if per_source.get(source, 0) < PER_SOURCE and per_source_class.get(key, 0) < PER_SOURCE_CLASS:
                        chosen.append(row)
                        per_source[source] = per_source.get(source, 0) + 1
                        per_source_class[key] = per_source_class.get(key, 0) + 1
                        taken += 1
                        break
                if taken >= per_band:
                    break
            by_source = {s: q for s, q in by_source.items() if q}
    return chosen


def make_devset(out: Path, model_name: str = "efficientnet_lite0") -> list[dict]:
    """Write the set's PNGs and ``manifest.csv`` into ``out``; return the manifest rows."""
    from sparseviz.models import load_model

    torch.set_grad_enabled(False)
    model = load_model(model_name, device="cpu")
    crops = candidate_crops()
    labels, confidences = _classify(model, [crop for *_, crop in crops])
    # Order inside a band: the stride over a fixed shuffle keeps the draw spread over scales/positions.
    order = np.random.default_rng(0).permutation(len(crops))
    rows = []
    for index in order:
        name, source, box, _ = crops[index]
        confidence = float(confidences[index])
        rows.append({
            "file": f"{name}.png",
            "source": source.name,
            "source_file": f"{source.package}:{source.relative}",
            "box": " ".join(map(str, box)),
            "licence": source.licence,
            "clean_label": int(labels[index]),
            "clean_name": model.class_names[int(labels[index])],
            "clean_confidence": round(confidence, 4),
            "band": band_of(confidence),
            "_index": int(index),
        })
    chosen = select(rows)
    out.mkdir(parents=True, exist_ok=True)
    for row in chosen:
        crops[row.pop("_index")][3].save(out / row["file"])
    chosen.sort(key=lambda row: row["file"])
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return chosen


def read_bands(folder: str | Path) -> dict[str, str]:
    """File name -> confidence band, from a dev set folder's ``manifest.csv`` (empty if none)."""
    path = Path(folder) / "manifest.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["file"]: row["band"] for row in csv.DictReader(handle)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/devset"))
    parser.add_argument("--model", default="efficientnet_lite0", help="reference model that assigns the bands")
    args = parser.parse_args(argv)
    rows = make_devset(args.out, args.model)
    counts = {band: sum(row["band"] == band for row in rows) for band, _, _ in BANDS}
    sources = sorted({row["source"] for row in rows})
    print(f"wrote {len(rows)} photos to {args.out} ({counts}); sources: {', '.join(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
