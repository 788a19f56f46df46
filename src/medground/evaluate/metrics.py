"""Per-case segmentation metrics: one function, one result dictionary.

The overlap and surface metrics come from MONAI (``compute_dice``, ``compute_surface_dice``,
``compute_hausdorff_distance``); this module only prepares the masks, passes the spacing, and
fixes what every metric means when the reference and/or the prediction is empty.

Empty masks (a structure absent from the reference or not predicted) follow one stated rule:

========================  ======  =====  ======  =========
reference / prediction    dice    nsd    hd95    presence
========================  ======  =====  ======  =========
empty / empty             1.0     1.0    0.0     ``"TN"`` (true negative: absent, reported absent)
empty / non-empty         0.0     0.0    NaN     ``"FP"`` (false positive)
non-empty / empty         0.0     0.0    NaN     ``"FN"`` (missed structure)
non-empty / non-empty     MONAI   MONAI  MONAI   ``"TP"``
========================  ======  =====  ======  =========

Surface metrics use MONAI's boundary voxels (mask minus its erosion) and voxel-centre distances
scaled by ``spacing``: NSD = fraction of both boundaries lying within ``nsd_tolerance_mm`` of the
other (``compute_surface_dice``, no sub-voxel surfaces); HD95 = the 95th percentile of the symmetric
boundary distances (``compute_hausdorff_distance(percentile=95)``).

HD95 is undefined (NaN) when exactly one mask is empty: there is no surface to measure a distance
to. Aggregates therefore summarise HD95 over the finite values and count the undefined ones.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError

#: Order of the presence classes in count dictionaries.
PRESENCE_CLASSES = ("TP", "FP", "TN", "FN")


def _as_bool(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise MedGroundInputError(f"{name} mask must be a boolean or numeric array, got {arr.dtype}.")
        arr = arr > 0
    return arr


def _prepare(pred: Any, ref: Any, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Boolean 2D/3D masks (a trailing singleton z axis is dropped) and a matching spacing tuple."""
    p = _as_bool(pred, "prediction")
    r = _as_bool(ref, "reference")
    if p.shape != r.shape:
        raise MedGroundInputError(f"prediction shape {p.shape} does not match reference shape {r.shape}.")
    if p.ndim == 3 and p.shape[2] == 1:  # a 2D image stored as (X, Y, 1)
        p, r = p[:, :, 0], r[:, :, 0]
    if p.ndim not in (2, 3):
        raise MedGroundInputError(f"masks must be 2D or 3D, got {p.ndim} dimensions.")
    if spacing is None:
        sp = (1.0,) * p.ndim
    else:
        sp = tuple(float(s) for s in np.ravel(np.asarray(spacing, dtype=float)))
        if len(sp) > p.ndim:
            sp = sp[: p.ndim]  # e.g. (sx, sy, sz) given for a 2D slice
        if len(sp) != p.ndim:
            raise MedGroundInputError(f"spacing {tuple(spacing)} does not fit {p.ndim}D masks.")
        if not all(math.isfinite(s) and s > 0 for s in sp):
            raise MedGroundInputError(f"spacing must be positive, got {tuple(spacing)}.")
    return p, r, sp


def dice_score(pred: Any, ref: Any) -> float:
    """Plain Dice of two masks of the same shape (``> 0`` binarises), without MONAI or spacing: the quick
    overlap used inside loops (benchmarks, propagation checks). Follows the empty-mask rule above: both empty
    -> 1.0, exactly one empty -> 0.0."""
    p, r = np.asarray(pred) > 0, np.asarray(ref) > 0
    if p.shape != r.shape:
        raise MedGroundInputError(f"Prediction shape {p.shape} differs from reference shape {r.shape}.")
    s = int(p.sum()) + int(r.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(p, r).sum()) / s


def presence_class(pred_present: bool, ref_present: bool) -> str:
    """'TP', 'FP', 'TN' or 'FN' for structure presence (reference = truth)."""
    if ref_present:
        return "TP" if pred_present else "FN"
    return "FP" if pred_present else "TN"


