"""A single slice stored as a 2D NIfTI (or NRRD) keeps its header: it is turned to the models' view by its affine,
like a one-slice volume, not guessed by the picture orientation classifier, and a slice in Hounsfield units is a CT.
(Before: an abdominal CT slice saved as 2D NIfTI was read as a grey picture of unknown kind, classified "head" and
every organ reported absent, while the same slice as an X x Y x 1 volume found them.)"""
from __future__ import annotations

import nibabel as nib
import numpy as np

import medground
from medground.segment.text import canonicalize


def _ct_slice(rng):
    X, Y = 60, 48
    a = np.full((X, Y), -1000.0, np.float32)
    i, j = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    body = ((i - 30) / 26) ** 2 + ((j - 24) / 20) ** 2 <= 1
    a[body] = 40 + rng.normal(0, 10, body.sum())
    a[(i - 40) ** 2 + (j - 20) ** 2 <= 36] = 300  # an off-centre bright blob: any wrong turn moves it
    return a


def test_a_2d_nifti_slice_is_turned_by_its_header_like_a_one_slice_volume(tmp_path):
    a = _ct_slice(np.random.default_rng(0))
    aff = np.diag([-0.8, 0.9, 2.5, 1.0])  # x stored right-to-left: the header, not the array, says which side is which
    aff[:3, 3] = [20.0, -30.0, 100.0]
    nib.save(nib.Nifti1Image(a, aff), tmp_path / "slice2d.nii.gz")
    nib.save(nib.Nifti1Image(a[:, :, None], aff), tmp_path / "slice3d.nii.gz")
    two, three = medground.load(tmp_path / "slice2d.nii.gz"), medground.load(tmp_path / "slice3d.nii.gz")
    assert two.ndim == 2 and two.modality == "CT" and three.modality == "CT"  # Hounsfield units: a CT
    c2, c3 = canonicalize(two), canonicalize(three)
    assert c2.info["method"] == "header geometry" == c3.info["method"]
    assert np.array_equal(c2.image.data, c3.image.data)
    assert not np.array_equal(c2.image.data, two.data)  # the header did turn it
    m = np.zeros(c2.image.shape, bool)
    m[5:9, 7:12, 0] = True
    assert np.array_equal(c2.back(m), c3.back(m))  # and masks go back to the input's own grid the same way


def test_a_2d_slice_without_orientation_or_not_axial_stays_a_picture(tmp_path):
    a = _ct_slice(np.random.default_rng(1))
    nib.save(nib.Nifti1Image(a, np.eye(4)), tmp_path / "noaff.nii.gz")
    assert canonicalize(medground.load(tmp_path / "noaff.nii.gz")).info["method"] != "header geometry"
    sag = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # the singleton axis runs left-right
    nib.save(nib.Nifti1Image(a, sag), tmp_path / "sag.nii.gz")
    assert canonicalize(medground.load(tmp_path / "sag.nii.gz")).info["method"] != "header geometry"
