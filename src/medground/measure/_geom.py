"""Shared geometry helpers of medground.measure (masks, affines, outlines, hulls, calipers).

Outline points: a mask's outline is represented by the midpoints of the pixel (voxel) faces that
separate an inside pixel from an outside one, i.e. the vertices marching squares/cubes would put on
a binary mask. Lengths measured between them are edge-to-edge (a run of N pixels measures N pixel
widths), which is the unbiased estimate of a continuous object's extent.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

WORLD_AXIS_ROW = {"sagittal": 0, "coronal": 1, "axial": 2}  # plane -> RAS row of its normal (R, A, S)


def as_affine(image: Any) -> np.ndarray:
    """4x4 voxel->RAS affine of a MedImage or of a 4x4 (or 3x4) array."""
    if isinstance(image, MedImage):
        aff = np.asarray(image.affine, dtype=float)
    else:
        aff = np.asarray(image, dtype=float)
        if aff.shape == (3, 4):
            aff = np.vstack([aff, [0.0, 0.0, 0.0, 1.0]])
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise MedGroundInputError("image must be a MedImage or a finite 4x4 voxel-to-world affine.")
    if abs(np.linalg.det(aff[:3, :3])) == 0:
        raise MedGroundInputError("the image affine is singular (zero voxel size).")
    return aff


def as_mask3(mask: Any, image: Any = None) -> np.ndarray:
    """Boolean mask of shape (X, Y, Z); a 2D (X, Y) mask becomes (X, Y, 1). Checks the image shape."""
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number):
            raise MedGroundInputError(f"mask must be boolean or numeric, got {m.dtype}.")
        m = m > 0
    if m.ndim == 2:
        m = m[:, :, None]
    if m.ndim != 3:
        raise MedGroundInputError(f"mask must be 2D or 3D, got shape {m.shape}.")
    if isinstance(image, MedImage) and tuple(m.shape) != tuple(image.shape):
        raise MedGroundInputError(f"mask shape {m.shape} does not match image shape {tuple(image.shape)}.")
    return m


def is_2d(mask3: np.ndarray, image: Any) -> bool:
    if isinstance(image, MedImage):
        return image.ndim == 2 or mask3.shape[2] == 1
    return mask3.shape[2] == 1


def spacing_of(aff: np.ndarray) -> np.ndarray:
    return np.sqrt((aff[:3, :3] ** 2).sum(axis=0))


def to_world(aff: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    pts = np.atleast_2d(np.asarray(ijk, dtype=float))
    return pts @ aff[:3, :3].T + aff[:3, 3]


def slice_axis(aff: np.ndarray, plane: str) -> int:
    """Voxel axis whose direction is most aligned with the normal of ``plane`` (axial: S)."""
    if plane not in WORLD_AXIS_ROW:
        raise MedGroundInputError(f"plane must be one of {sorted(WORLD_AXIS_ROW)}, got {plane!r}.")
    direction = aff[:3, :3] / spacing_of(aff)[None, :]
    return int(np.argmax(np.abs(direction[WORLD_AXIS_ROW[plane], :])))


def inplane_axes(axis: int) -> tuple[int, int]:
    a, b = (ax for ax in range(3) if ax != axis)
    return a, b


def inplane_matrix(aff: np.ndarray, axis: int) -> np.ndarray:
    """2x2 M with ``[di, dj] @ M`` = orthonormal in-plane mm coordinates of an index offset.

    (i, j) are the two voxel axes other than ``axis``; the frame is e1 = column i (normalised),
    e2 = column j orthogonalised against e1, so distances are exact even for oblique/sheared grids.
    """
    i, j = inplane_axes(axis)
    a, b = aff[:3, i], aff[:3, j]
    e1 = a / np.linalg.norm(a)
    bp = b - (b @ e1) * e1
    nb = np.linalg.norm(bp)
    if nb == 0:
        raise MedGroundInputError("the image affine is degenerate in the measurement plane.")
    e2 = bp / nb
    return np.array([[a @ e1, 0.0], [b @ e1, b @ e2]])


def outline_points_2d(sl: np.ndarray) -> np.ndarray:
    """(N, 2) fractional (i, j) indices of the face midpoints on the outline of a 2D mask."""
    p = np.pad(sl, 1)
    core = p[1:-1, 1:-1]
    out = []
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = p[1 + di:p.shape[0] - 1 + di, 1 + dj:p.shape[1] - 1 + dj]
        idx = np.argwhere(core & ~nb).astype(float)
        if idx.size:
            idx += 0.5 * np.array([di, dj], dtype=float)
            out.append(idx)
    return np.concatenate(out) if out else np.zeros((0, 2))


def outline_points_3d(m: np.ndarray) -> np.ndarray:
    """(N, 3) fractional voxel indices of the exposed face midpoints of a 3D mask."""
    p = np.pad(m, 1)
    sx, sy, sz = p.shape
    core = p[1:-1, 1:-1, 1:-1]
    out = []
    for d in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
        nb = p[1 + d[0]:sx - 1 + d[0], 1 + d[1]:sy - 1 + d[1], 1 + d[2]:sz - 1 + d[2]]
        idx = np.argwhere(core & ~nb).astype(float)
        if idx.size:
            idx += 0.5 * np.array(d, dtype=float)
            out.append(idx)
    return np.concatenate(out) if out else np.zeros((0, 3))


def hull_vertices(pts: np.ndarray) -> np.ndarray:
    """Indices of the convex hull vertices of ``pts`` (2D: counter-clockwise); all points if degenerate."""
    n, d = pts.shape
    if n <= d + 1:
        return np.arange(n)
    from scipy.spatial import ConvexHull, QhullError

    try:
        return ConvexHull(pts).vertices
    except (QhullError, ValueError):
        try:  # flat input (e.g. a one-slice object in 3D): joggle to get the extreme points
            return ConvexHull(pts, qhull_options="QJ").vertices
        except (QhullError, ValueError):
            return np.arange(n)


def farthest_pair(pts: np.ndarray, chunk: int = 2048) -> tuple[float, int, int]:
    """Largest Euclidean distance between two rows of ``pts`` (exhaustive, chunked) and their indices."""
    n = len(pts)
    if n == 0:
        return 0.0, -1, -1
    if n == 1:
        return 0.0, 0, 0
    best, bi, bj = -1.0, 0, 0
    for s in range(0, n, chunk):
        block = pts[s:s + chunk]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
        k = int(np.argmax(d2))
        r, c = divmod(k, n)
        if d2[r, c] > best:
            best, bi, bj = float(d2[r, c]), s + r, c
    return float(np.sqrt(best)), bi, bj


def min_width_2d(hull_pts: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimum Feret (caliper) width of a convex polygon given by its vertices in order.

    Rotating calipers: the minimum width is attained with one caliper flush with a hull edge, so it
    is the minimum over edges of the largest vertex distance from that edge's line. Returns the
    width and the unit normal of that edge (the measuring direction).
    """
    n = len(hull_pts)
    if n < 3:
        if n == 2:
            d = hull_pts[1] - hull_pts[0]
            return 0.0, np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-12)
        return 0.0, np.array([1.0, 0.0])
    best, best_n = np.inf, np.array([1.0, 0.0])
    for k in range(n):
        p, q = hull_pts[k], hull_pts[(k + 1) % n]
        e = q - p
        le = np.linalg.norm(e)
        if le == 0:
            continue
        nrm = np.array([-e[1], e[0]]) / le
        w = float(np.max(np.abs((hull_pts - p) @ nrm)))
        if w < best:
            best, best_n = w, nrm
    return float(best), best_n
