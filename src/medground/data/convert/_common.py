"""Helpers shared by the converters."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medground.data.orient import AxialTransform, to_canonical_volume
from medground.io.dicom import lps_affine  # noqa: F401  (re-exported for the converters)
from medground.io.image import MedImage


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def safe_id(name: str) -> str:
    """A case id usable as a folder name."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")
    return s or "case"


def load_nifti(path: Path, modality: str = "OT") -> MedImage:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    return MedImage(data=data, affine=np.asarray(img.affine, dtype=float), ndim=3, modality=modality,
                    source_path=str(path), source_format="nifti")


def canonical_pair(image: MedImage, label: np.ndarray) -> tuple[MedImage, np.ndarray, AxialTransform]:
    """Image and label re-ordered to canonical storage (LPS voxel order, no resampling)."""
    can, tr = to_canonical_volume(image)
    lab = np.transpose(tr.forward(label), (2, 1, 0))
    return can, np.ascontiguousarray(lab), tr


def resample_nearest(src: np.ndarray, src_affine: np.ndarray, dst_shape, dst_affine: np.ndarray,
                     fill: Any = 0) -> np.ndarray:
    """Nearest-neighbour resampling of ``src`` (any dtype) onto a destination grid, via world coordinates."""
    m = np.linalg.inv(src_affine) @ dst_affine
    out = np.full(tuple(dst_shape[:3]), fill, dtype=src.dtype)
    ii, jj = np.meshgrid(np.arange(dst_shape[0]), np.arange(dst_shape[1]), indexing="ij")
    for k in range(dst_shape[2]):
        pts = np.stack([ii, jj, np.full_like(ii, k), np.ones_like(ii)], axis=-1).reshape(-1, 4) @ m.T
        idx = np.rint(pts[:, :3]).astype(int)
        ok = np.all((idx >= 0) & (idx < np.asarray(src.shape[:3])), axis=1)
        sl = out[:, :, k].reshape(-1)
        sl[ok] = src[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
        out[:, :, k] = sl.reshape(dst_shape[0], dst_shape[1])
    return out


def read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127
