"""The lungs of a CT in Hounsfield units by their air: kept apart from bowel gas, split left / right in world
coordinates, and used by the text route for "left lung" / "lungs" on such a CT."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medground.evaluate.metrics import dice_score as dice
from medground.segment.air import AirConfig, looks_like_hu, lung_masks

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def phantom(seed: int = 0):
    """A 64 x 64 x 40 CT at 3 mm (RAS affine, index x grows toward the patient's right): a body, two lungs in its
    upper 24 slices (patient's right lung larger), a gas pocket low in the abdomen, air around."""
    rng = np.random.default_rng(seed)
    X, Y, Z = 64, 64, 40
    a = np.full((X, Y, Z), -1000.0) + rng.normal(0, 8, (X, Y, Z))
    i, j = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    body = ((i - 32) / 28) ** 2 + ((j - 32) / 22) ** 2 <= 1
    lung_r = ((i - 44) / 10) ** 2 + ((j - 32) / 12) ** 2 <= 1  # x index 44 > midline 32: patient's right (RAS)
    lung_l = ((i - 20) / 8) ** 2 + ((j - 32) / 11) ** 2 <= 1
    gas = ((i - 30) / 6) ** 2 + ((j - 22) / 5) ** 2 <= 1
    truth = {"lung_left": np.zeros((X, Y, Z), bool), "lung_right": np.zeros((X, Y, Z), bool)}
    for z in range(Z):
        a[:, :, z][body] = 40 + rng.normal(0, 15, body.sum())
        if z >= 16:  # the lungs: aerated parenchyma with vessels
            for name, m in (("lung_left", lung_l), ("lung_right", lung_r)):
                a[:, :, z][m] = -830 + rng.normal(0, 40, m.sum())
                truth[name][:, :, z] = m
        if 2 <= z <= 9:
            a[:, :, z][gas] = -995 + rng.normal(0, 8, gas.sum())
    return a, np.diag([3.0, 3.0, 3.0, 1.0]), truth


def test_lungs_are_found_gas_is_not_and_sides_follow_the_affine():
    a, aff, truth = phantom()
    assert looks_like_hu(a)
    m, info = lung_masks(a, aff)
    assert dice(m["lung_left"], truth["lung_left"]) > 0.95
    assert dice(m["lung_right"], truth["lung_right"]) > 0.95
    assert len(info["components_kept"]) == 2 and len(info["components_dropped_as_gas_or_other"]) == 1
    # the same voxels under an affine that mirrors x: the array's "left" lung is now the patient's right
    flip = aff.copy()
    flip[0, 0], flip[0, 3] = -3.0, 63 * 3.0
    m2, _ = lung_masks(a, flip)
    assert dice(m2["lung_right"], truth["lung_left"]) > 0.95 and dice(m2["lung_left"], truth["lung_right"]) > 0.95


def test_gas_alone_is_not_a_lung_and_grey_scale_pictures_are_not_hu():
    a, aff, _ = phantom()
    a[:, :, 16:] = np.where(a[:, :, 16:] < -600, 40.0, a[:, :, 16:])  # no lungs: an abdomen below them
    m, _ = lung_masks(a, aff)
    assert not m["lung"].any()
    assert not looks_like_hu(np.linspace(0, 255, 4096).reshape(64, 64))  # an 8-bit picture
    assert not looks_like_hu(np.abs(a) / 10)  # an MR-like, non-negative volume


def test_a_low_lying_air_pocket_with_lung_density_is_not_taken_for_a_lung():
    a, aff, _ = phantom()
    a[:, :, 16:] = np.where(a[:, :, 16:] < -600, 40.0, a[:, :, 16:])
    a[:, :, 2:10] = np.where(a[:, :, 2:10] < -900, -820.0, a[:, :, 2:10])  # mottled, low in the volume
    m, info = lung_masks(a, aff, AirConfig())
    assert not m["lung"].any()  # far from the head end and short: not a lung


def test_the_text_route_uses_the_air_rule_for_lungs_on_hu_ct():
    from medground.io.image import MedImage
    from medground.segment.text import segment_text

    a, aff, truth = phantom()
    img = MedImage.from_array(a.astype(np.float32), aff, modality="CT")
    res, extra = segment_text(img, ["left lung", "lungs"])
    by = {r.name: r for r in res}
    assert dice(by["left lung"].mask, truth["lung_left"]) > 0.95
    assert dice(by["lungs"].mask, truth["lung_left"] | truth["lung_right"]) > 0.95
    assert by["left lung"].info["terms"][0]["grounding_head"].startswith("CT air rule")
    assert extra["grounding_model"] == "CT air rule" and "lungs_by_air" in extra


@pytest.mark.skipif(not (SHARED / "totalsegmentator").exists(), reason="shared data absent")
def test_totalsegmentator_example_lungs():
    import nibabel as nib

    im = nib.load(str(SHARED / "totalsegmentator" / "example_ct_sm.nii.gz"))
    seg = np.asarray(nib.load(str(SHARED / "totalsegmentator" / "example_seg.nii.gz")).dataobj)
    names = {int(k): v for k, v in __import__("json").loads(
        (SHARED / "totalsegmentator" / "labels.json").read_text())["total"].items()}
    left = np.isin(seg, [k for k, v in names.items() if v.startswith("lung_") and v.endswith("_left")])
    right = np.isin(seg, [k for k, v in names.items() if v.startswith("lung_") and v.endswith("_right")])
    m, _ = lung_masks(np.asarray(im.dataobj), im.affine)
    assert dice(m["lung_left"], left) > 0.9 and dice(m["lung_right"], right) > 0.9


def test_a_volume_in_another_axis_order_gives_the_same_lungs_in_its_own_grid():
    """The phantom stored as sagittal slices with flipped axes (an LSP-like order): the rule works on axial slices
    and returns masks in the input's own grid."""
    a, aff, truth = phantom()
    b = np.transpose(a, (2, 0, 1))[::-1, ::-1, :].copy()  # array axes: z (reversed), x (reversed), y
    X, Y, Z = a.shape
    # voxel (i, j, k) of b is voxel (X-1-j, k, Z-1-i) of a
    P = np.zeros((4, 4))
    P[0, 1], P[0, 3] = -1, X - 1
    P[1, 2] = 1
    P[2, 0], P[2, 3] = -1, Z - 1
    P[3, 3] = 1
    m, _ = lung_masks(b, aff @ P)
    for k in ("lung_left", "lung_right"):
        expect = np.transpose(truth[k], (2, 0, 1))[::-1, ::-1, :]
        assert m[k].shape == b.shape and dice(m[k], expect) > 0.95


def test_one_thin_slice_keeps_its_lungs_by_area_and_drops_gas():
    """A single 1 mm slice through both lungs holds ~3 mL of each: the area, not the volume, decides (before, a
    1.25 mm DICOM slice of ../shared/data/ct-3slice lost its lungs that way)."""
    a, _, truth = phantom()
    thin = np.diag([3.0, 3.0, 1.0, 1.0])
    m, info = lung_masks(a[:, :, 20], thin)
    assert m["lung_left"].shape == (64, 64)
    assert dice(m["lung_left"], truth["lung_left"][:, :, 20]) > 0.95
    assert dice(m["lung_right"], truth["lung_right"][:, :, 20]) > 0.95
    assert info["min_area_mm2"] == AirConfig().min_area_mm2
    g, _ = lung_masks(a[:, :, 5], thin)  # a slice through the gas pocket only
    assert not g["lung"].any()
    small = AirConfig(min_area_mm2=1e5)  # the area threshold is what keeps them
    assert not lung_masks(a[:, :, 20], thin, small)[0]["lung"].any()


@pytest.mark.skipif(not (SHARED / "ct-3slice" / "02.dcm").exists(), reason="needs ../shared/data/ct-3slice")
def test_each_dicom_slice_alone_finds_the_lungs_of_the_series():
    from medground.io import load

    series = load(SHARED / "ct-3slice")
    whole, _ = lung_masks(series.data, series.affine)
    sums = sorted(int(whole["lung"][:, :, z].sum()) for z in range(3))
    slices = [load(SHARED / "ct-3slice" / f"0{k}.dcm") for k in (1, 2, 3)]
    alone = sorted(int(lung_masks(s.data[:, :, 0], s.affine)[0]["lung"].sum()) for s in slices)
    # the same lungs (the scanner's air, estimated per input, may move a voxel or two)
    assert min(sums) > 10000 and all(abs(x - y) <= 0.01 * y for x, y in zip(alone, sums))
