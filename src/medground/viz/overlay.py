"""Overlay pictures: the image with coloured masks and their names, in display orientation.

Volumes with geometry are shown as axial slices in radiological convention (patient right on the
image left, anterior at the top); pictures without geometry are shown as stored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (230, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
]


def color_for(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def display_transform(image):
    """Return (to_display, from_display): functions mapping an (X, Y, Z[, C]) array to the display
    volume (axes: columns, rows, slices) and back. Identity for images without geometry."""
    from nibabel import orientations as no

    if not image.has_geometry or image.ndim == 2:
        return (lambda a: a), (lambda a: a)
    ornt = no.ornt_transform(no.io_orientation(image.affine), no.axcodes2ornt(("L", "P", "S")))
    inv = no.ornt_transform(no.axcodes2ornt(("L", "P", "S")), no.io_orientation(image.affine))

    def fwd(a):
        return no.apply_orientation(a, ornt) if a.ndim >= 3 else a

    def back(a):
        return no.apply_orientation(a, inv) if a.ndim >= 3 else a

    return fwd, back


def _to_rgb(slice_unit: np.ndarray) -> np.ndarray:
    """(X, Y) or (X, Y, 3) in [0,1] -> (rows, cols, 3) uint8."""
    s = np.clip(slice_unit, 0, 1)
    if s.ndim == 2:
        s = np.repeat(s[..., None], 3, axis=2)
    return (np.moveaxis(s, 0, 1) * 255).astype(np.uint8)


def _resize_xy(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(X, Y) or (X, Y, C) float array resized (bilinear) to ``size`` = (new X, new Y)."""
    from PIL import Image

    if a.ndim == 3:
        return np.stack([_resize_xy(a[..., c], size) for c in range(a.shape[2])], axis=-1)
    return np.asarray(Image.fromarray(np.ascontiguousarray(a.T, dtype=np.float32), mode="F")
                      .resize(size, Image.BILINEAR)).T


def _outline(m: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return m & ~ndimage.binary_erosion(m, iterations=1, border_value=0)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_label(draw, xy: tuple[int, int], text: str, font, fill=(255, 255, 255), stroke: int = 0) -> None:
    """Write ``text`` word by word with an explicit gap: the default FreeType font's space is ~2 px wide at
    small sizes, which ran multi-word names together ("rightadrenalgland"). ``stroke``: a dark outline that many
    pixels wide, so that the words read on bright images too."""
    x, y = xy
    gap = max(4, int(round(0.35 * getattr(font, "size", 10)))) + 2 * stroke
    for word in text.split(" "):
        if word:
            draw.text((x, y), word, fill=fill, font=font, stroke_width=stroke, stroke_fill=(0, 0, 0))
            x += int(draw.textlength(word, font=font)) + stroke
        x += gap


def render_overlay(image, masks: dict[str, np.ndarray], path: str | Path, z: int | None = None,
                   title: str | None = None, alpha: float = 0.35, min_size: int = 384,
                   max_size: int | None = 1024) -> Path:
    """Write a PNG of one slice with every mask filled (alpha) and outlined, with a legend.

    ``masks`` are (X, Y, Z) arrays in the image's own grid; ``z`` is the slice in the DISPLAY volume
    (default: the slice where the masks cover the most). A slice larger than ``max_size`` on its long side (a
    full-size radiograph) is drawn at that size: a picture to look at, not a mask (the masks keep the input's
    size); encoding a 2000 x 2000 RGB PNG per prompt took about 1 s.
    """
    from PIL import Image, ImageDraw

    from medground.io.intensity import to_unit_range

    fwd, _ = display_transform(image)
    unit = fwd(to_unit_range(image))
    dmasks = {k: fwd(np.asarray(v, dtype=bool)) for k, v in masks.items()}
    if z is None:
        total = sum((m.sum(axis=(0, 1)) for m in dmasks.values()), np.zeros(unit.shape[2]))
        z = int(np.argmax(total)) if np.any(total) else unit.shape[2] // 2
    grey = unit[:, :, z]
    shrink = (max_size / max(grey.shape)) if max_size and max(grey.shape) > max_size else 1.0
    if shrink < 1.0:
        size = (max(1, round(grey.shape[0] * shrink)), max(1, round(grey.shape[1] * shrink)))  # PIL: (width, height)
        grey = _resize_xy(grey, size)
    rgb = _to_rgb(grey).astype(np.float32)
    for i, (name, m) in enumerate(dmasks.items()):
        sl = m[:, :, z].T
        if shrink < 1.0 and sl.any():
            sl = np.asarray(Image.fromarray(sl.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) >= 128
        if not sl.any():
            continue
        c = np.array(color_for(i), dtype=np.float32)
        rgb[sl] = (1 - alpha) * rgb[sl] + alpha * c
        rgb[_outline(sl)] = c
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    scale = max(1, int(np.ceil(min_size / max(img.size))))
    if scale > 1:
        img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    fs = max(11, min(img.size) // 32)
    font = _font(fs)
    line = fs + 4
    stroke = max(1, fs // 14)
    y = 4
    if title:
        draw_label(draw, (5, y), title, font, stroke=stroke)
        y += line
    for i, name in enumerate(dmasks):
        draw.rectangle([5, y + 2, 5 + fs - 2, y + fs], fill=color_for(i))
        draw_label(draw, (8 + fs, y), name, font, stroke=stroke)
        y += line
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
