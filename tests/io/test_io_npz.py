"""MedSAM-style NumPy archives (.npz): image key, ITK-order spacing, LPS direction/origin, errors."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import medground.io as mio
from medground import MedGroundInputError
from _iohelpers import sitk_to_ras


def test_volume_geometry_matches_simpleitk(tmp_path):
    """The archive written from a SimpleITK image (array [z, y, x], spacing/origin/direction as SimpleITK gives
    them) reads back at the same world positions as SimpleITK's own reading of that image."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (7, 20, 24)).astype(np.uint8)  # [z, y, x]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.7, 5.0))
    img.SetOrigin((-12.0, 30.5, 101.0))
    img.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))  # as the MedSAM2 lesion samples
    f = tmp_path / "case.npz"
    np.savez_compressed(f, imgs=arr, gts=(arr > 200).astype(np.uint8), spacing=np.array(img.GetSpacing()),
                        origin=np.array(img.GetOrigin()), direction=np.array(img.GetDirection()))
    im = mio.load(f)
    assert im.source_format == "npz" and im.ndim == 3 and im.has_geometry
    assert im.shape[:3] == (24, 20, 7)
    np.testing.assert_allclose(im.affine, sitk_to_ras(img)[1], atol=1e-9)
    # a voxel's value and its world position agree with SimpleITK's
    i, j, k = 5, 13, 4
    assert im.data[i, j, k] == arr[k, j, i]
    lps = np.asarray(img.TransformIndexToPhysicalPoint((i, j, k)))
    ras = (im.affine @ [i, j, k, 1])[:3]
    np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)


def test_volume_without_direction_or_spacing(tmp_path):
    arr = np.random.default_rng(1).normal(0, 1, (5, 16, 18)).astype(np.float32)
    np.savez(tmp_path / "a.npz", imgs=arr, spacing=np.array([1.0, 2.0, 3.0]))
    im = mio.load(tmp_path / "a.npz")
    np.testing.assert_allclose(np.abs(np.diag(im.affine))[:3], [1.0, 2.0, 3.0])
    assert im.affine[0, 0] < 0 and im.affine[1, 1] < 0  # LPS axes
    assert any("direction" in w for w in im.meta["warnings"])
    np.savez(tmp_path / "b.npz", img=arr)
    im = mio.load(tmp_path / "b.npz")
    assert not im.has_geometry and im.shape[:3] == (18, 16, 5)


def test_hu_volume_is_ct(tmp_path):
    arr = np.full((6, 20, 20), -1000, np.int16)
    arr[:, 4:16, 4:16] = np.random.default_rng(2).integers(-100, 200, (6, 12, 12))
    np.savez(tmp_path / "ct.npz", imgs=arr, spacing=np.array([1.0, 1.0, 2.0]))
    assert mio.load(tmp_path / "ct.npz").modality == "CT"


def test_pictures(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (30, 40, 3)).astype(np.uint8)  # [rows, cols, 3]
    np.savez(tmp_path / "rgb.npz", imgs=rgb, gts=np.zeros((30, 40), np.uint8))
    im = mio.load(tmp_path / "rgb.npz")
    assert im.ndim == 2 and im.is_color and im.shape[:2] == (40, 30)
    grey = rgb[..., 0]
    np.savez(tmp_path / "g3.npz", imgs=np.stack([grey] * 3, -1))  # grey stored as RGB, as MedSAM's 2D archives
    im = mio.load(tmp_path / "g3.npz")
    assert not im.is_color and im.meta["color_collapsed"]
    np.savez(tmp_path / "g.npz", grey)  # one unnamed array
    im = mio.load(tmp_path / "g.npz")
    assert im.ndim == 2 and not im.is_color and im.data[7, 3, 0] == grey[3, 7]


def test_npz_under_another_name(tmp_path):
    np.savez(tmp_path / "a.npz", imgs=np.random.default_rng(4).normal(0, 1, (4, 10, 12)))
    (tmp_path / "a.zip").write_bytes((tmp_path / "a.npz").read_bytes())
    assert mio.load(tmp_path / "a.zip").source_format == "npz"


@pytest.mark.parametrize("arrays, match", [
    ({"gts": np.zeros((4, 8, 8)), "boxes": np.zeros((2, 4))}, "no image array"),
    ({"imgs": np.zeros((2, 3, 8, 8)) + np.arange(8)}, "shape"),
    ({"imgs": np.zeros((4, 8, 8))}, "constant"),
    ({"imgs": np.array(["a", "b"])}, None),
])
def test_bad_archives(tmp_path, arrays, match):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(MedGroundInputError) as info:
        mio.load(tmp_path / "x.npz")
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300
    if match:
        assert match in msg.lower(), msg
    blob = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(MedGroundInputError):
        mio.load(tmp_path / "t.npz")


def test_real_lesion_archive_matches_converter(shared_data):
    """A real MedSAM2 lesion sample reads with the geometry the dataset converter gives it."""
    from medground.io.dicom import lps_affine

    f = shared_data / "ct-lesions" / "CT_Lesion_000015_01_01_103-115.npz"
    if not f.exists():
        pytest.skip("ct-lesions sample absent")
    z = np.load(f)
    im = mio.load(f)
    np.testing.assert_allclose(im.affine, lps_affine(z["direction"], z["spacing"], z["origin"]))
    assert im.shape[:3] == z["imgs"].shape[::-1]
