"""Size, intensity and position of a mask, in the image's own grid, honouring its world geometry.

Every function takes the mask in the image's grid (``(X, Y, Z)``, or ``(X, Y)`` / ``(X, Y, 1)`` for
a 2D image) and the :class:`~medground.io.image.MedImage` (or its 4x4 voxel->RAS affine), so
anisotropic and oblique voxels are measured correctly. Empty masks never raise: sizes are 0 and
positions / statistics are ``None``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.measure._geom import as_affine, as_mask3, is_2d, spacing_of, to_world


def voxel_volume_mm3(image: Any) -> float:
    """|det(affine[:3, :3])|: the volume of one voxel in mm^3."""
    return float(abs(np.linalg.det(as_affine(image)[:3, :3])))


def pixel_area_mm2(image: Any) -> float:
    """Area of one pixel in the x-y plane, |affine[:3, 0] x affine[:3, 1]| (mm^2)."""
    aff = as_affine(image)
    return float(np.linalg.norm(np.cross(aff[:3, 0], aff[:3, 1])))


def volume_ml(mask: Any, image: Any) -> float:
    """Volume of a 3D mask in millilitres: voxel count x |det(affine[:3, :3])| / 1000.

    Raises MedGroundInputError for a 2D image (use :func:`area_mm2`).
    """
    m = as_mask3(mask, image)
    if isinstance(image, MedImage) and image.ndim == 2:
        raise MedGroundInputError("volume_ml needs a 3D image; use area_mm2 for a 2D image.")
    return int(m.sum()) * voxel_volume_mm3(image) / 1000.0


def area_mm2(mask: Any, image: Any) -> float:
    """Area of a 2D mask in mm^2: pixel count x the pixel area from the affine's first two columns.

    For a picture without physical geometry (PNG/JPG, identity affine) the unit is pixels^2.
    """
    m = as_mask3(mask, image)
    if m.shape[2] != 1:
        raise MedGroundInputError("area_mm2 needs a 2D mask (X, Y) or (X, Y, 1); use volume_ml for 3D.")
    return int(m.sum()) * pixel_area_mm2(image)


def size(mask: Any, image: Any) -> dict[str, Any]:
    """``{"voxels", "volume_ml"}`` for a 3D mask or ``{"voxels", "area_mm2"}`` for a 2D one."""
    m = as_mask3(mask, image)
    if is_2d(m, image):
        return {"voxels": int(m.sum()), "area_mm2": area_mm2(m, image)}
    return {"voxels": int(m.sum()), "volume_ml": volume_ml(m, image)}


def intensity_stats(
    mask: Any, image: MedImage, percentiles: tuple[float, ...] = (5, 25, 50, 75, 95)
) -> dict[str, Any]:
    """Intensity statistics inside the mask (HU for CT): n, mean, sd, min, max and percentiles.

    Colour images are reduced to luminance (``MedImage.gray``); non-finite voxels are ignored.
    An empty mask gives ``n == 0`` and ``None`` for every statistic. ``sd`` is the population SD.
    Percentile keys are ``p5``, ``p25``, ``p50`` (the median), ``p75``, ``p95``.
    """
    if not isinstance(image, MedImage):
        raise MedGroundInputError("intensity_stats needs the MedImage (its voxel data), not only an affine.")
    m = as_mask3(mask, image)
    vals = image.gray()[m]
    vals = vals[np.isfinite(vals)].astype(np.float64)
    unit = "HU" if image.modality == "CT" else "intensity"
    keys = ["mean", "sd", "min", "max"] + [f"p{p:g}" for p in percentiles]
    if vals.size == 0:
        return {"n": 0, "unit": unit, **{k: None for k in keys}}
    out: dict[str, Any] = {
        "n": int(vals.size),
        "unit": unit,
        "mean": float(vals.mean()),
        "sd": float(vals.std()),
        "min": float(vals.min()),
        "max": float(vals.max()),
    }
    for p, v in zip(percentiles, np.percentile(vals, percentiles)):
        out[f"p{p:g}"] = float(v)
    return out


def centroid(mask: Any, image: Any) -> dict[str, Any]:
    """Centre of mass of the mask: ``voxel`` (fractional x, y[, z] indices) and ``world_mm`` (RAS).

    2D images give 2 voxel coordinates; ``world_mm`` always has 3. Empty mask: both ``None``.
    """
    m = as_mask3(mask, image)
    aff = as_affine(image)
    idx = np.argwhere(m)
    if idx.size == 0:
        return {"voxel": None, "world_mm": None}
    c = idx.mean(axis=0)
    world = to_world(aff, c)[0]
    vox = c[:2] if is_2d(m, image) else c
    return {"voxel": [float(v) for v in vox], "world_mm": [float(v) for v in world]}


def bbox(mask: Any, image: Any) -> dict[str, Any]:
    """Bounding box in voxel indices (inclusive ``min``/``max``) and its world-mm corners.

    ``world_corners_mm`` are the RAS positions of the voxel centres at the box corners (4 in 2D,
    8 in 3D); ``world_min_mm``/``world_max_mm`` bound them axis-aligned in RAS; ``size_mm`` is the
    full extent along each voxel axis ((max - min + 1) x voxel size). Empty mask: all ``None``.
    """
    m = as_mask3(mask, image)
    aff = as_affine(image)
    two_d = is_2d(m, image)
    idx = np.argwhere(m)
    keys = ("min", "max", "size_voxels", "size_mm", "world_corners_mm", "world_min_mm", "world_max_mm")
    if idx.size == 0:
        return {k: None for k in keys}
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    nd = 2 if two_d else 3
    corners = np.array(
        [[(hi if (c >> a) & 1 else lo)[a] for a in range(3)] for c in range(2 ** nd)], dtype=float
    )
    world = to_world(aff, corners)
    extent = (hi - lo + 1)[:nd]
    return {
        "min": [int(v) for v in lo[:nd]],
        "max": [int(v) for v in hi[:nd]],
        "size_voxels": [int(v) for v in extent],
        "size_mm": [float(v) for v in extent * spacing_of(aff)[:nd]],
        "world_corners_mm": world.tolist(),
        "world_min_mm": world.min(axis=0).tolist(),
        "world_max_mm": world.max(axis=0).tolist(),
    }


def components(mask: Any, image: Any = None, connectivity: str = "full") -> dict[str, Any]:
    """Connected components (``scipy.ndimage.label``) with their sizes, largest first.

    ``connectivity``: ``"full"`` (26-neighbourhood in 3D, 8 in 2D; the default) or ``"face"``
    (6 / 4). Returns ``{"n", "labels", "components"}``: ``labels`` is an int32 array of the input
    mask's shape, relabelled so that 1 is the largest component; each entry of ``components`` has
    ``label`` and ``voxels`` and, when ``image`` is given, ``volume_ml`` (3D) or ``area_mm2`` (2D).
    """
    from scipy import ndimage

    if connectivity not in ("full", "face"):
        raise MedGroundInputError(f"connectivity must be 'full' or 'face', got {connectivity!r}.")
    orig = np.asarray(mask)
    m = as_mask3(mask, image)
    two_d = is_2d(m, image) if image is not None else m.shape[2] == 1
    work = m[:, :, 0] if two_d else m
    structure = ndimage.generate_binary_structure(work.ndim, work.ndim if connectivity == "full" else 1)
    lab, n = ndimage.label(work, structure=structure)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[order + 1] = np.arange(1, n + 1, dtype=np.int32)
    lab = remap[lab]
    unit = None
    if image is not None:
        unit = ("area_mm2", pixel_area_mm2(image)) if two_d else ("volume_ml", voxel_volume_mm3(image) / 1000.0)
    comps = []
    for new, old in enumerate(order, start=1):
        c = {"label": new, "voxels": int(sizes[old])}
        if unit:
            c[unit[0]] = int(sizes[old]) * unit[1]
        comps.append(c)
    labels = lab.reshape(orig.shape) if lab.size == orig.size else lab
    return {"n": int(n), "labels": labels.astype(np.int32), "components": comps}
