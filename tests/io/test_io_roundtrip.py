"""Readers for NIfTI and pictures, and mask writers that keep the input's exact grid."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import medground.io as mio


def _oblique_affine():
    a = np.array([[0.0, -0.8, 0.1, 12.5], [0.9, 0.0, 0.0, -40.25], [0.0, 0.05, 2.0, 7.0], [0, 0, 0, 1]])
    return a


# --------------------------------------------------------------------------- NIfTI
def test_nifti_mask_roundtrip_identical_affine_and_shape(tmp_path):
    rng = np.random.default_rng(0)
    aff = _oblique_affine()
    src = nib.Nifti1Image(rng.normal(size=(17, 13, 9)).astype(np.float32), aff)
    nib.save(src, str(tmp_path / "img.nii.gz"))
    ref = mio.load(tmp_path / "img.nii.gz")
    assert ref.source_format == "nifti" and ref.ndim == 3 and ref.shape == (17, 13, 9)
    mask = ref.data > 0.5
    out = mio.save_mask(mask, ref, tmp_path / "mask.nii.gz")
    back = nib.load(str(out))
    assert back.shape == ref.shape
    assert back.get_data_dtype() == np.uint8
    assert np.array_equal(back.affine, ref.affine)  # bit-identical (both float32-derived)
    assert int(back.header["sform_code"]) == 2 and int(back.header["qform_code"]) == 1
    assert np.array_equal(np.asarray(back.dataobj) > 0, mask)


def test_real_ct_nifti_roundtrip(tmp_path, shared_data):
    ref = mio.load(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    assert ref.shape == (122, 101, 30)
    orig = nib.load(str(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz"))
    assert np.array_equal(ref.affine, orig.affine)
    bone = ref.data > 200
    out = mio.save_mask(bone, ref, tmp_path / "bone.nii.gz")
    back = mio.load(out, check=False)
    assert back.shape == ref.shape and np.array_equal(back.affine, ref.affine)
    assert np.array_equal(back.data > 0, bone)


def test_label_map_kept(tmp_path):
    ref = mio.MedImage.from_array(np.random.default_rng(0).normal(size=(6, 7, 5)), affine=np.diag([2, 2, 3, 1.0]))
    labels = np.zeros(ref.shape, np.uint8)
    labels[1:3, 2:4, 1] = 5
    labels[4, 5, 3] = 117
    back = nib.load(str(mio.save_mask(labels, ref, tmp_path / "l.nii.gz")))
    assert np.array_equal(np.asarray(back.dataobj), labels)


def test_mask_default_suffix_and_shape_errors(tmp_path):
    ref3 = mio.MedImage.from_array(np.random.default_rng(0).normal(size=(6, 7, 5)), spacing=(1, 1, 2))
    assert mio.save_mask(np.zeros(ref3.shape, bool), ref3, tmp_path / "m").name == "m.nii.gz"
    with pytest.raises(mio.MedGroundInputError, match="shape"):
        mio.save_mask(np.zeros((7, 6, 5), bool), ref3, tmp_path / "m.nii.gz")
    with pytest.raises(mio.MedGroundInputError, match="PNG"):
        mio.save_mask(np.zeros(ref3.shape, bool), ref3, tmp_path / "m.png")
    with pytest.raises(mio.MedGroundInputError, match="0..255"):
        mio.save_mask(np.full(ref3.shape, 300), ref3, tmp_path / "m.nii.gz")
    with pytest.raises(mio.MedGroundInputError, match="non-integer"):
        mio.save_mask(np.full(ref3.shape, 0.5), ref3, tmp_path / "m.nii.gz")


def test_true_2d_nifti_and_single_slice_3d(tmp_path):
    d2 = np.random.default_rng(0).normal(size=(11, 7)).astype(np.float32)
    nib.save(nib.Nifti1Image(d2, np.diag([0.5, 0.7, 1, 1])), str(tmp_path / "two.nii.gz"))
    img = mio.load(tmp_path / "two.nii.gz")
    assert img.ndim == 2 and img.shape == (11, 7, 1)
    d3 = d2[:, :, None]
    nib.save(nib.Nifti1Image(d3, np.diag([0.5, 0.7, 3, 1])), str(tmp_path / "one.nii.gz"))
    img3 = mio.load(tmp_path / "one.nii.gz")
    assert img3.ndim == 3 and img3.shape == (11, 7, 1)
    out = mio.save_mask(d3 > 0, img3, tmp_path / "m.nii.gz")
    assert nib.load(str(out)).shape == (11, 7, 1)


def test_save_nifti_image_and_array(tmp_path):
    img = mio.MedImage.from_array(np.arange(60, dtype=np.int16).reshape(3, 4, 5), affine=_oblique_affine())
    p = mio.save_nifti(img, None, tmp_path / "a.nii.gz")
    back = mio.load(p)
    assert np.array_equal(back.data, img.data)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-6)
    p2 = mio.save_nifti(np.ones((2, 2, 2), bool), np.eye(4), tmp_path / "b.nii")
    assert nib.load(str(p2)).get_data_dtype() == np.uint8


# --------------------------------------------------------------------------- pictures
def test_png_grey_shape_and_mask_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    pic = rng.integers(0, 255, (23, 37), dtype=np.uint8)  # 23 rows, 37 columns
    Image.fromarray(pic).save(tmp_path / "a.png")
    img = mio.load(tmp_path / "a.png")
    assert img.shape == (37, 23, 1) and img.ndim == 2 and not img.has_geometry
    assert img.modality == "OT" and img.source_format == "png"
    assert np.array_equal(img.data[:, :, 0], pic.T)
    mask = np.zeros(img.shape, bool)
    mask[5, 10, 0] = True  # x = column 5, y = row 10
    out = mio.save_mask(mask, img, tmp_path / "mask.png")
    back = Image.open(out)
    assert back.size == (37, 23) and back.mode == "L"
    arr = np.asarray(back)
    assert arr[10, 5] == 255 and arr.sum() == 255


def test_png_label_map_values(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 9), dtype=np.uint8)).save(tmp_path / "a.png")
    img = mio.load(tmp_path / "a.png")
    labels = np.zeros(img.shape, np.uint8)
    labels[1, 2, 0] = 3
    labels[4, 4, 0] = 1
    arr = np.asarray(Image.open(mio.save_mask(labels, img, tmp_path / "l.png")))
    assert arr[2, 1] == 3 and arr[4, 4] == 1


def test_2d_mask_accepted_without_z(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 9), dtype=np.uint8)).save(tmp_path / "a.png")
    img = mio.load(tmp_path / "a.png")
    out = mio.save_mask(np.ones(img.shape[:2], bool), img, tmp_path / "m")
    assert out.suffix == ".png" and Image.open(out).size == (9, 8)


def test_rgba_png_and_16bit_png(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (12, 20, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    img = mio.load(tmp_path / "c.png")
    assert img.data.shape == (20, 12, 1, 3) and img.is_color and img.photometric == "RGB"
    assert np.array_equal(img.data[:, :, 0, :], rgba[..., :3].transpose(1, 0, 2))

    g16 = (rng.integers(0, 60000, (15, 10))).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    img16 = mio.load(tmp_path / "g16.png")
    assert img16.data.dtype == np.uint16 and np.array_equal(img16.data[:, :, 0], g16.T)


def test_grey_jpeg_stored_as_rgb_collapses(tmp_path):
    g = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / "g.png")
    img = mio.load(tmp_path / "g.png")
    assert not img.is_color and img.meta["color_collapsed"]


def test_jpg_bmp_tiff(tmp_path):
    rng = np.random.default_rng(0)
    col = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    for ext in ("jpg", "bmp", "tif"):
        Image.fromarray(col).save(tmp_path / f"a.{ext}")
        img = mio.load(tmp_path / f"a.{ext}")
        assert img.data.shape == (40, 30, 1, 3), ext
        assert img.source_format in ("jpg", "bmp", "tiff"), img.source_format


def test_real_picture_and_mask(tmp_path, shared_data):
    folder = shared_data / "jsrt-cxr" / "images"
    first = sorted(folder.iterdir())[0]
    img = mio.load(first)
    w, h = Image.open(first).size
    assert img.shape == (w, h, 1)
    out = mio.save_mask(img.data > img.data.mean(), img, tmp_path / "m.png")
    assert Image.open(out).size == (w, h)


# --------------------------------------------------------------------------- picture folders
def test_picture_folder_is_a_volume_in_natural_name_order(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "slices"
    folder.mkdir()
    pages = [rng.integers(0, 255, size=(6, 9), dtype=np.uint8) for _ in range(11)]  # rows x cols
    for z, page in enumerate(pages):
        Image.fromarray(page).save(folder / f"slice_{z}.png")  # slice_10 sorts after slice_9
    (folder / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    img = mio.load(folder)
    assert img.ndim == 3 and img.shape == (9, 6, 11) and not img.has_geometry
    assert img.source_format == "png-folder"
    for z, page in enumerate(pages):  # each slice in the picture's own (column, row) grid, like a single picture
        assert np.array_equal(img.data[:, :, z], page.T)
    assert np.array_equal(mio.load(folder / "slice_3.png").data[:, :, 0], img.data[:, :, 3])


def test_picture_folder_with_slices_of_different_sizes_is_an_input_error(tmp_path):
    Image.fromarray(np.full((6, 9), 7, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((6, 8), 9, np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(mio.MedGroundInputError, match="differ in size"):
        mio.load(tmp_path)


def test_folder_of_pictures_and_other_files_is_read_as_dicom(tmp_path):
    Image.fromarray(np.full((6, 9), 7, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(mio.MedGroundInputError, match="DICOM"):
        mio.load(tmp_path)


def test_picture_folder_masks_come_back_as_one_picture_per_input_slice(tmp_path):
    """A volume read from a folder of pictures: each mask is also written as one PNG per input slice, named as the
    slice and exactly its size (rows, columns as in the picture), besides the NIfTI, which holds the same arrays."""
    import nibabel as nib

    from medground.segment.outputs import write_results

    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(3):
        Image.fromarray(np.full((6, 9), 10 * z, np.uint8)).save(folder / f"slice_{z:03d}.jpg")  # 6 rows, 9 columns
    img = mio.load(folder)
    mask = np.zeros(img.shape, bool)
    mask[2:5, 1, 1] = True  # columns 2-4 of row 1 on the middle slice

    class R:
        name, prompt, confidence, info = "left kidney", {"text": "left kidney"}, 0.9, {"present": True}

    R.mask = mask
    doc = write_results(img, [R()], tmp_path / "out", overlay=False)
    f = doc["findings"][0]
    assert f["mask_file"] == "left-kidney.nii.gz" and f["mask_slices_dir"] == "left-kidney/"
    pics = sorted((tmp_path / "out" / "left-kidney").iterdir())
    assert [p.name for p in pics] == ["slice_000.png", "slice_001.png", "slice_002.png"]
    mid = np.asarray(Image.open(pics[1]))
    assert mid.shape == (6, 9) and set(np.unique(mid)) == {0, 255}
    assert np.array_equal(np.argwhere(mid), [[1, 2], [1, 3], [1, 4]])
    assert not np.asarray(Image.open(pics[0])).any()
    nii = nib.load(tmp_path / "out" / "left-kidney.nii.gz")
    vol = np.asarray(nii.dataobj)  # the pictures' arrays stacked, as a label volume made from them with numpy
    assert vol.shape == (6, 9, 3) and np.array_equal(vol[:, :, 1] > 0, mid > 0)
    for r, c in np.argwhere(mid):  # the same world position as the input's voxel (column, row, slice)
        assert np.allclose(nii.affine @ [r, c, 1, 1], img.affine @ [c, r, 1, 1])
    lab = np.asarray(nib.load(tmp_path / "out" / "labels.nii.gz").dataobj)
    assert np.array_equal(lab > 0, vol > 0)
    assert "mask_nifti_layout" in doc["input"] and f["centroid_voxel"] == [3.0, 1.0, 1.0]  # (column, row, slice)
    # any other input: no per-slice pictures
    nii = mio.load(tmp_path / "out" / "left-kidney.nii.gz")
    R.mask = nii.data > 0
    doc = write_results(nii, [R()], tmp_path / "out2", overlay=False)
    assert "mask_slices_dir" not in doc["findings"][0]
