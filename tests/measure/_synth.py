"""Synthetic geometry for the measure tests (masks defined in world mm, voxelised via an affine)."""
from __future__ import annotations

import numpy as np


def rot(axis: str, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def centred_affine(shape, columns: np.ndarray) -> np.ndarray:
    """4x4 affine with the given 3x3 voxel-axis columns whose grid centre maps to world (0, 0, 0)."""
    a = np.eye(4)
    a[:3, :3] = columns
    a[:3, 3] = -columns @ ((np.asarray(shape, dtype=float) - 1) / 2)
    return a


def world_points(shape, affine: np.ndarray) -> np.ndarray:
    idx = np.indices(shape).reshape(len(shape), -1).T.astype(float)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def ellipsoid(shape, affine, semi_axes, frame=np.eye(3), centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxels whose centre lies inside the ellipsoid with the given semi-axes (mm) along the columns of frame."""
    x = world_points(shape, affine) - np.asarray(centre)
    local = x @ frame
    return (((local / np.asarray(semi_axes, dtype=float)) ** 2).sum(1) <= 1.0).reshape(shape)


def cylinder(shape, affine, centre, radius, axis_dir) -> np.ndarray:
    x = world_points(shape, affine) - np.asarray(centre, dtype=float)
    u = np.asarray(axis_dir, dtype=float) / np.linalg.norm(axis_dir)
    perp = x - (x @ u)[:, None] * u
    return ((perp**2).sum(1) <= radius**2).reshape(shape)
