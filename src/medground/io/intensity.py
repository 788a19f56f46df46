"""Modality-aware scaling of voxel values to [0, 1] for display and for the network.

* CT in Hounsfield units: a window (default soft tissue, level 40 / width 400); named windows
  below or an explicit ``(level, width)``.
* MR, radiographs (MONOCHROME1 already inverted by ``load``), 16-bit pictures and anything else:
  clipped to the 0.5-99.5 percentiles of the **whole volume** (not per slice), then scaled.
* 8-bit pictures / already-windowed uint8 data: divided by 255.
"""
from __future__ import annotations

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

#: Named CT windows: (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft": (40.0, 400.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 150.0),
    "mediastinum": (50.0, 350.0),
    "stroke": (40.0, 40.0),
    "subdural": (75.0, 215.0),
}
DEFAULT_CT_WINDOW = "soft"
PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 2_000_000
_CACHE_ATTR = "_medground_intensity_cache"


def looks_windowed_uint8(image: MedImage) -> bool:
    """True for 8-bit data (pictures, or a CT already windowed and saved as uint8)."""
    return image.data.dtype == np.uint8


def looks_like_hu(image: MedImage) -> bool:
    """True when values look like Hounsfield units (air near -1000)."""
    if image.data.dtype == np.uint8:
        return False
    lo, hi = _percentiles(image, (0.5, 99.5))
    return lo < -400 and hi > -200 and lo >= -3100


HU_OFFSETS = (1024, 32768)  # what 16-bit pictures of CT add to Hounsfield units (e.g. DeepLesion's key slices: 32768)


def hu_offset(data: np.ndarray) -> int | None:
    """The offset a 16-bit grey picture (or stack) adds to Hounsfield units, or None when it does not look like CT.

    Every test must hold, so that a radiograph or an MR exported as 16 bits is left alone: air outside the body
    (>= 3% of values within -1100..-900 HU), soft tissue as the dominant band (>= 10% within -150..150 HU, at least
    twice the two bands beside it, -450..-150 and 150..450, together), some bone or contrast (>= 0.1% at 250 HU or
    more) and nothing past 3100 HU (< 0.1%)."""
    if data.dtype != np.uint16:
        return None
    raw = _sample(np.asarray(data)).astype(np.int64)
    if raw.size == 0:
        return None
    for off in HU_OFFSETS:
        h = raw - off
        frac = lambda lo, hi: float(np.mean((h >= lo) & (h <= hi)))  # noqa: E731
        soft = frac(-150, 150)
        if (frac(-1100, -900) >= 0.03 and soft >= 0.10 and soft >= 2 * (frac(-450, -151) + frac(151, 450))
                and float(np.mean(h >= 250)) >= 0.001 and float(np.mean(h > 3100)) < 0.001):
            return off
    return None


def _sample(g: np.ndarray) -> np.ndarray:
    flat = g.reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: int(np.ceil(flat.size / _MAX_SAMPLES))]
    return flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat


def _percentiles(image: MedImage, q=PERCENTILES) -> tuple[float, float]:
    """Whole-volume percentiles of the grey values (cached on the image object)."""
    key = (id(image.data), image.data.shape, tuple(q))
    cache = image.__dict__.setdefault(_CACHE_ATTR, {})
    if key not in cache:
        vals = _sample(image.data if not image.is_color else image.gray())
        if vals.size == 0:
            raise MedGroundInputError("the image has no finite voxel values.")
        lo, hi = np.percentile(vals, q)
        cache[key] = (float(lo), float(hi))
    return cache[key]


def resolve_window(window) -> tuple[float, float]:
    """A window name or (level, width) -> (level, width)."""
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in CT_WINDOWS:
            raise MedGroundInputError(
                f"unknown window {window!r}; use one of {', '.join(sorted(CT_WINDOWS))} or 'level,width'."
            )
        return CT_WINDOWS[key]
    try:
        level, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise MedGroundInputError(f"a window must be a name or (level, width), not {window!r}.") from exc
    if not width > 0:
        raise MedGroundInputError(f"the window width must be positive, not {width}.")
    return level, width


