"""DICOM reading: real series, zips, several series, single files, radiographs, multi-frame, PHI."""
from __future__ import annotations

import json
import logging
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest

import medground.io as mio
from _iohelpers import PATIENT_ID, PATIENT_NAME, pydicom_file, sitk_read_series, write_ct_series


# --------------------------------------------------------------------------- real series
@pytest.fixture(scope="module")
def ts_dicom(shared_data):
    return shared_data / "totalsegmentator" / "example_ct_dicom"


@pytest.fixture(scope="module")
def ts_image(ts_dicom):
    return mio.load(ts_dicom)


def test_real_series_matches_simpleitk(ts_dicom, ts_image):
    data, aff = sitk_read_series(ts_dicom)
    img = ts_image
    assert img.shape == (512, 512, 20) and img.ndim == 3
    assert img.modality == "CT" and img.source_format == "dicom-series"
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    assert np.array_equal(img.data, data)
    assert img.data.min() < -900  # HU after RescaleIntercept
    assert len(img.dicom_datasets) == 20
    assert all("PixelData" not in ds for ds in img.dicom_datasets)
    # this de-identified series blanks SOPInstanceUID in the dataset; it is restored from file meta
    sop = [ds.SOPInstanceUID for ds in img.dicom_datasets]
    assert all(sop) and len(set(sop)) == 20
    # datasets are in z order: position along the normal increases with z
    z = [float(ds.ImagePositionPatient[2]) for ds in img.dicom_datasets]
    assert z == sorted(z)
    assert img.meta["series_count"] == 1 and img.meta["n_slices"] == 20


def test_real_series_grid_matches_totalsegmentator_nifti(shared_data, ts_image):
    """example_seg_dicom.nii.gz is TotalSegmentator's label map of this series, stored with the
    y and z axes flipped (LAS... vs our LPS-ordered grid): same voxels, reoriented."""
    seg = nib.load(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))
    img = ts_image
    assert seg.shape == img.shape
    ours = nib.orientations.io_orientation(img.affine)
    theirs = nib.orientations.io_orientation(seg.affine)
    tr = nib.orientations.ornt_transform(ours, theirs)
    aff = img.affine @ nib.orientations.inv_ornt_aff(tr, img.shape)
    np.testing.assert_allclose(aff, seg.affine, atol=1e-3)
    # and the labels land on the body: organs are soft tissue, outside is mostly air
    ct = nib.orientations.apply_orientation(img.data, tr)
    labels = np.asarray(seg.dataobj)
    assert ct[labels > 0].mean() > 0 > -500 > ct[labels == 0].mean()


def test_zip_of_series_loads_identically(tmp_path, ts_dicom, ts_image):
    zpath = tmp_path / "series.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for i, f in enumerate(sorted(ts_dicom.iterdir())):
            zf.write(f, arcname=f"nested/dir/{i:03d}_{f.name}")
    img = mio.load(zpath)
    assert img.source_format == "dicom-series"
    assert np.array_equal(img.data, ts_image.data)
    np.testing.assert_array_equal(img.affine, ts_image.affine)
    assert [d.SOPInstanceUID for d in img.dicom_datasets] == [d.SOPInstanceUID for d in ts_image.dicom_datasets]


def test_ct_3slice_series(shared_data):
    img = mio.load(shared_data / "ct-3slice")
    assert img.shape == (512, 512, 3)
    np.testing.assert_allclose(img.spacing, [0.810547, 0.810547, 1.0], atol=1e-5)
    data, aff = sitk_read_series(shared_data / "ct-3slice")
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    assert np.array_equal(img.data, data)


