"""Every bad input raises MedGroundInputError with one clear sentence, never another exception."""
from __future__ import annotations

import gzip
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import medground.io as mio
from medground import MedGroundInputError
from _iohelpers import pydicom_file, write_ct_series


def _raises(path, match=None, **kw) -> str:
    with pytest.raises(MedGroundInputError) as info:
        mio.load(path, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg and len(msg) < 300
    if match:
        assert match.lower() in msg.lower(), msg
    return msg


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _truncate(src, dst, fraction=0.5):
    blob = open(src, "rb").read()
    with open(dst, "wb") as fh:
        fh.write(blob[: int(len(blob) * fraction)])
    return dst


def test_missing_path(tmp_path):
    _raises(tmp_path / "nope.nii.gz", "not found")
    with pytest.raises(MedGroundInputError):
        mio.load("")


def test_empty_file(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"")
    _raises(tmp_path / "x.dcm", "empty")


@pytest.mark.parametrize("suffix", [".dcm", ".png", ".jpg", ".nii", ".nii.gz", ".nrrd", ".zip", ".tif", ""])
def test_text_file_renamed(tmp_path, suffix):
    p = tmp_path / f"notes{suffix}"
    p.write_text("Patient looked fine. This is a text file, not an image.\n" * 20)
    _raises(p)


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.xyz"
    p.write_text("hello")
    _raises(p, "not a supported")


def test_truncated_dicom(tmp_path):
    _raises(_truncate(pydicom_file("CT_small.dcm"), tmp_path / "cut.dcm"))


def test_truncated_dicom_header_only(tmp_path):
    _raises(_truncate(pydicom_file("CT_small.dcm"), tmp_path / "cut.dcm", fraction=0.02))


def test_truncated_compressed_dicom(tmp_path):
    _raises(_truncate(pydicom_file("US1_J2KR.dcm"), tmp_path / "cut.dcm", fraction=0.6))


def test_truncated_nifti_gz(tmp_path):
    src = _nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).normal(size=(40, 40, 30)).astype(np.float32))
    _raises(_truncate(src, tmp_path / "cut.nii.gz"))


def test_truncated_nifti_plain(tmp_path):
    src = _nifti(tmp_path / "full.nii", np.random.default_rng(0).normal(size=(20, 20, 10)).astype(np.float32))
    _raises(_truncate(src, tmp_path / "cut.nii"))


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "a.png")
    _raises(_truncate(tmp_path / "a.png", tmp_path / "cut.png"))


def test_truncated_nrrd(tmp_path):
    import nrrd

    nrrd.write(str(tmp_path / "a.nrrd"), np.random.default_rng(0).normal(size=(20, 20, 10)).astype(np.float32))
    _raises(_truncate(tmp_path / "a.nrrd", tmp_path / "cut.nrrd", 0.7))


def test_gzip_of_text(tmp_path):
    with gzip.open(tmp_path / "x.nii.gz", "wb") as fh:
        fh.write(b"not a nifti" * 100)
    _raises(tmp_path / "x.nii.gz")


def test_4d_nifti(tmp_path):
    data = np.random.default_rng(0).normal(size=(8, 8, 6, 5)).astype(np.float32)
    msg = _raises(_nifti(tmp_path / "t.nii.gz", data), "4D")
    assert "single" in msg


def test_4d_nifti_with_singleton_is_accepted(tmp_path):
    data = np.random.default_rng(0).normal(size=(8, 9, 6, 1)).astype(np.float32)
    img = mio.load(_nifti(tmp_path / "t.nii.gz", data))
    assert img.shape == (8, 9, 6) and img.data.ndim == 3


def test_4d_nrrd(tmp_path):
    import nrrd

    data = np.random.default_rng(0).normal(size=(5, 8, 8, 6)).astype(np.float32)
    header = {"kinds": ["list", "domain", "domain", "domain"]}
    nrrd.write(str(tmp_path / "t.nrrd"), data, header, index_order="F")
    _raises(tmp_path / "t.nrrd", "4D")