def parse_window(text: str | None):
    """CLI helper: 'lung' -> 'lung'; '40,400' -> (40.0, 400.0); None/'' -> None."""
    if text is None or str(text).strip() == "":
        return None
    t = str(text).strip()
    if "," in t:
        parts = t.split(",")
        if len(parts) != 2:
            raise MedGroundInputError(f"a window is 'level,width', not {text!r}.")
        try:
            return float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise MedGroundInputError(f"a window is 'level,width' with numbers, not {text!r}.") from exc
    return t


def intensity_range(image: MedImage, window=None) -> tuple[float, float, str]:
    """The (low, high) value mapped to (0, 1) and how it was chosen."""
    if window is not None and not (isinstance(window, str) and window.lower() in ("auto", "percentile", "minmax", "dicom")):
        level, width = resolve_window(window)
        return level - width / 2.0, level + width / 2.0, "window"
    mode = window.lower() if isinstance(window, str) else "auto"
    if mode == "dicom":
        wc, ww = image.meta.get("window_center"), image.meta.get("window_width")
        if wc is not None and ww:
            return float(wc) - float(ww) / 2.0, float(wc) + float(ww) / 2.0, "dicom-window"
        mode = "auto"
    if mode == "minmax":
        vals = _sample(image.gray() if image.is_color else image.data)
        return float(vals.min()), float(vals.max()), "minmax"
    if mode == "auto":
        if looks_windowed_uint8(image):
            return 0.0, 255.0, "uint8"
        if image.modality.upper() == "CT" and looks_like_hu(image):
            level, width = CT_WINDOWS[DEFAULT_CT_WINDOW]
            return level - width / 2.0, level + width / 2.0, "ct-window"
    lo, hi = _percentiles(image)
    if hi <= lo:  # nearly constant: fall back to the full range
        vals = _sample(image.gray() if image.is_color else image.data)
        lo, hi = float(vals.min()), float(vals.max())
    return lo, hi, "percentile"


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = values.astype(np.float32, copy=True)
    if hi <= lo:
        return np.zeros_like(out)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if out.dtype.kind == "f":
        np.nan_to_num(out, copy=False, nan=0.0)
    return out


def to_unit_range(image: MedImage, z: int | None = None, window=None) -> np.ndarray:
    """Grey values scaled to float32 [0, 1], shape ``(X, Y, Z)`` or ``(X, Y)`` for slice ``z``.

    ``window``: None (modality default), a CT window name (``soft``/``abdomen``, ``lung``, ``bone``,
    ``brain``, ``liver``, ``mediastinum``, ...), ``(level, width)``, ``'dicom'`` (header window),
    ``'percentile'`` or ``'minmax'``.
    """
    if z is not None and not (0 <= int(z) < image.shape[2]):
        raise MedGroundInputError(f"slice {z} is outside the image (0..{image.shape[2] - 1}).")
    lo, hi, _how = intensity_range(image, window)
    if image.is_color:
        g = image.gray() if z is None else image.gray()[:, :, int(z)]
    else:
        g = image.data if z is None else image.data[:, :, int(z)]
    return _scale(g, lo, hi)


def to_unit_rgb(image: MedImage, z: int | None = None, window=None) -> np.ndarray:
    """Colour kept: float32 [0, 1] of shape ``(X, Y, Z, 3)`` (or ``(X, Y, 3)`` for slice ``z``).
    Grey images are scaled like :func:`to_unit_range` and repeated on 3 channels."""
    if not image.is_color:
        g = to_unit_range(image, z=z, window=window)
        return np.repeat(g[..., None], 3, axis=-1)
    if z is not None and not (0 <= int(z) < image.shape[2]):
        raise MedGroundInputError(f"slice {z} is outside the image (0..{image.shape[2] - 1}).")
    d = image.data[..., :3] if z is None else image.data[:, :, int(z), :3]
    if d.dtype == np.uint8:
        return d.astype(np.float32) / np.float32(255.0)
    if d.dtype.kind == "u":
        return d.astype(np.float32) / np.float32(np.iinfo(d.dtype).max)
    lo, hi, _ = intensity_range(image, window)
    return _scale(d, lo, hi)
