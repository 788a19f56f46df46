"""MR contrast check: is the input's grey scale the one the organ head learned, or its inverse?

The organ head learned abdominal MR from fat-suppressed T2 (CHAOS T2-SPIR: fat dark, fluid, spleen and
kidneys bright) and cardiac MR from cine bSSFP. A T1-weighted abdomen (fat bright, fluid dark) shows it the
opposite ordering of most tissues and it loses the organs (TotalSegmentator's MR example: liver Dice 0.03).
Inverting grey values *inside the body* (air stays dark) turns such an image into something close to what the
head knows (the same example: liver 0.89). Which of the two the head reads better is decided per volume from
the head itself: a few probe slices are scored in both versions and the inverse is used only when the
organs it is asked for become clearly more visible (:func:`choose_contrast`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from medground.io.image import MedImage


def otsu_threshold(values: np.ndarray, bins: int = 256, value_range: tuple[float, float] | None = None) -> float:
    """Otsu's threshold of ``values`` (a histogram of ``bins`` over ``value_range``, default their own range): the
    centre of the bin that best splits them in two classes."""
    h, e = np.histogram(values, bins, range=value_range)
    c = (e[:-1] + e[1:]) / 2
    w = np.cumsum(h).astype(np.float64)
    m = np.cumsum(h * c)
    total_w, total_m = w[-1], m[-1]
    between = (total_m * w / total_w - m) ** 2 / np.maximum(w * (total_w - w), 1e-9)
    return float(c[int(np.argmax(between[:-1]))])


def body_mask(data: np.ndarray) -> np.ndarray:
    """Voxels inside the body, per slice: above half an Otsu threshold of the volume, closed, holes filled
    (lungs and bowel gas inside the body stay in)."""
    d = np.asarray(data, dtype=np.float32)
    t = otsu_threshold(d[np.isfinite(d)].ravel())
    raw = d > 0.5 * t
    out = np.zeros_like(raw)
    for z in range(d.shape[2]):
        m = ndi.binary_closing(raw[:, :, z], iterations=3, border_value=0)
        out[:, :, z] = ndi.binary_fill_holes(m | raw[:, :, z])
    return out


def invert_within_body(image: MedImage) -> MedImage:
    """The same image with grey values mirrored inside the body (between its 1st and 99.5th percentiles)
    and the background set to the darkest value; geometry untouched."""
    d = image.data.astype(np.float32)
    body = body_mask(d)
    if not body.any():
        return image
    lo, hi = (float(v) for v in np.percentile(d[body], [1.0, 99.5]))
    inv = np.where(body, lo + hi - np.clip(d, lo, hi), lo).astype(np.float32)
    return dataclasses.replace(image, data=inv, photometric="MONOCHROME2",
                               meta={**image.meta, "contrast": "inverted within the body"})
