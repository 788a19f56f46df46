"""Modality-aware scaling to [0, 1]."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import medground.io as mio
from medground.io.intensity import CT_WINDOWS, intensity_range, parse_window
from _iohelpers import pydicom_file


def _ct(values) -> mio.MedImage:
    img = mio.MedImage.from_array(np.asarray(values, dtype=np.int16), spacing=(1, 1, 1))
    img.modality = "CT"
    return img


def _hu_volume():
    rng = np.random.default_rng(0)
    v = rng.integers(-1024, 1500, (16, 16, 6)).astype(np.int16)
    v[0, 0, 0], v[1, 0, 0], v[2, 0, 0], v[3, 0, 0] = -1000, -160, 40, 240
    return v


def test_ct_default_soft_tissue_window():
    img = _ct(_hu_volume())
    u = mio.to_unit_range(img)
    assert u.dtype == np.float32 and u.shape == img.shape
    assert u.min() == 0.0 and u.max() == 1.0
    np.testing.assert_allclose(u[:4, 0, 0], [0.0, 0.0, 0.5, 1.0], atol=1e-6)  # level 40, width 400


def test_ct_named_and_explicit_windows():
    img = _ct(_hu_volume())
    lung = mio.to_unit_range(img, window="lung")
    lo = -600 - 750
    np.testing.assert_allclose(lung[0, 0, 0], (-1000 - lo) / 1500, atol=1e-6)
    for name in ("abdomen", "bone", "brain", "liver", "mediastinum", "soft"):
        assert name in CT_WINDOWS
        out = mio.to_unit_range(img, window=name)
        assert 0 <= out.min() and out.max() <= 1
    expl = mio.to_unit_range(img, window=(40, 400))
    assert np.array_equal(expl, mio.to_unit_range(img))
    with pytest.raises(mio.MedGroundInputError, match="unknown window"):
        mio.to_unit_range(img, window="kidneyish")
    with pytest.raises(mio.MedGroundInputError):
        mio.to_unit_range(img, window=(40, 0))
    assert parse_window("40,400") == (40.0, 400.0) and parse_window("lung") == "lung"


def test_single_slice_shape_and_bounds():
    img = _ct(_hu_volume())
    s = mio.to_unit_range(img, z=2)
    assert s.shape == (16, 16)
    assert np.array_equal(s, mio.to_unit_range(img)[:, :, 2])
    with pytest.raises(mio.MedGroundInputError, match="outside"):
        mio.to_unit_range(img, z=6)


def test_mr_percentiles_of_whole_volume_not_slice():
    rng = np.random.default_rng(0)
    v = rng.normal(300, 50, (20, 20, 4)).astype(np.float32)
    v[:, :, 3] *= 4  # one very bright slice
    img = mio.MedImage.from_array(v, spacing=(1, 1, 1), modality="MR")
    lo, hi = np.percentile(v, [0.5, 99.5])
    whole = mio.to_unit_range(img)
    s0 = mio.to_unit_range(img, z=0)
    np.testing.assert_allclose(s0, np.clip((v[:, :, 0] - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert s0.max() < 0.6  # a per-slice normalisation would stretch it to 1
    assert np.array_equal(whole[:, :, 0], s0)


def test_uint8_picture_divided_by_255(tmp_path):
    pic = np.random.default_rng(0).integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(pic).save(tmp_path / "a.png")
    img = mio.load(tmp_path / "a.png")
    assert mio.looks_windowed_uint8(img)
    np.testing.assert_allclose(mio.to_unit_range(img)[:, :, 0], pic.T / 255.0, atol=1e-6)


def test_uint8_ct_not_windowed_again():
    v = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    img = mio.MedImage.from_array(v, spacing=(1, 1, 1), modality="CT")
    np.testing.assert_allclose(mio.to_unit_range(img), v / 255.0, atol=1e-6)


def test_colour_kept_and_grey_repeated(tmp_path):
    col = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(col).save(tmp_path / "c.png")
    img = mio.load(tmp_path / "c.png")
    rgb = mio.to_unit_rgb(img, z=0)
    assert rgb.shape == (7, 6, 3)
    np.testing.assert_allclose(rgb, col.transpose(1, 0, 2) / 255.0, atol=1e-6)
    grey = mio.to_unit_range(img, z=0)
    assert grey.shape == (7, 6) and 0 <= grey.min() and grey.max() <= 1
    ct = _ct(_hu_volume())
    rep = mio.to_unit_rgb(ct, z=1)
    assert rep.shape == (16, 16, 3) and np.array_equal(rep[..., 0], rep[..., 2])


def test_radiograph_percentile_after_inversion():
    img = mio.load(pydicom_file("RG1_UNCR.dcm"))
    lo, hi, how = intensity_range(img)
    assert how == "percentile"
    u = mio.to_unit_range(img)
    assert u.min() == 0.0 and u.max() == 1.0


def test_real_ct_and_mr(shared_data):
    ct = mio.load(shared_data / "totalsegmentator" / "example_ct_dicom")
    assert intensity_range(ct)[2] == "ct-window"
    mr = mio.load(shared_data / "totalsegmentator" / "example_mr_sm.nii.gz")
    mr.modality = "MR"
    assert intensity_range(mr)[2] == "percentile"
    u = mio.to_unit_range(mr, z=mr.shape[2] // 2)
    assert u.shape == mr.shape[:2] and 0 <= u.min() and u.max() <= 1


def test_ct_without_hu_falls_back_to_percentiles():
    v = np.random.default_rng(0).integers(0, 4000, (10, 10, 3)).astype(np.uint16)  # raw stored values
    img = mio.MedImage.from_array(v, spacing=(1, 1, 1), modality="CT")
    assert not mio.looks_like_hu(img)
    assert intensity_range(img)[2] == "percentile"


def _phantom_hu() -> np.ndarray:
    """An axial CT-like slice in HU: air around a soft-tissue body with a fat rim and a bone."""
    yy, xx = np.mgrid[:96, :128]
    r = ((xx - 64) / 50.0) ** 2 + ((yy - 48) / 36.0) ** 2
    hu = np.full((96, 128), -1000, np.int32)
    hu[r < 1.0] = -100  # fat rim
    hu[r < 0.8] = 45  # soft tissue
    hu[(xx - 64) ** 2 + (yy - 70) ** 2 < 36] = 700  # bone
    return hu


@pytest.mark.parametrize("offset", [1024, 32768])
def test_16bit_picture_of_a_ct_is_read_in_hounsfield_units(tmp_path, offset):
    """A 16-bit PNG holding HU + 1024 (or + 32768, DeepLesion's key slices) is a CT: back to HU, CT window."""
    hu = _phantom_hu()
    Image.fromarray((hu + offset).astype(np.uint16)).save(tmp_path / "slice.png")
    img = mio.load(tmp_path / "slice.png")
    assert img.modality == "CT" and img.meta["hu_offset"] == offset
    assert np.array_equal(img.data[:, :, 0], hu.T)
    assert intensity_range(img)[2] == "ct-window"
    folder = tmp_path / "stack"
    folder.mkdir()
    for z in range(3):
        Image.fromarray((hu + offset).astype(np.uint16)).save(folder / f"{z}.png")
    vol = mio.load(folder)
    assert vol.ndim == 3 and vol.modality == "CT" and vol.data.min() == -1000 and vol.data.max() == 700


def test_16bit_pictures_that_are_not_ct_stay_as_they_are(tmp_path):
    """A 10-bit radiograph (all values below 0 HU once shifted), a smooth 12-bit one and a grey ramp keep their values."""
    yy, xx = np.mgrid[:96, :128]
    pics = {"10bit": (xx * 8).astype(np.uint16),  # 0..1016
            "12bit": (xx * 32 + yy * 2).astype(np.uint16),  # 0..4254, broad
            "ramp": np.linspace(0, 65535, 96 * 128).reshape(96, 128).astype(np.uint16)}
    for name, a in pics.items():
        Image.fromarray(a).save(tmp_path / f"{name}.png")
        img = mio.load(tmp_path / f"{name}.png")
        assert img.modality == "OT" and "hu_offset" not in img.meta and img.data.dtype == np.uint16, name
    Image.fromarray((_phantom_hu() + 1024).clip(0, 255).astype(np.uint8)).save(tmp_path / "u8.png")
    assert mio.load(tmp_path / "u8.png").modality == "OT"  # 8-bit pictures are never guessed


def test_real_ct_as_16bit_png_slices(tmp_path, shared_data):
    """TotalSegmentator's example CT written as 16-bit PNG slices (HU + 1024) reads back in HU as a CT."""
    import nibabel as nib

    ct = np.asarray(nib.load(str(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")).dataobj).astype(np.int32)
    for z in range(ct.shape[2]):
        Image.fromarray((ct[:, :, z].T + 1024).clip(0, 65535).astype(np.uint16)).save(tmp_path / f"{z}.png")
    vol = mio.load(tmp_path)
    assert vol.modality == "CT" and vol.meta["hu_offset"] == 1024
    assert np.array_equal(vol.data, ct.clip(-1024, None))
