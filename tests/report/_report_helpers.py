"""Synthetic images for the report tests: ellipsoids, a small CT DICOM series with a known patient."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from _iohelpers import PATIENT_ID  # noqa: E402  (the one synthetic DICOM writer, tests/io/_iohelpers.py)
from _iohelpers import write_ct_series as _io_write_ct_series  # noqa: E402

PATIENT_NAME = "Testperson^Jane"
BIRTH_DATE = "19700101"  # what _iohelpers writes as PatientBirthDate

__all__ = ["PATIENT_ID", "PATIENT_NAME", "BIRTH_DATE", "ellipsoid", "write_ct_series", "synthetic_abdomen"]


def ellipsoid(shape, center_vox, semi_axes_mm, spacing) -> np.ndarray:
    """Boolean ellipsoid on an axis-aligned grid: semi-axes (a, b, c) in mm along x, y, z."""
    idx = np.indices(shape, dtype=float)
    r = sum(((idx[i] - center_vox[i]) * spacing[i] / semi_axes_mm[i]) ** 2 for i in range(3))
    return r <= 1.0


def write_ct_series(folder, hu_xyz: np.ndarray, pixel_spacing=(0.8, 0.8), slice_step=2.5,
                    origin=(-100.0, -80.0, 50.0), body_part="ABDOMEN") -> list[str]:
    """An axial CT series (one file per z, [x, y, z] data in HU) of a patient with a name, ID, birth date and
    institution to look for in outputs; returns the SOP Instance UIDs by z."""
    _, uids = _io_write_ct_series(folder, hu_xyz, pixel_spacing=pixel_spacing, origin=origin,
                                  slice_step=(0.0, 0.0, float(slice_step)), patient_name=PATIENT_NAME,
                                  institution="Secret Hospital", body_part=body_part)
    return uids


def synthetic_abdomen(shape=(64, 56, 12), spacing=(0.8, 0.8, 2.5), seed=0):
    """HU volume with a body, a 'liver' on the patient's right and a 'spleen' on the left (LPS x: +left)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0)
    body = ellipsoid(shape, (shape[0] / 2 - 0.5, shape[1] / 2 - 0.5, shape[2] / 2), (24, 20, 1e3), spacing)
    hu[body] = 20.0
    # DICOM/LPS: column index x grows toward patient LEFT, so the liver (patient right) has small x
    liver = ellipsoid(shape, (18, 26, 6), (9, 10, 8), spacing) & body
    spleen = ellipsoid(shape, (46, 30, 6), (5, 6, 6), spacing) & body
    hu[liver] = 60.0
    hu[spleen] = 45.0
    hu += rng.normal(0, 5, shape)
    return hu.astype(np.float32), {"liver": liver, "spleen": spleen}
