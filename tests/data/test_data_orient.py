"""medground.data.orient: dihedral transforms and canonical axial slices (synthetic, no data needed)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from medground.data.orient import (
    DIHEDRAL_NAMES,
    abdominal_checks,
    axial_transform,
    dihedral,
    dihedral_coords,
    dihedral_index,
    dihedral_inverse,
    dihedral_shape,
    from_canonical_axial,
    infer_dihedral,
    to_canonical_axial,
    to_canonical_volume,
    undihedral,
)
from medground.io.image import MedImage


def test_names():
    assert DIHEDRAL_NAMES == ("identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose")
    assert dihedral_index("rot90") == 1 and dihedral_index(7) == 7
    with pytest.raises(ValueError):
        dihedral_index("spin")
    with pytest.raises(ValueError):
        dihedral_index(8)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_roundtrip_and_definitions(k):
    a = np.arange(3 * 5 * 2).reshape(3, 5, 2)
    b = dihedral(a, k)
    assert b.shape[:2] == dihedral_shape(a.shape, k)
    assert np.array_equal(undihedral(b, k), a)
    assert np.array_equal(dihedral(b, dihedral_inverse(k)), a)
    assert np.array_equal(dihedral(a, DIHEDRAL_NAMES[k]), b)
    expected = {0: a, 1: np.rot90(a), 2: np.rot90(a, 2), 3: np.rot90(a, 3), 4: a[:, ::-1], 5: a[::-1],
                6: a.transpose(1, 0, 2), 7: np.rot90(a, 2).transpose(1, 0, 2)}[k]
    assert np.array_equal(b, expected)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_coords_follow_pixels(k):
    a = np.zeros((4, 7), int)
    for r, c in itertools.product(range(4), range(7)):
        a[r, c] = 10 * r + c
    b = dihedral(a, k)
    for r, c in [(0, 0), (1, 5), (3, 6), (2, 3)]:
        nr, nc = dihedral_coords(np.array([r, c]), k, a.shape)
        assert b[int(nr), int(nc)] == a[r, c]


def test_dihedral_group_closure():
    a = np.random.default_rng(0).integers(0, 9, (3, 4))
    results = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(results) == 8


def _volume(affine, shape=(6, 7, 5)):
    """An empty volume with the given affine."""
    data = np.zeros(shape, np.int16)
    return MedImage(data=data, affine=np.asarray(affine, float), ndim=3, modality="CT")


def _affines():
    ras = np.diag([2.0, 2.0, 3.0, 1.0])
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    las = np.diag([-2.0, 2.0, 3.0, 1.0])
    # sagittal-like: voxel axes (A, S, R)
    sag = np.array([[0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    # coronal-like with flips: voxel axes (L, I, P)
    cor = np.array([[-2.0, 0, 0, 5], [0, 0, -3.0, 1], [0, -2.0, 0, 7], [0, 0, 0, 1]])
    return {"RAS": ras, "LPS": lps, "LAS": las, "sagittal": sag, "coronal": cor}


@pytest.mark.parametrize("name", list(_affines()))
def test_to_canonical_axial_places_anatomy(name):
    img = _volume(_affines()[name])
    X, Y, Z = img.shape
    # world coordinates of every voxel; mark the voxel that is most right/anterior/superior
    idx = np.stack(np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij"), -1).reshape(-1, 3)
    w = img.voxel_to_world(idx)
    right, anterior, superior = w[:, 0], w[:, 1], w[:, 2]
    # three markers (bit flags) at the extreme voxels
    ra = idx[np.argmax(right)]
    an = idx[np.argmax(anterior)]
    su = idx[np.argmax(superior)]
    img.data = np.zeros(img.shape, np.uint8)
    img.data[tuple(ra)] |= 1
    img.data[tuple(an)] |= 2
    img.data[tuple(su)] |= 4
    slices, tr = to_canonical_axial(img)
    zr = np.argwhere(slices & 1)
    za = np.argwhere(slices & 2)
    zs = np.argwhere(slices & 4)
    assert (zr[:, 2] == 0).all()                   # patient right -> image column 0 (left)
    assert (za[:, 1] == 0).all()                   # anterior -> top row
    assert (zs[:, 0] == slices.shape[0] - 1).all()  # superior -> last slice
    assert np.array_equal(from_canonical_axial(slices, tr), img.data)


@pytest.mark.parametrize("name", list(_affines()))
def test_canonical_volume_keeps_world_positions(name):
    rng = np.random.default_rng(1)
    img = _volume(_affines()[name])
    img.data = rng.integers(0, 100, img.shape).astype(np.int16)
    can, tr = to_canonical_volume(img)
    import nibabel as nib

    assert "".join(nib.aff2axcodes(can.affine)) == "LPS"
    for _ in range(20):
        v = np.array([rng.integers(0, s) for s in can.shape])
        orig = np.rint(img.world_to_voxel(can.voxel_to_world(v))).astype(int)
        assert can.data[tuple(v)] == img.data[tuple(orig)]
    assert np.array_equal(np.transpose(can.data, (2, 1, 0)), tr.forward(img.data))
    assert np.array_equal(tr.inverse(tr.forward(img.data)), img.data)


def test_colour_volume_channel_axis_is_kept():
    img = MedImage(data=np.zeros((4, 5, 3, 3), np.uint8), affine=np.diag([-1.0, -1, 1, 1]))
    slices, tr = to_canonical_axial(img)
    assert slices.shape == (3, 5, 4, 3)
    assert tr.inverse(slices).shape == (4, 5, 3, 3)


def test_picture_is_displayed_as_stored():
    pic = np.arange(20, dtype=np.uint8).reshape(5, 4)  # [x, y]
    img = MedImage(data=pic[:, :, None], ndim=2, has_geometry=False, modality="XC")
    slices, tr = to_canonical_axial(img)
    assert slices.shape == (1, 4, 5)
    assert np.array_equal(slices[0], pic.T)
    assert tr.kind == "picture"
    assert np.array_equal(tr.inverse(slices)[:, :, 0], pic)


def test_axial_transform_of_lps_volume_is_display_identity():
    assert axial_transform(np.diag([-1.0, -1, 1, 1]), (3, 4, 5)).is_identity_display
    assert not axial_transform(np.eye(4), (3, 4, 5)).is_identity_display


def _toy_abdomen():
    """Canonical [z, row, col] labels: liver left, spleen right, kidneys posterior, aorta mid."""
    lab = np.zeros((3, 40, 40), np.uint8)
    lab[:, 8:20, 4:16] = 1      # liver (image left, anterior)
    lab[:, 12:22, 28:36] = 2    # spleen (image right)
    lab[:, 24:30, 8:13] = 3     # right kidney (image left, posterior)
    lab[:, 24:30, 27:32] = 4    # left kidney
    return lab, {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}


def test_abdominal_checks_and_inference():
    lab, ids = _toy_abdomen()
    assert all(abdominal_checks(lab, ids).values())
    for k in range(8):
        raw = np.stack([undihedral(s, k) for s in lab])
        best, results = infer_dihedral(raw, ids)
        assert best == k, (k, results)
