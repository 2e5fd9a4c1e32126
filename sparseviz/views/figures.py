"""Static PNG figures of an :class:`~sparseviz.interpret.Explanation` (Pillow only, for the CLI).

Nothing is computed here that the explanation does not already hold; the colour range
of the 2x2 maps is ``explanation.vmin..vmax``, shared by all four panels and labelled
"shared scale" on the colour bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from ..attacks.base import AttackResult, to_uint8
from ..explain.interpret import MAP_KEYS, Explanation
from ..explain.proof import VERDICTS
from .colours import KIND_COLOURS as KIND_HEX

KIND_COLOURS = {kind: ImageColor.getrgb(colour)[:3] for kind, colour in KIND_HEX.items()}  # the app's colours, as RGB
_PANEL = 224
_FONT = ImageFont.load_default()


def _colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 on a black-red-yellow-white ramp (monotone in brightness)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    stops = np.array([[0, 0, 0], [180, 0, 0], [255, 200, 0], [255, 255, 255]], dtype=np.float32)
    pos = v * (len(stops) - 1)
    low = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = pos - low
    return (stops[low[..., 0]] * (1 - frac) + stops[low[..., 0] + 1] * frac).astype(np.uint8)


def _image(tensor) -> Image.Image:
    return Image.fromarray(to_uint8(tensor).permute(1, 2, 0).numpy())


def maps_figure(explanation: Explanation, result: AttackResult) -> Image.Image:
    """2x2 maps (rows: clean / adversarial image; columns: true / adversarial class) + shared colour bar."""
    if not explanation.maps:
        raise ValueError("this explanation has no maps (made by explain_pixels); call explain() for figures.")
    span = max(explanation.vmax - explanation.vmin, 1e-12)
    pad, title_h, bar_w = 8, 18, 60
    width = 2 * _PANEL + 3 * pad + bar_w
    height = 2 * (_PANEL + title_h) + 3 * pad + 20
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    photos = {"clean": _image(result.originals[explanation.index]), "adv": _image(result.adversarials[explanation.index])}
    names = {"true": explanation.true_name or str(explanation.true_label), "adv": explanation.adv_name or str(explanation.adv_label)}
    for key in MAP_KEYS:
        image_key, class_key = key
        row, col = (0 if image_key == "clean" else 1), (0 if class_key == "true" else 1)
        heat = _colormap((explanation.maps[key] - explanation.vmin) / span)
        photo = np.asarray(photos[image_key].convert("L").convert("RGB"), dtype=np.float32)
        blend = Image.fromarray((0.45 * photo + 0.55 * heat).astype(np.uint8)).resize((_PANEL, _PANEL), Image.Resampling.NEAREST)
        x0, y0 = pad + col * (_PANEL + pad), pad + row * (_PANEL + title_h + pad)
        draw.text((x0, y0), f"{image_key} image / {class_key}: {names[class_key]}"[:38], fill="black", font=_FONT)
        canvas.paste(blend, (x0, y0 + title_h))
        f = _PANEL / explanation.maps[key].shape[1]
        for p in explanation.pixels:  # changed pixels ringed in their label's colour
            cx, cy = x0 + (p.x + 0.5) * f, y0 + title_h + (p.y + 0.5) * f
            draw.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), outline=KIND_COLOURS[p.label], width=1)
    # the one colour bar for all four panels
    bar_x, bar_y, bar_h = 2 * _PANEL + 3 * pad, pad + title_h, 2 * _PANEL + title_h + pad
    ramp = _colormap(np.linspace(1, 0, bar_h)[:, None].repeat(14, axis=1))
    canvas.paste(Image.fromarray(ramp), (bar_x, bar_y))
    draw.text((bar_x + 16, bar_y), f"{explanation.vmax:.2g}", fill="black", font=_FONT)
    draw.text((bar_x + 16, bar_y + bar_h - 10), f"{explanation.vmin:.2g}", fill="black", font=_FONT)
    draw.text((bar_x - 2, bar_y - title_h), "shared", fill="black", font=_FONT)
    draw.text((pad, height - 18), f"{explanation.method}: all four maps share one colour scale (shared scale "
              f"{explanation.vmin:.3g}..{explanation.vmax:.3g})", fill="black", font=_FONT)
    return canvas


def pixels_figure(explanation: Explanation, result: AttackResult, scale: int | None = None) -> Image.Image:
    """The adversarial image, each perturbed pixel ringed in the colour of its final label, with a legend."""
    photo = _image(result.adversarials[explanation.index])
    w, h = photo.size
    scale = scale or max(2, 448 // max(w, h))
    big = photo.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (max(big.width, 260), big.height + 16 * len(KIND_COLOURS) + 8), "white")
    canvas.paste(big, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for p in explanation.pixels:
        cx, cy = p.x * scale + scale // 2, p.y * scale + scale // 2
        r = 3 * scale
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=KIND_COLOURS[p.label], width=2)
    for k, (kind, colour) in enumerate(KIND_COLOURS.items()):
        y = big.height + 4 + 16 * k
        draw.rectangle((4, y, 16, y + 12), fill=colour)
        draw.text((22, y), f"{kind}: {explanation.counts.get(kind, 0)} px", fill="black", font=_FONT)
    return canvas


def _signed_bars(draw: ImageDraw.ImageDraw, rows: list[tuple[str, list[tuple[float, tuple[int, int, int], str]]]],
                 top: int, width: int, label_w: int = 170, row_h: int = 30) -> None:
    """Horizontal bars around a zero line; each row holds (value, colour, text) bars."""
    peak = max([abs(v) for _, bars in rows for v, _, _ in bars] + [1e-9])
    zero = label_w + (width - label_w - 60) // 3
    scale = (width - zero - 60) / peak
    for k, (name, bars) in enumerate(rows):
        y = top + k * row_h
        draw.text((8, y + 6), name[:28], fill="black", font=_FONT)
        for j, (value, colour, text) in enumerate(bars):
            yy = y + j * (row_h // max(len(bars), 1))
            end = zero + int(value * scale)
            draw.rectangle((min(zero, end), yy, max(zero, end), yy + 10), fill=colour)
            draw.text((max(zero, end) + 4, yy), text, fill="black", font=_FONT)
    draw.line((zero, top, zero, top + row_h * len(rows)), fill="black")


def ablation_figure(explanation: Explanation, width: int = 560) -> Image.Image:
    """Bars per group (clean + only these pixels): true-class evidence drop and adversarial rise."""
    rows = [r for r in explanation.ablation if r.group != "clean"]
    height = 16 + 20 + 30 * len(rows) + 40
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), f"clean + only these pixels: drop of '{explanation.true_name}' evidence (blue), rise of "
              f"'{explanation.adv_name}' (red)"[:92], fill="black", font=_FONT)
    _signed_bars(draw, [(f"{r.group} [{r.pixels} px]", [
        (r.true_drop, (40, 110, 230), f"{r.true_drop:.2f} (p={r.true_prob:.2f})"),
        (r.adv_rise, (230, 50, 50), f"{r.adv_rise:.2f} (p={r.adv_prob:.2f})")]) for r in rows], 30, width)
    verdict = VERDICTS[explanation.verdict]
    draw.text((8, height - 22), f"the obscuring/leading split {verdict} on this image"[:92], fill="black", font=_FONT)
    return canvas


def contributions_figure(explanation: Explanation, width: int = 640, max_pixels: int = 40) -> Image.Image:
    """One row per changed pixel (largest first): obscuring (blue) and leading (red) contribution."""
    ranked = sorted(explanation.pixels, key=lambda p: -(p.obscuring + p.leading))[:max_pixels]
    height = 30 + 24 * len(ranked) + 50
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), f"per-pixel contributions ({explanation.split_method}, {explanation.split_note}); "
              f"completeness error {explanation.completeness_error:.3f}"[:100], fill="black", font=_FONT)
    blue, red = KIND_COLOURS["obscuring"], KIND_COLOURS["leading"]
    _signed_bars(draw, [(f"({p.y},{p.x}) {p.label}", [(p.obscuring, blue, f"{p.obscuring:.3f}"),
                                                      (p.leading, red, f"{p.leading:.3f}")]) for p in ranked],
                 30, width, row_h=24)
    for k, line in enumerate(_wrap(explanation.sentence, 100)[:2]):
        draw.text((8, height - 40 + 14 * k), line, fill="black", font=_FONT)
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def save_figures(explanation: Explanation, result: AttackResult, folder: str | Path) -> list[Path]:
    """Write maps.png (when there are maps), pixels.png, ablation.png and contributions.png; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if explanation.maps:
        written.append(folder / "maps.png")
        maps_figure(explanation, result).save(written[-1])
    written.append(folder / "pixels.png")
    pixels_figure(explanation, result).save(written[-1])
    written.append(folder / "ablation.png")
    ablation_figure(explanation).save(written[-1])
    written.append(folder / "contributions.png")
    contributions_figure(explanation).save(written[-1])
    return written
