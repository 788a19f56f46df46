"""RECIST long/short axes, max 3D diameter and aortic diameter on synthetic shapes with known sizes."""
import json

import nibabel as nib
import numpy as np
import pytest
from _synth import centred_affine, cylinder, ellipsoid, rot

from medground import MedImage
from medground.measure import aortic_max_diameter, max_3d_diameter, recist_diameters

CASES = [
    # (voxel spacing x,y,z, grid rotation about S (deg), lesion in-plane rotation (deg))
    ((0.7, 0.9, 2.0), 0.0, 30.0),
    ((0.8, 0.6, 2.5), 15.0, -47.0),
]


def _dir(endpoints):
    e = np.asarray(endpoints["world_mm"])
    d = e[1] - e[0]
    return d / np.linalg.norm(d), float(np.linalg.norm(e[1] - e[0]))


@pytest.mark.parametrize("spacing,grid_deg,lesion_deg", CASES)
def test_recist_rotated_ellipsoid_anisotropic(spacing, grid_deg, lesion_deg):
    shape = (110, 100, 31)
    aff = centred_affine(shape, rot("z", grid_deg) @ np.diag(spacing))
    frame = rot("z", lesion_deg)
    mask = ellipsoid(shape, aff, (30.0, 15.0, 20.0), frame=frame)  # long 60 mm, short 30 mm
    r = recist_diameters(mask, MedImage(data=np.zeros(shape, np.float32), affine=aff))
    voxel = max(spacing[:2])  # in-plane voxel size
    assert r["slice_axis"] == 2 and abs(r["slice_index"] - 15) <= 1
    assert r["long_axis_mm"] == pytest.approx(60.0, abs=voxel)
    assert r["short_axis_mm"] == pytest.approx(30.0, abs=voxel)
    dl, ll = _dir(r["long_axis_endpoints"])
    ds, ls = _dir(r["short_axis_endpoints"])
    assert ll == pytest.approx(r["long_axis_mm"]) and ls == pytest.approx(r["short_axis_mm"], abs=0.3)
    assert abs(dl @ ds) < 1e-6                               # perpendicular
    assert abs(abs(dl @ frame[:, 0]) - 1.0) < 0.01           # along the lesion's long axis
    assert abs(dl[2]) < 1e-9 and abs(ds[2]) < 1e-9           # both in the axial plane
    vox = np.asarray(r["long_axis_endpoints"]["voxel"])
    assert np.allclose(vox[:, 2], r["slice_index"])
    d3 = max_3d_diameter(mask, aff)
    assert d3["diameter_mm"] == pytest.approx(60.0, abs=float(np.linalg.norm(spacing[:2])))


def test_recist_picks_axis_most_aligned_with_S():
    # coronal-style storage: voxel axis 1 runs along S (2.0 mm), axis 2 along A (0.9 mm); slight tilt
    shape = (110, 31, 100)
    cols = rot("z", 10) @ rot("x", 3) @ np.diag([0.7, 0.9, 2.0])  # world x, y, z columns
    aff = centred_affine(shape, cols[:, [0, 2, 1]])
    mask = ellipsoid(shape, aff, (30.0, 15.0, 20.0), frame=rot("z", 30))
    r = recist_diameters(mask, MedImage(data=np.zeros(shape, np.float32), affine=aff))
    assert r["slice_axis"] == 1 and abs(r["slice_index"] - 15) <= 1
    assert r["long_axis_mm"] == pytest.approx(60.0, abs=0.9)
    assert r["short_axis_mm"] == pytest.approx(30.0, abs=0.9)
    # the same lesion in the coronal plane: slices along the A-most axis (voxel axis 2), spanned by
    # voxel axis 0 (world x turned 10 deg about S) and S. The central chord along voxel axis 0 makes
    # 20 deg with the lesion's long axis; it is longer than the 40 mm S extent.
    c = recist_diameters(mask, aff, plane="coronal")
    t = np.deg2rad(20.0)
    expected = 2.0 / np.sqrt(np.cos(t) ** 2 / 30.0**2 + np.sin(t) ** 2 / 15.0**2)
    assert c["slice_axis"] == 2 and c["long_axis_mm"] == pytest.approx(expected, abs=1.0)


def test_recist_2d_and_empty():
    aff = np.diag([0.5, 0.8, 1.0, 1.0])
    m = np.zeros((80, 60), bool)
    m[10:50, 20:30] = True  # 40 x 10 px = 20 mm x 8 mm
    img = MedImage(data=np.zeros((80, 60, 1)), affine=aff, ndim=2)
    r = recist_diameters(m, img)
    assert r["plane"] == "image" and r["slice_index"] == 0
    assert r["long_axis_mm"] == pytest.approx(np.hypot(20.0, 8.0), abs=0.8)  # the rectangle diagonal
    assert r["short_axis_mm"] < 8.0 + 0.8
    assert len(r["long_axis_endpoints"]["voxel"][0]) == 2
    e = recist_diameters(np.zeros((80, 60), bool), img)
    assert e["long_axis_mm"] is None and e["short_axis_mm"] is None and e["slice_index"] is None
    assert max_3d_diameter(np.zeros((5, 5, 5), bool), np.eye(4))["diameter_mm"] is None


def test_aortic_diameter_min_feret_on_tilted_and_straight_tubes():
    shape = (120, 120, 40)
    aff = centred_affine(shape, np.diag([0.75, 0.75, 2.5]))
    # "ascending" 35 mm tube tilted 30 degrees (oblique axial cross-section: 35 x 40.4 mm ellipse)
    # and a straight 25 mm "descending" tube on the same slices
    tilted = cylinder(shape, aff, (-20, 0, 0), 17.5, (0, np.sin(np.pi / 6), np.cos(np.pi / 6)))
    straight = cylinder(shape, aff, (25, 10, 0), 12.5, (0, 0, 1))
    r = aortic_max_diameter(tilted | straight, MedImage(data=np.zeros(shape), affine=aff))
    assert r["diameter_mm"] == pytest.approx(35.0, abs=0.75)
    assert r["max_feret_mm"] > r["diameter_mm"]
    assert r["centroid"]["world_mm"][0] == pytest.approx(-20.0, abs=2.0)
    assert all(p["n_cross_sections"] == 2 for p in r["profile"])
    only_desc = aortic_max_diameter(straight, aff)
    assert only_desc["diameter_mm"] == pytest.approx(25.0, abs=0.75)
    assert only_desc["equivalent_diameter_mm"] == pytest.approx(25.0, abs=0.75)
    assert aortic_max_diameter(np.zeros(shape, bool), aff)["diameter_mm"] is None


def test_real_ct_aorta_and_kidney_plausible(measure_shared_data):
    folder = measure_shared_data / "totalsegmentator"
    if not (folder / "example_seg.nii.gz").exists():
        pytest.skip("example_seg.nii.gz absent")
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text())["total"].items()}
    img = nib.load(str(folder / "example_seg.nii.gz"))
    seg = np.asarray(img.dataobj)
    aorta = aortic_max_diameter(seg == names["aorta"], img.affine)
    assert 15.0 < aorta["diameter_mm"] < 45.0
    kidney = max_3d_diameter(seg == names["kidney_right"], img.affine)
    assert 70.0 < kidney["diameter_mm"] < 160.0
