"""Geometry: NIfTI/NRRD/DICOM affines in RAS, and masks that come back at the same world position."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import medground.io as mio
from _iohelpers import (
    LPS_TO_RAS,
    ball_mask,
    rotation,
    sitk_read_series,
    sitk_to_ras,
    world_centroid,
    write_ct_series,
)

SHAPE = (24, 20, 14)


def _affine(kind: str) -> np.ndarray:
    aff = np.eye(4)
    if kind == "plain":
        aff[:3, :3] = np.diag([1.2, 0.9, 2.5])
    elif kind == "flipped":
        aff[:3, :3] = np.diag([-1.2, 0.9, -2.5])
    elif kind == "permuted":  # x -> superior, y -> right, z -> anterior
        aff[:3, :3] = np.array([[0, 0.9, 0], [0, 0, 2.5], [1.2, 0, 0]], dtype=float)
    elif kind == "oblique":
        aff[:3, :3] = rotation([0.3, -1.0, 0.6], 33) @ np.diag([1.2, 0.9, 2.5])
    else:
        raise ValueError(kind)
    aff[:3, 3] = [-31.0, 17.5, 60.25]
    return aff


def _volume(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(100, 30, SHAPE).astype(np.float32)


@pytest.mark.parametrize("kind", ["plain", "flipped", "permuted", "oblique"])
def test_blob_at_world_position_survives_save_and_load(tmp_path, kind):
    aff = _affine(kind)
    img_path = mio.save_nifti(_volume(), aff, tmp_path / "img.nii.gz")
    ref = mio.load(img_path)
    np.testing.assert_allclose(ref.affine, aff, atol=1e-5)
    assert ref.shape == SHAPE and ref.ndim == 3

    center_vox = np.array([9.3, 11.6, 6.2])
    target = ref.voxel_to_world(center_vox)
    mask = ball_mask(ref.shape, ref.affine, target, radius_mm=6.0)
    assert mask.sum() > 20
    out = mio.save_mask(mask, ref, tmp_path / "mask.nii.gz")

    back = mio.load(out, check=False)
    assert back.shape == ref.shape
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-5)
    got = world_centroid(back.data, back.affine)
    half_voxel = 0.5 * ref.spacing.min()
    assert np.linalg.norm(got - target) < half_voxel
    # and the raw NIfTI header carries both sform and qform
    hdr = nib.load(str(out)).header
    assert int(hdr["sform_code"]) > 0 and int(hdr["qform_code"]) > 0
    np.testing.assert_allclose(hdr.get_qform(), aff, atol=1e-4)


@pytest.mark.parametrize("kind", ["plain", "flipped", "oblique"])
def test_nifti_mask_readable_by_simpleitk_at_same_place(tmp_path, kind):
    import SimpleITK as sitk

    aff = _affine(kind)
    ref = mio.load(mio.save_nifti(_volume(), aff, tmp_path / "img.nii.gz"))
    mask = ball_mask(ref.shape, ref.affine, ref.voxel_to_world([5.0, 6.0, 7.0]), 5.0)
    out = mio.save_mask(mask, ref, tmp_path / "m.nii.gz")
    data, aff_itk = sitk_to_ras(sitk.ReadImage(str(out)))
    np.testing.assert_allclose(aff_itk, aff, atol=1e-4)
    assert np.array_equal(data > 0, mask)


def _write_nrrd_lps(path, data, aff_ras):
    import nrrd

    aff_lps = LPS_TO_RAS @ aff_ras
    header = {
        "space": "left-posterior-superior",
        "space directions": aff_lps[:3, :3].T,  # one row per axis
        "space origin": aff_lps[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    nrrd.write(str(path), data, header, index_order="F")


@pytest.mark.parametrize("kind", ["plain", "flipped", "oblique"])
def test_nrrd_lps_converted_to_ras_and_matches_simpleitk(tmp_path, kind):
    import SimpleITK as sitk

    aff = _affine(kind)
    vol = _volume()
    path = tmp_path / "img.nrrd"
    _write_nrrd_lps(path, vol, aff)
    img = mio.load(path)
    assert img.source_format == "nrrd"
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    assert np.array_equal(img.data, vol)
    data_itk, aff_itk = sitk_to_ras(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(img.affine, aff_itk, atol=1e-6)
    assert np.array_equal(img.data, data_itk)


def test_nrrd_ras_space_kept(tmp_path):
    import nrrd

    aff = _affine("flipped")
    header = {"space": "right-anterior-superior", "space directions": aff[:3, :3].T, "space origin": aff[:3, 3]}
    nrrd.write(str(tmp_path / "r.nrrd"), _volume(), header, index_order="F")
    np.testing.assert_allclose(mio.load(tmp_path / "r.nrrd").affine, aff, atol=1e-6)


def test_real_nrrd_matches_simpleitk(shared_data):
    import SimpleITK as sitk

    path = shared_data / "mr-tumour" / "breast1_image.nrrd"
    img = mio.load(path)
    data, aff = sitk_to_ras(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(img.affine, aff, atol=1e-4)
    assert np.array_equal(img.data, data)


@pytest.mark.parametrize(
    "orient",
    [
        ((1, 0, 0), (0, 1, 0)),  # axial
        ((0, 1, 0), (0, 0, -1)),  # sagittal
        ((1, 0, 0), (0, 0, -1)),  # coronal
        "oblique",
    ],
)
def test_dicom_series_geometry_matches_simpleitk(tmp_path, orient):
    if orient == "oblique":
        rot = rotation([1, 2, 3], 25)
        row_dir, col_dir = rot @ [1.0, 0, 0], rot @ [0, 1.0, 0]
    else:
        row_dir, col_dir = orient
    rng = np.random.default_rng(1)
    hu = rng.integers(-1000, 1500, (18, 14, 9)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu, row_dir=row_dir, col_dir=col_dir)
    img = mio.load(tmp_path / "s")
    data_itk, aff_itk = sitk_read_series(tmp_path / "s")
    assert img.shape == hu.shape and img.ndim == 3
    assert np.array_equal(img.data, hu)  # sorted by position, not by file name / InstanceNumber
    assert np.array_equal(data_itk, hu)
    np.testing.assert_allclose(img.affine, aff_itk, atol=1e-6)
    assert img.modality == "CT" and img.source_format == "dicom-series"
    assert "warnings" not in img.meta


def test_dicom_world_position_of_each_slice(tmp_path):
    """Voxel (0, 0, z) must be at the slice's ImagePositionPatient (LPS -> RAS)."""
    import pydicom

    hu = np.random.default_rng(2).integers(-500, 500, (10, 12, 6)).astype(np.int16)
    paths, _ = write_ct_series(tmp_path, hu, origin=(12.0, -40.0, 300.0), slice_step=(0, 0, -3.0))
    img = mio.load(tmp_path)
    for z, p in enumerate(paths):
        ipp = np.asarray(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, float)
        ras = ipp * [-1, -1, 1]
        # slices were written going inferior and load sorts them ascending along the slice
        # normal, so look up the z index whose (0, 0) voxel sits at this position.
        world = img.voxel_to_world([[0, 0, k] for k in range(img.shape[2])])
        k = int(np.argmin(np.linalg.norm(world - ras, axis=1)))
        np.testing.assert_allclose(world[k], ras, atol=1e-6)
        assert np.array_equal(img.data[:, :, k], hu[:, :, z])