def test_zero_size_nifti(tmp_path):
    _raises(_nifti(tmp_path / "z.nii.gz", np.zeros((0, 4, 4), np.float32)), "empty")


def test_constant_image(tmp_path):
    _raises(_nifti(tmp_path / "c.nii.gz", np.full((6, 6, 6), 7, np.int16)), "constant")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "black.png")
    _raises(tmp_path / "black.png", "constant")
    # check=False reads it anyway (e.g. an empty ground-truth mask)
    assert mio.load(tmp_path / "c.nii.gz", check=False).shape == (6, 6, 6)


def test_nan_and_inf(tmp_path):
    d = np.random.default_rng(0).normal(size=(6, 6, 6)).astype(np.float32)
    d[1, 2, 3] = np.nan
    d[2, 2, 2] = np.inf
    msg = _raises(_nifti(tmp_path / "n.nii.gz", d), "NaN")
    assert "1 NaN" in msg and "1 infinite" in msg


def test_degenerate_affine():
    d = np.random.default_rng(0).normal(size=(6, 6, 6)).astype(np.float32)
    aff = np.eye(4)
    aff[2, 2] = 0.0
    with pytest.raises(MedGroundInputError, match="affine"):
        mio.validate(mio.MedImage(data=d, affine=aff))
    aff[2, 2] = np.nan
    with pytest.raises(MedGroundInputError, match="affine"):
        mio.validate(mio.MedImage(data=d, affine=aff))


def test_validate_on_api_arrays():
    with pytest.raises(MedGroundInputError, match="constant"):
        mio.validate(np.ones((4, 4, 4)))
    with pytest.raises(MedGroundInputError, match="NaN"):
        mio.validate(np.array([[1.0, np.nan], [0.0, 2.0]]))
    with pytest.raises(MedGroundInputError, match="empty"):
        mio.validate(np.zeros((0, 3)))
    with pytest.raises(MedGroundInputError, match="dimensions"):
        mio.validate(np.random.default_rng(0).normal(size=(3, 3, 3, 5)))
    with pytest.raises(MedGroundInputError, match="constant"):
        mio.MedImage.from_array(np.zeros((5, 5)))
    with pytest.raises(MedGroundInputError, match="4D"):
        mio.validate(mio.MedImage(data=np.random.default_rng(0).normal(size=(3, 3, 3, 5))))
    ok = np.arange(12.0).reshape(3, 4)
    assert mio.validate(ok) is ok
    img = mio.MedImage.from_array(ok, layout="rc")
    assert img.shape == (4, 3, 1) and img.ndim == 2 and img.data[1, 2, 0] == ok[2, 1]


def test_dicom_seg_object_is_not_an_image():
    _raises(pydicom_file("liver.dcm"), "SEG")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    _raises(tmp_path, "no DICOM")


def test_zip_without_dicom_and_bad_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing")
    _raises(tmp_path / "a.zip", "no DICOM")
    blob = (tmp_path / "a.zip").read_bytes()
    (tmp_path / "b.zip").write_bytes(blob[: len(blob) // 2])
    _raises(tmp_path / "b.zip")


def test_series_with_truncated_slice(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1000, (10, 10, 4)).astype(np.int16)
    paths, _ = write_ct_series(tmp_path / "s", hu)
    _truncate(paths[2], paths[2], 0.8)
    _raises(tmp_path / "s")


def test_unknown_series_selector(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1000, (10, 10, 4)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu)
    _raises(tmp_path / "s", "not found", series="3")
    _raises(tmp_path / "s", "not found", series="1.2.3.4")


def test_errors_are_value_errors_for_callers(tmp_path):
    """MedGroundInputError subclasses ValueError, and nothing else leaks from load."""
    bad = tmp_path / "x.png"
    shutil.copy(pydicom_file("CT_small.dcm"), bad)  # a DICOM named .png still loads (content wins)
    assert mio.load(bad).modality == "CT"
    assert issubclass(MedGroundInputError, ValueError)