def _monai_metrics(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...], tol: float) -> tuple[float, float, float]:
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

    yp = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)[None, None])
    yr = torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)[None, None])
    with warnings.catch_warnings():
        # MONAI warns about its own deprecated internals; the messages mean nothing to our users.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        dice = compute_dice(yp, yr, include_background=True)
        nsd = compute_surface_dice(yp, yr, [float(tol)], include_background=True, spacing=list(sp))
        hd95 = compute_hausdorff_distance(yp, yr, include_background=True, percentile=95, spacing=list(sp))
    return float(dice.item()), float(nsd.item()), float(hd95.item())


def compute_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    nsd_tolerance_mm: float = 2.0,
) -> dict[str, Any]:
    """Dice, NSD, HD95, sizes and presence class of one predicted mask against its reference.

    Parameters
    ----------
    pred, ref:
        Masks of the same shape, 2D ``(X, Y)`` / ``(X, Y, 1)`` or 3D ``(X, Y, Z)``; non-boolean
        arrays are binarised with ``> 0``.
    spacing:
        Voxel size in mm along each mask axis (``MedImage.spacing``). ``None`` means 1 per voxel:
        distances are then in voxels and sizes in voxels (``units == "voxel"``).
    nsd_tolerance_mm:
        Tolerance of the normalised surface distance (surface Dice), in the units of ``spacing``.

    Returns
    -------
    dict with ``dice``, ``nsd``, ``hd95`` (mm), ``pred_voxels``, ``ref_voxels``, ``pred_present``,
    ``ref_present``, ``presence`` (``"TP"|"FP"|"TN"|"FN"``), ``presence_counts`` (one-hot dict of
    the four classes, so rows can be summed), ``ndim``, ``units``, ``nsd_tolerance_mm`` and the sizes:
    ``volume_pred_ml``/``volume_ref_ml`` for 3D masks or ``area_pred_mm2``/``area_ref_mm2`` for 2D.

    Empty masks: reference and prediction both empty -> dice 1, nsd 1, hd95 0 (true negative);
    exactly one of them empty -> dice 0, nsd 0, hd95 NaN (false positive if the reference is
    empty, false negative if the prediction is). MONAI is only called when both are non-empty.
    """
    if not (isinstance(nsd_tolerance_mm, (int, float)) and nsd_tolerance_mm >= 0):
        raise MedGroundInputError(f"nsd_tolerance_mm must be a non-negative number, got {nsd_tolerance_mm!r}.")
    p, r, sp = _prepare(pred, ref, spacing)
    n_pred = int(p.sum())
    n_ref = int(r.sum())
    pred_present, ref_present = n_pred > 0, n_ref > 0
    presence = presence_class(pred_present, ref_present)

    if presence == "TN":
        dice, nsd, hd95 = 1.0, 1.0, 0.0
    elif presence in ("FP", "FN"):
        dice, nsd, hd95 = 0.0, 0.0, float("nan")
    else:
        dice, nsd, hd95 = _monai_metrics(p, r, sp, float(nsd_tolerance_mm))

    cell = float(np.prod(sp))
    out: dict[str, Any] = {
        "dice": dice,
        "nsd": nsd,
        "hd95": hd95,
        "nsd_tolerance_mm": float(nsd_tolerance_mm),
        "ndim": p.ndim,
        "units": "voxel" if spacing is None else "mm",
        "pred_voxels": n_pred,
        "ref_voxels": n_ref,
        "pred_present": pred_present,
        "ref_present": ref_present,
        "presence": presence,
        "presence_counts": {k: int(k == presence) for k in PRESENCE_CLASSES},
    }
    if p.ndim == 3:
        out["volume_pred_ml"] = n_pred * cell / 1000.0
        out["volume_ref_ml"] = n_ref * cell / 1000.0
    else:
        out["area_pred_mm2"] = n_pred * cell
        out["area_ref_mm2"] = n_ref * cell
    return out


__all__ = ["compute_metrics", "presence_class", "PRESENCE_CLASSES"]
