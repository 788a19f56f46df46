"""Chest-radiograph measurements: the cardiothoracic ratio (CTR)."""
from __future__ import annotations

from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.measure._geom import as_affine, as_mask3

_CTR_METHODS = {
    "extent": (
        "CTR on a PA chest radiograph (Danzer): transverse cardiac diameter = horizontal distance "
        "between the heart mask's leftmost and rightmost pixels (MRD + MLD, which may lie on different "
        "rows) / internal thoracic diameter = the widest row-wise distance between the outer edges of "
        "the two lung masks (rows where both lungs are present). Widths are pixel extents (last - first "
        "+ 1) along the image x axis; mm = pixels x the x pixel spacing."
    ),
    "row": (
        "CTR on a PA chest radiograph: cardiac width = the widest single row of the heart mask / internal "
        "thoracic diameter = the widest row-wise distance between the outer edges of the two lung masks "
        "(rows where both lungs are present). Widths are pixel extents (last - first + 1) along the image "
        "x axis; mm = pixels x the x pixel spacing."
    ),
}


def _mask2(mask: Any, image: Any, name: str) -> np.ndarray:
    m = as_mask3(mask, image if isinstance(image, MedImage) else None)
    if m.shape[2] != 1:
        raise MedGroundInputError(f"{name} mask must be 2D (a chest radiograph), got shape {m.shape}.")
    return m[:, :, 0]


def _row_extents(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row y: (present, first x, last x) of a 2D mask indexed [x, y]."""
    present = m.any(axis=0)
    nx = m.shape[0]
    first = np.where(present, np.argmax(m, axis=0), -1)
    last = np.where(present, nx - 1 - np.argmax(m[::-1, :], axis=0), -1)
    return present, first, last


def cardiothoracic_ratio(
    heart_mask: Any,
    lung_mask_left: Any,
    lung_mask_right: Any,
    image: Any = None,
    heart_method: str = "extent",
) -> dict[str, Any]:
    """Cardiothoracic ratio of a PA chest radiograph from heart and lung masks (indexed [x, y]).

    ``heart_method="extent"`` (default, the classical transverse cardiac diameter MRD + MLD):
    horizontal distance between the heart's leftmost and rightmost pixels over all rows;
    ``"row"``: the widest single row of the heart. The thoracic width is the widest row-wise
    distance between the outer edges of the two lungs, over rows where both lungs are present
    (the lung masks' outer edges approximate the inner rib margins).

    Returns ``ratio``, ``heart_width_px``, ``thoracic_width_px``, ``heart_width_mm`` and
    ``thoracic_width_mm`` (``None`` when the image has no physical pixel spacing),
    ``heart_rows`` (rows of the heart's left/right extreme pixels, or the widest row, twice),
    ``thoracic_row``, ``heart_x`` and ``thoracic_x`` (first/last columns), and ``method``.
    """
    if heart_method not in _CTR_METHODS:
        raise MedGroundInputError(f"heart_method must be one of {sorted(_CTR_METHODS)}, got {heart_method!r}.")
    heart = _mask2(heart_mask, image, "heart")
    left = _mask2(lung_mask_left, image, "left lung")
    right = _mask2(lung_mask_right, image, "right lung")
    if not (heart.shape == left.shape == right.shape):
        raise MedGroundInputError("heart and lung masks must have the same shape.")
    if not heart.any():
        raise MedGroundInputError("the heart mask is empty: no cardiothoracic ratio.")
    if not left.any() or not right.any():
        raise MedGroundInputError("a lung mask is empty: no cardiothoracic ratio.")

    # thorax: rows where both lungs are present, outer edges of their union
    lp, _, _ = _row_extents(left)
    rp, _, _ = _row_extents(right)
    both = lp & rp
    if not both.any():
        raise MedGroundInputError("the two lung masks share no image row: no thoracic width.")
    _, ufirst, ulast = _row_extents(left | right)
    twidth = np.where(both, ulast - ufirst + 1, 0)
    trow = int(np.argmax(twidth))
    thoracic_px = int(twidth[trow])

    hp, hfirst, hlast = _row_extents(heart)
    if heart_method == "extent":
        cols = np.nonzero(heart.any(axis=1))[0]
        x0, x1 = int(cols[0]), int(cols[-1])
        rows0, rows1 = np.nonzero(heart[x0])[0], np.nonzero(heart[x1])[0]
        heart_rows = [int(np.rint(np.median(rows0))), int(np.rint(np.median(rows1)))]
        heart_px = x1 - x0 + 1
    else:
        hwidth = np.where(hp, hlast - hfirst + 1, 0)
        hrow = int(np.argmax(hwidth))
        x0, x1 = int(hfirst[hrow]), int(hlast[hrow])
        heart_rows = [hrow, hrow]
        heart_px = int(hwidth[hrow])

    sx = None
    if image is not None and not (isinstance(image, MedImage) and not image.has_geometry):
        sx = float(np.linalg.norm(as_affine(image)[:3, 0]))
    return {
        "ratio": heart_px / thoracic_px,
        "heart_width_px": int(heart_px),
        "thoracic_width_px": thoracic_px,
        "heart_width_mm": heart_px * sx if sx else None,
        "thoracic_width_mm": thoracic_px * sx if sx else None,
        "heart_rows": heart_rows,
        "thoracic_row": trow,
        "heart_x": [x0, x1],
        "thoracic_x": [int(ufirst[trow]), int(ulast[trow])],
        "method": _CTR_METHODS[heart_method],
    }