def test_gantry_tilt_detected_and_positions_true(tmp_path):
    hu = np.random.default_rng(3).integers(-500, 500, (10, 12, 6)).astype(np.int16)
    step = np.array([0.0, 0.6, 2.5])  # slices shift posteriorly: tilted gantry
    paths, _ = write_ct_series(tmp_path, hu, slice_step=step)
    img = mio.load(tmp_path)
    assert any("tilt" in w for w in img.meta["warnings"])
    world = img.voxel_to_world([[0, 0, k] for k in range(6)])
    expected = np.array([(np.array([-100.0, -80.0, 50.0]) + k * step) * [-1, -1, 1] for k in range(6)])
    np.testing.assert_allclose(world, expected, atol=1e-6)


def test_non_uniform_spacing_warned(tmp_path):
    hu = np.random.default_rng(4).integers(-500, 500, (8, 8, 5)).astype(np.int16)
    zs = [0.0, 2.0, 4.0, 7.0, 9.0]
    write_ct_series(tmp_path, hu, positions=[(0.0, 0.0, z) for z in zs])
    img = mio.load(tmp_path)
    assert any("non-uniform" in w for w in img.meta["warnings"])
    assert np.array_equal(img.data, hu)


def test_duplicate_positions_are_4d(tmp_path):
    hu = np.random.default_rng(5).integers(-500, 500, (8, 8, 4)).astype(np.int16)
    write_ct_series(tmp_path, hu, positions=[(0.0, 0.0, z) for z in (0.0, 2.0, 0.0, 2.0)])
    with pytest.raises(mio.MedGroundInputError, match="4D"):
        mio.load(tmp_path)
