"""The one image type of medground: voxel data plus full geometry.

Conventions (see docs/CONVENTIONS.md):

* ``data`` is always indexed ``[x, y, z]`` (ITK / NIfTI index order) with an optional trailing
  channel axis for colour images: shape ``(X, Y, Z)`` or ``(X, Y, Z, C)``. A 2D image has ``Z == 1``
  and ``ndim == 2``. For a 2D picture ``x`` is the column and ``y`` the row (PIL's ``(col, row)``).
* ``affine`` is a 4x4 matrix mapping voxel indices ``(x, y, z, 1)`` to world coordinates in
  millimetres in the **RAS+** frame (NIfTI convention). DICOM's LPS is converted on reading.
* ``has_geometry`` is False for pictures without a physical frame (PNG/JPG); their affine is the
  identity and sizes are in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class MedGroundInputError(ValueError):
    """Bad user input (file, prompt, box...). The CLI prints its message on one line and exits 2."""


@dataclass
class MedImage:
    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    ndim: int = 3
    modality: str = "OT"  # DICOM-style code: CT, MR, CR/DX (radiograph), US, NM, PT, XC (photo), OT
    has_geometry: bool = True
    photometric: str = "MONOCHROME2"
    source_path: str | None = None
    source_format: str = "unknown"  # nifti, nrrd, dicom, dicom-series, png, jpg, ...
    meta: dict[str, Any] = field(default_factory=dict)  # safe, de-identified metadata only
    dicom_datasets: list | None = field(default=None, repr=False)  # source DICOM (for SEG/SR refs)
    # For a multi-frame DICOM source (one dataset): 0-based frame number (in the file) of each z index.
    dicom_frame_order: list[int] | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        affine: np.ndarray | None = None,
        *,
        spacing=None,
        modality: str = "OT",
        layout: str = "xy",
        validate: bool = True,
    ) -> "MedImage":
        """Wrap a numpy array given through the Python API.

        ``layout="xy"`` (default) means the array is already indexed ``[x, y(, z)]`` as in
        ``MedImage.data``; ``layout="rc"`` means a picture-style ``[row, col(, channel)]`` array
        (what PIL/matplotlib give) for a 2D image, which is transposed. A 2D array becomes
        ``(X, Y, 1)`` with ``ndim == 2``. Without ``affine``/``spacing`` the image has no geometry.
        The array is checked by :func:`medground.io.validate` (empty, constant, NaN/Inf, 4D).
        """
        arr = np.asarray(array)
        color = False
        if layout not in ("xy", "rc"):
            raise ValueError("layout must be 'xy' or 'rc'")
        if layout == "rc":
            if arr.ndim == 2:
                arr = arr.T
            elif arr.ndim == 3 and arr.shape[2] in (3, 4):
                arr = arr[..., :3].transpose(1, 0, 2)
                color = True
            else:
                raise MedGroundInputError(
                    f"layout='rc' expects a 2D picture (rows, cols[, 3]); got shape {arr.shape}."
                )
        if arr.ndim == 2:
            arr, ndim = arr[:, :, None], 2
        elif color:
            arr, ndim = arr[:, :, None, :], 2
        else:
            ndim = 3 if arr.ndim >= 3 and arr.shape[2] > 1 else 2
        has_geometry = affine is not None or spacing is not None
        if affine is None:
            affine = np.eye(4)
            if spacing is not None:
                sp = list(np.atleast_1d(np.asarray(spacing, dtype=float)))
                sp = (sp + [1.0, 1.0, 1.0])[:3]
                affine[:3, :3] = np.diag(sp)
        img = cls(data=arr, affine=np.asarray(affine, dtype=float), ndim=ndim, modality=modality,
                  has_geometry=has_geometry, source_format="array")
        if validate:
            from medground.io.validate import validate as _validate

            _validate(img)
        return img

    # ----------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def is_color(self) -> bool:
        return self.data.ndim == 4

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along x, y, z (column norms of the affine)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix of unit column vectors (RAS) of the voxel axes."""
        sp = self.spacing
        sp = np.where(sp == 0, 1.0, sp)
        return self.affine[:3, :3] / sp[None, :]

    def voxel_to_world(self, ijk) -> np.ndarray:
        ijk = np.asarray(ijk, dtype=float)
        pts = np.atleast_2d(ijk)
        if pts.shape[1] == 2:
            pts = np.concatenate([pts, np.zeros((pts.shape[0], 1))], axis=1)
        out = pts @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out[0] if ijk.ndim == 1 else out

    def world_to_voxel(self, xyz) -> np.ndarray:
        xyz = np.asarray(xyz, dtype=float)
        pts = np.atleast_2d(xyz)
        inv = np.linalg.inv(self.affine)
        out = pts @ inv[:3, :3].T + inv[:3, 3]
        return out[0] if xyz.ndim == 1 else out

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def pixel_area_mm2(self) -> float:
        """Area of one pixel in the x-y plane (mm^2)."""
        a = self.affine[:3, 0]
        b = self.affine[:3, 1]
        return float(np.linalg.norm(np.cross(a, b)))

    def gray(self) -> np.ndarray:
        """Single-channel float32 data of shape (X, Y, Z) (colour averaged to luminance)."""
        d = self.data
        if d.ndim == 4:
            c = d.shape[3]
            if c >= 3:
                w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
                return (d[..., :3].astype(np.float32) * w).sum(axis=3)
            return d[..., 0].astype(np.float32)
        return d.astype(np.float32, copy=False)

    def with_data(self, data: np.ndarray, **kw) -> "MedImage":
        """A copy with new voxel data of the same spatial shape (e.g. a mask)."""
        if tuple(data.shape[:3]) != self.shape:
            raise ValueError(f"shape {data.shape[:3]} does not match image {self.shape}")
        fields = dict(
            affine=self.affine.copy(), ndim=self.ndim, modality=self.modality,
            has_geometry=self.has_geometry, photometric="MONOCHROME2",
            source_path=self.source_path, source_format=self.source_format,
            meta=dict(self.meta), dicom_datasets=self.dicom_datasets,
            dicom_frame_order=self.dicom_frame_order,
        )
        fields.update(kw)
        return MedImage(data=data, **fields)

    def summary(self) -> dict[str, Any]:
        g = self.gray()
        finite = np.isfinite(g)
        vals = g[finite]
        return {
            "format": self.source_format,
            "ndim": self.ndim,
            "shape": list(self.shape) if self.ndim == 3 else list(self.shape[:2]),
            "channels": int(self.data.shape[3]) if self.is_color else 1,
            "modality": self.modality,
            "has_geometry": self.has_geometry,
            "spacing_mm": [round(float(s), 6) for s in (self.spacing if self.ndim == 3 else self.spacing[:2])],
            "origin_mm_ras": [round(float(v), 4) for v in self.origin],
            "direction_ras": np.round(self.direction, 6).tolist(),
            "orientation": axcodes(self.affine),
            "intensity": {
                "dtype": str(self.data.dtype),
                "min": float(vals.min()) if vals.size else None,
                "max": float(vals.max()) if vals.size else None,
                "mean": float(vals.mean()) if vals.size else None,
                "std": float(vals.std()) if vals.size else None,
                "p1": float(np.percentile(vals, 1)) if vals.size else None,
                "p99": float(np.percentile(vals, 99)) if vals.size else None,
                "nonfinite_voxels": int((~finite).sum()),
            },
            "meta": {k: v for k, v in self.meta.items() if k != "slice_names"},  # slice_files shows the first few
        }


def orientation_unknown(image: MedImage) -> bool:
    """True for a volume whose header carries no orientation: a NIfTI with neither qform nor sform, or an
    affine that is exactly the identity (what tools write for an array saved without geometry). Reorienting
    such a volume "by its header" would apply an arbitrary flip, so it is treated like a picture; its voxel size
    and patient sides are unknown too."""
    if image.meta.get("qform_code") == 0 and image.meta.get("sform_code") == 0:
        return True
    return bool(np.array_equal(np.asarray(image.affine, dtype=float), np.eye(4)))


def axcodes(affine: np.ndarray) -> str:
    """Orientation code such as 'RAS' or 'LPS' (nibabel's aff2axcodes)."""
    import nibabel as nib

    try:
        return "".join(nib.aff2axcodes(affine))
    except Exception:  # degenerate affine
        return "???"
