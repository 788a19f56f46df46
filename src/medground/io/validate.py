"""Checks that an image is usable; every failure is a one-sentence ``MedGroundInputError``."""
from __future__ import annotations

import numpy as np

from medground.io.image import MedGroundInputError, MedImage


def _describe(name: str | None) -> str:
    return f"{name}" if name else "the image"


def check_array(data: np.ndarray, name: str | None = None) -> None:
    """Value checks shared by loaded images and arrays given through the Python API."""
    what = _describe(name)
    if not isinstance(data, np.ndarray):
        raise MedGroundInputError(f"{what} is not a numpy array (got {type(data).__name__}).")
    if data.dtype.kind not in "biuf":
        raise MedGroundInputError(f"{what} has unsupported voxel type {data.dtype}; numbers are needed.")
    if data.size == 0 or 0 in data.shape:
        raise MedGroundInputError(f"{what} is empty (shape {tuple(data.shape)}, zero voxels).")
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(data.size - finite.sum() - n_nan)
            raise MedGroundInputError(
                f"{what} contains {n_nan} NaN and {n_inf} infinite voxel values; "
                "replace them (e.g. with np.nan_to_num) before use."
            )
    lo, hi = data.min(), data.max()
    if lo == hi:
        raise MedGroundInputError(
            f"{what} is constant (every voxel equals {lo.item()!r}), so there is nothing to see or segment."
        )


def validate(image, name: str | None = None):
    """Check a :class:`MedImage` (or a plain numpy array) and return it unchanged.

    Raises :class:`MedGroundInputError` for: an empty (zero-size) image, a 4D+ image (several
    volumes), NaN/Inf voxels, a constant image, a non-numeric voxel type, or a degenerate affine.
    """
    if isinstance(image, np.ndarray):
        if image.ndim > 4 or (image.ndim == 4 and image.shape[3] not in (1, 3, 4)):
            raise MedGroundInputError(
                f"{_describe(name)} has {image.ndim} dimensions {tuple(image.shape)}; a single 2D or 3D "
                "image (optionally with 3 colour channels) is needed."
            )
        check_array(image, name)
        return image
    if not isinstance(image, MedImage):
        raise MedGroundInputError(
            f"expected a MedImage or a numpy array, got {type(image).__name__}."
        )
    name = name or (image.source_path and _short(image.source_path))
    what = _describe(name)
    d = image.data
    if not isinstance(d, np.ndarray):
        raise MedGroundInputError(f"{what} has no voxel array.")
    if d.size == 0:
        raise MedGroundInputError(f"{what} is empty (shape {tuple(d.shape)}, zero voxels).")
    if d.ndim < 3:
        raise MedGroundInputError(
            f"{what} has data of shape {tuple(d.shape)}; MedImage data must be (X, Y, Z) or (X, Y, Z, C)."
        )
    if d.ndim > 4:
        raise MedGroundInputError(
            f"{what} is {d.ndim}D (shape {tuple(d.shape)}); a single 2D or 3D volume is needed."
        )
    if d.ndim == 4 and d.shape[3] not in (1, 3, 4):
        raise MedGroundInputError(
            f"{what} is 4D (shape {tuple(d.shape)}: {d.shape[3]} volumes, e.g. time points or "
            "diffusion directions); a single volume is needed."
        )
    check_array(d, name)
    if image.ndim not in (2, 3):
        raise MedGroundInputError(f"{what} has ndim={image.ndim}; it must be 2 or 3.")
    if image.ndim == 2 and d.shape[2] != 1:
        raise MedGroundInputError(f"{what} is marked 2D but has {d.shape[2]} slices.")
    aff = np.asarray(image.affine, dtype=float)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise MedGroundInputError(f"{what} has an invalid affine (must be a finite 4x4 matrix).")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise MedGroundInputError(
            f"{what} has a degenerate affine (zero voxel size or collinear axes), so its geometry is unusable."
        )
    return image


def _short(path: str) -> str:
    from pathlib import Path

    return Path(path).name or str(path)
