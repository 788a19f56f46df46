"""Geometry-true medical image I/O: ``load`` anything, write masks on the input's own grid.

See docs/CONVENTIONS.md: data is ``[x, y, z]``, ``affine`` maps voxels to RAS+ millimetres.
"""
from medground.io.image import MedGroundInputError, MedImage, axcodes
from medground.io.intensity import (
    CT_WINDOWS,
    looks_like_hu,
    looks_windowed_uint8,
    to_unit_range,
    to_unit_rgb,
)
from medground.io.readers import detect_format, load
from medground.io.validate import validate
from medground.io.writers import save_mask, save_nifti, write_dicom_seg

__all__ = [
    "MedImage",
    "MedGroundInputError",
    "axcodes",
    "load",
    "detect_format",
    "validate",
    "save_mask",
    "save_nifti",
    "write_dicom_seg",
    "to_unit_range",
    "to_unit_rgb",
    "looks_windowed_uint8",
    "looks_like_hu",
    "CT_WINDOWS",
]
