"""Pictures for the classifier: any ``MedImage`` -> small RGB thumbnails (rows, cols, 3) uint8.

A 2D image gives one picture (``data[:, :, 0].T``: rows = y, cols = x, colour kept). A volume gives a few
slices in its acquisition plane (the plane is read from the affine), each shown like a viewer shows it
(radiological convention), so that a volume and a screenshot of one of its slices look alike.
Every picture is squashed to ``size x size``; its physical aspect ratio (width / height) is kept aside as a cue.
"""
from __future__ import annotations

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

THUMB = 96  # stored thumbnail size; the network sees a (random / centre) crop resized to INPUT
INPUT = 64


def resize_rgb(pic: np.ndarray, size: int = THUMB) -> np.ndarray:
    """(H, W[, 3]) float in [0, 1] or uint8 -> (size, size, 3) uint8 (area-averaged, aspect squashed)."""
    from PIL import Image

    a = np.asarray(pic)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    im = Image.fromarray(np.ascontiguousarray(a[..., :3]))
    return np.asarray(im.resize((size, size), Image.BILINEAR if min(a.shape[:2]) < size else Image.BOX))


def plane_of(image: MedImage) -> str | None:
    """Acquisition plane of a volume's slices from its affine: 'axial' | 'coronal' | 'sagittal' (None without
    geometry or for an identity affine, where the plane is unknown)."""
    if image.ndim != 3 or not image.has_geometry:
        return None
    a = np.asarray(image.affine, dtype=float)
    if image.meta.get("qform_code", 1) == 0 and image.meta.get("sform_code", 1) == 0:
        return None  # NIfTI without a stored orientation
    normal = a[:3, 2] / (np.linalg.norm(a[:3, 2]) + 1e-9)
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def _display(slice_xy: np.ndarray, plane: str | None) -> np.ndarray:
    """A [x, y] slice of a RAS-ordered volume -> picture rows/cols in viewer convention."""
    pic = slice_xy.swapaxes(0, 1)  # rows = second axis
    if plane in ("axial", "coronal", "sagittal"):
        pic = pic[::-1, ::-1]
    return pic


def ras_volume(image: MedImage, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled voxels (X, Y, Z[, 3]) reordered to RAS axes; returns (array, spacing per axis)."""
    import nibabel as nib

    a = np.asarray(image.affine, dtype=float)
    ornt = nib.orientations.io_orientation(a)
    arr = nib.orientations.apply_orientation(unit, ornt)
    sp = np.sqrt((a[:3, :3] ** 2).sum(0))
    sp = sp[np.argsort(ornt[:, 0])]
    return np.ascontiguousarray(arr), sp


def cut(vol_ras: np.ndarray, spacing: np.ndarray, plane: str, frac: float) -> tuple[np.ndarray, float]:
    """One display slice of a RAS volume at relative depth ``frac`` -> (picture, physical aspect w/h)."""
    ax = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    k = int(round(frac * (vol_ras.shape[ax] - 1)))
    sl = np.take(vol_ras, k, axis=ax)
    rest = [i for i in range(3) if i != ax]
    pic = _display(sl, plane)
    aspect = (vol_ras.shape[rest[0]] * spacing[rest[0]]) / max(vol_ras.shape[rest[1]] * spacing[rest[1]], 1e-6)
    return pic, float(aspect)


def image_pictures(image: MedImage, n_slices: int = 3, window=None) -> tuple[list[np.ndarray], list[float], str | None]:
    """The pictures the classifier looks at for one image: ``(thumbnails uint8 (THUMB, THUMB, 3), aspects,
    plane)``. 2D: one picture. 3D: ``n_slices`` slices around the middle of the acquisition plane."""
    from medground.io.intensity import to_unit_rgb

    if image.data.size == 0:
        raise MedGroundInputError("the image is empty.")
    sp = np.asarray(image.spacing, dtype=float) if image.has_geometry else np.ones(3)
    if image.ndim == 2 or image.shape[2] == 1:
        pic = to_unit_rgb(image, z=0, window=window).transpose(1, 0, 2)
        aspect = (image.shape[0] * sp[0]) / max(image.shape[1] * sp[1], 1e-6) if image.has_geometry else \
            image.shape[0] / max(image.shape[1], 1)
        return [resize_rgb(pic)], [float(aspect)], None
    plane = plane_of(image)
    unit = to_unit_rgb(image, window=window) if image.is_color else _unit_gray(image, window)
    if plane is None:  # no usable geometry: slices as stored
        fr = _fracs(n_slices)
        pics = [resize_rgb(unit[:, :, int(round(f * (image.shape[2] - 1)))].swapaxes(0, 1)) for f in fr]
        return pics, [image.shape[0] / max(image.shape[1], 1)] * len(pics), None
    vol, spr = ras_volume(image, unit)
    pics, aspects = [], []
    for f in _fracs(n_slices):
        p, asp = cut(vol, spr, plane, f)
        pics.append(resize_rgb(p))
        aspects.append(asp)
    return pics, aspects, plane


def _unit_gray(image: MedImage, window=None) -> np.ndarray:
    from medground.io.intensity import to_unit_range

    return to_unit_range(image, window=window)


def _fracs(n: int) -> list[float]:
    if n <= 1:
        return [0.5]
    return list(np.linspace(0.35, 0.65, n))