# --------------------------------------------------------------------------- several series
def test_folder_with_two_series_picks_bigger_and_series_selects(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(-1000, 1000, (10, 8, 7)).astype(np.int16)
    small = rng.integers(-1000, 1000, (6, 6, 3)).astype(np.int16)
    _, big_uids = write_ct_series(tmp_path / "a" / "x", big, series_number=5)
    _, small_uids = write_ct_series(tmp_path / "b", small, series_number=2)
    img = mio.load(tmp_path)
    assert np.array_equal(img.data, big)
    assert img.meta["series_count"] == 2
    # listing sorted by SeriesNumber: small (2) is index 0, big (5) is index 1
    assert [s["slices"] for s in img.meta["series"]] == [3, 7]
    assert img.meta["series_index"] == 1

    by_index = mio.load(tmp_path, series="0")
    assert np.array_equal(by_index.data, small)
    series_uid = by_index.dicom_datasets[0].SeriesInstanceUID
    by_uid = mio.load(tmp_path, series=series_uid)
    assert np.array_equal(by_uid.data, small)
    assert by_uid.meta["series_index"] == 0
    with pytest.raises(mio.MedGroundInputError, match="not found"):
        mio.load(tmp_path, series="7")
    # UIDs never reach the metadata
    assert series_uid not in json.dumps(img.meta)


def test_localizer_in_series_ignored(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(-1000, 1000, (10, 8, 5)).astype(np.int16)
    paths, _ = write_ct_series(tmp_path / "s", vol)
    import pydicom

    uid = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
    write_ct_series(tmp_path / "loc", rng.integers(0, 9, (6, 4, 1)).astype(np.int16),
                    series_uid=uid, row_dir=(0, 1, 0), col_dir=(0, 0, -1))
    img = mio.load(tmp_path)
    assert np.array_equal(img.data, vol)
    assert any("ignored" in w for w in img.meta["warnings"])


# --------------------------------------------------------------------------- single files
def test_ct_small_single_slice():
    img = mio.load(pydicom_file("CT_small.dcm"))
    assert img.ndim == 2 and img.shape == (128, 128, 1)
    assert img.modality == "CT" and img.has_geometry
    np.testing.assert_allclose(img.spacing[:2], [0.661468, 0.661468], atol=1e-6)
    np.testing.assert_allclose(img.spacing[2], 5.0)  # SliceThickness
    import pydicom

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ipp = np.asarray(ds.ImagePositionPatient, float)
    np.testing.assert_allclose(img.origin, ipp * [-1, -1, 1], atol=1e-6)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(img.data[:, :, 0], hu.T)


def test_ct_small_matches_simpleitk():
    import SimpleITK as sitk

    from _iohelpers import sitk_to_ras

    path = pydicom_file("CT_small.dcm")
    img = mio.load(path)
    data, aff = sitk_to_ras(sitk.ReadImage(path))
    np.testing.assert_allclose(img.affine[:3, :2], aff[:3, :2], atol=1e-6)
    np.testing.assert_allclose(img.origin, aff[:3, 3], atol=1e-4)
    assert np.array_equal(img.data, data.reshape(img.data.shape))


def test_mr_small():
    img = mio.load(pydicom_file("MR_small.dcm"))
    assert img.ndim == 2 and img.shape == (64, 64, 1) and img.modality == "MR"
    np.testing.assert_allclose(img.spacing[:2], [0.3125, 0.3125])


def test_us_rgb():
    img = mio.load(pydicom_file("US1_UNCR.dcm"))
    assert img.modality == "US" and img.is_color
    assert img.data.shape == (640, 480, 1, 3) and img.ndim == 2
    assert img.photometric == "RGB"


def test_rgb_secondary_capture_and_ybr_converted():
    rgb = mio.load(pydicom_file("SC_rgb.dcm"))
    assert rgb.data.shape == (100, 100, 1, 3)
    ybr = mio.load(pydicom_file("SC_ybr_full_uncompressed.dcm"))
    assert ybr.meta["photometric_original"] == "YBR_FULL" and ybr.photometric == "RGB"
    # both files show the same colour bars: after YBR->RGB they agree (up to YBR rounding)
    assert np.abs(rgb.data.astype(int) - ybr.data.astype(int)).max() <= 8


def test_radiograph_monochrome1_inverted():
    import pydicom

    path = pydicom_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    img = mio.load(path)
    assert img.modality == "CR" and img.ndim == 2
    assert img.shape == (int(ds.Columns), int(ds.Rows), 1)
    assert img.meta["photometric_original"] == "MONOCHROME1" and img.photometric == "MONOCHROME2"
    raw = ds.pixel_array.T.astype(np.int64)
    k = 2 ** int(ds.BitsStored) - 1
    assert np.array_equal(img.data[:, :, 0].astype(np.int64), k - raw)
    # High = bright after inversion: lungs (dark on a PA chest film) are darker than the spine/mediastinum
    g = img.data[:, :, 0].astype(float)
    X, Y = g.shape
    lungs = np.median(g[int(0.2 * X):int(0.35 * X), int(0.3 * Y):int(0.6 * Y)])
    spine = np.median(g[int(0.47 * X):int(0.53 * X), int(0.3 * Y):int(0.6 * Y)])
    assert lungs < spine
    # orientation from PatientOrientation (L, F): x -> patient left, y -> feet
    assert mio.axcodes(img.affine)[:2] == "LI"
    # PixelSpacing is 0\0 in this file: no physical size
    assert not img.has_geometry


def test_enhanced_ct_multiframe_volume():
    import pydicom

    path = pydicom_file("eCT_Supplemental.dcm")
    img = mio.load(path)
    assert img.ndim == 3 and img.shape[2] == 2 and img.modality == "CT"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    pos = [np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, float) for f in ds.PerFrameFunctionalGroupsSequence]
    for z in range(2):
        frame = img.dicom_frame_order[z]
        np.testing.assert_allclose(img.voxel_to_world([0, 0, z]), pos[frame] * [-1, -1, 1], atol=1e-4)


def test_multiframe_without_geometry_is_stacked():
    img = mio.load(pydicom_file("emri_small.dcm"))
    assert img.ndim == 3 and img.shape == (64, 64, 10) and img.modality == "MR"
    assert any("per-frame position" in w for w in img.meta["warnings"])


def test_palette_colour_ultrasound_with_region_spacing():
    img = mio.load(pydicom_file("gdcm-US-ALOKA-16.dcm"))
    assert img.is_color and img.modality == "US"
    assert img.meta["pixel_spacing_source"] == "SequenceOfUltrasoundRegions"
    assert img.has_geometry and 0.1 < img.spacing[0] < 1.0


# --------------------------------------------------------------------------- no PHI in meta, summary, logs
def test_patient_name_never_leaks(tmp_path, caplog):
    hu = np.random.default_rng(0).integers(-1000, 1000, (8, 8, 4)).astype(np.int16)
    positions = [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 7.0)]  # non-uniform: forces a logged warning
    write_ct_series(tmp_path / "s", hu, positions=positions)
    shutil.copy(next((tmp_path / "s").iterdir()), tmp_path / "single.dcm")
    caplog.set_level(logging.DEBUG)
    for src in (tmp_path / "s", tmp_path / "single.dcm"):
        img = mio.load(src)
        blob = json.dumps(img.summary(), default=str) + json.dumps(img.meta, default=str) + caplog.text
        for secret in (PATIENT_NAME, "Doe", PATIENT_ID, "19700101", "20240102", "ACC123", "Ref^Doc"):
            assert secret not in blob
        for ds in img.dicom_datasets:  # identifiers stay in the datasets (needed for SEG/SR)
            assert str(ds.PatientName) == PATIENT_NAME
            assert ds.SOPInstanceUID not in blob and ds.StudyInstanceUID not in blob
    assert "non-uniform" in caplog.text


def test_real_patient_name_not_in_meta(shared_data):
    img = mio.load(shared_data / "ct-3slice")
    name = str(img.dicom_datasets[0].PatientName)
    assert name and name not in json.dumps(img.summary(), default=str)
