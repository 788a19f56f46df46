"""Quantitative measurements for reports, in world millimetres from the image geometry.

Masks are given in the image's own grid with the :class:`~medground.io.image.MedImage` (or its
4x4 voxel->RAS affine): anisotropic and oblique voxels are honoured everywhere.

* sizes: :func:`volume_ml`, :func:`area_mm2`, :func:`size`; intensity: :func:`intensity_stats`
* position: :func:`centroid`, :func:`bbox`; pieces: :func:`components`
* diameters: :func:`recist_diameters`, :func:`max_3d_diameter`, :func:`aortic_max_diameter`
* chest radiograph: :func:`cardiothoracic_ratio`
* reference ranges: :func:`flag`, :func:`reference_range`, :func:`reference_ranges`
"""
from medground.measure.basic import (
    area_mm2,
    bbox,
    centroid,
    components,
    intensity_stats,
    pixel_area_mm2,
    size,
    volume_ml,
    voxel_volume_mm3,
)
from medground.measure.cxr import cardiothoracic_ratio
from medground.measure.diameters import aortic_max_diameter, max_3d_diameter, recist_diameters
from medground.measure.reference import flag, reference_range, reference_ranges

__all__ = [
    "volume_ml", "area_mm2", "size", "voxel_volume_mm3", "pixel_area_mm2", "intensity_stats",
    "centroid", "bbox", "components",
    "recist_diameters", "max_3d_diameter", "aortic_max_diameter",
    "cardiothoracic_ratio",
    "flag", "reference_range", "reference_ranges",
]
