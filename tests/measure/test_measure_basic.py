"""Volumes, areas, intensity statistics, centroid, bbox and components on oblique/anisotropic grids."""
import json

import nibabel as nib
import numpy as np
import pytest
from _synth import centred_affine, ellipsoid, rot

from medground import MedGroundInputError, MedImage
from medground.measure import (
    area_mm2,
    bbox,
    centroid,
    components,
    intensity_stats,
    size,
    volume_ml,
)


def _header_volume_ml(path, label=None) -> float:
    """Independent volume: voxel count x product of the NIfTI header's pixdim zooms."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    count = int((data == label).sum()) if label is not None else int((data > 0).sum())
    return count * float(np.prod(img.header.get_zooms()[:3])) / 1000.0


@pytest.mark.parametrize("angles", [(0, 0, 0), (20, -35, 50)])
def test_volume_matches_nifti_header_on_oblique_anisotropic(tmp_path, angles):
    shape = (64, 56, 24)
    spacing = np.array([0.7, 1.1, 2.6])
    r = rot("x", angles[0]) @ rot("y", angles[1]) @ rot("z", angles[2])
    aff = centred_affine(shape, r @ np.diag(spacing))
    semi = (18.0, 12.0, 22.0)
    mask = ellipsoid(shape, aff, semi, frame=rot("z", 25))
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), str(path))

    loaded = nib.load(str(path))
    data = np.asarray(loaded.dataobj) > 0
    image = MedImage(data=data.astype(np.float32), affine=loaded.affine)
    ours = volume_ml(data, image)
    ref = _header_volume_ml(path)
    assert ours == pytest.approx(ref, rel=0.005)
    assert volume_ml(data, loaded.affine) == pytest.approx(ours)  # affine instead of MedImage
    # and close to the analytic ellipsoid volume
    assert ours == pytest.approx(4 / 3 * np.pi * np.prod(semi) / 1000.0, rel=0.02)


def test_volume_totalsegmentator_liver(measure_shared_data):
    folder = measure_shared_data / "totalsegmentator"
    seg_path = folder / "example_seg.nii.gz"
    if not seg_path.exists():
        pytest.skip("example_seg.nii.gz absent")
    names = json.loads((folder / "labels.json").read_text())["total"]
    liver = int({v: k for k, v in names.items()}["liver"])
    img = nib.load(str(seg_path))
    data = np.asarray(img.dataobj)
    image = MedImage(data=data, affine=img.affine, modality="CT")
    ours = volume_ml(data == liver, image)
    ref = _header_volume_ml(seg_path, label=liver)
    assert ref > 100.0
    assert ours == pytest.approx(ref, rel=0.005)


def test_area_2d_and_volume_rejects_2d():
    aff = np.diag([0.5, 0.25, 1.0, 1.0])
    m = np.zeros((20, 30), bool)
    m[2:12, 5:25] = True  # 10 x 20 pixels
    image = MedImage(data=np.zeros((20, 30, 1)), affine=aff, ndim=2)
    assert area_mm2(m, image) == pytest.approx(200 * 0.125)
    assert size(m, image) == {"voxels": 200, "area_mm2": pytest.approx(25.0)}
    with pytest.raises(MedGroundInputError):
        volume_ml(m, image)
    with pytest.raises(MedGroundInputError):
        area_mm2(np.zeros((4, 4, 3), bool), np.eye(4))


def test_intensity_stats_and_empty_mask():
    rng = np.random.default_rng(0)
    data = rng.normal(40.0, 10.0, size=(20, 20, 10)).astype(np.float32)
    data[0, 0, 0] = np.nan
    image = MedImage(data=data, modality="CT")
    m = np.zeros(data.shape, bool)
    m[:10] = True
    s = intensity_stats(m, image)
    vals = data[m][np.isfinite(data[m])]
    assert s["n"] == vals.size and s["unit"] == "HU"
    assert s["mean"] == pytest.approx(float(vals.mean()), rel=1e-6)
    assert s["sd"] == pytest.approx(float(vals.std()), rel=1e-5)
    assert s["p50"] == pytest.approx(float(np.median(vals)), rel=1e-5)
    assert s["min"] <= s["p5"] <= s["p25"] <= s["p50"] <= s["p75"] <= s["p95"] <= s["max"]
    empty = intensity_stats(np.zeros(data.shape, bool), image)
    assert empty["n"] == 0 and empty["mean"] is None and empty["p95"] is None and empty["sd"] is None


def test_centroid_and_bbox_world_geometry():
    shape = (30, 40, 12)
    r = rot("z", 30)
    aff = centred_affine(shape, r @ np.diag([0.8, 0.6, 3.0]))
    m = np.zeros(shape, bool)
    m[4:9, 10:21, 2:5] = True
    image = MedImage(data=np.zeros(shape), affine=aff)
    c = centroid(m, image)
    assert c["voxel"] == pytest.approx([6.0, 15.0, 3.0])
    assert c["world_mm"] == pytest.approx(list(aff[:3, :3] @ [6.0, 15.0, 3.0] + aff[:3, 3]))
    b = bbox(m, image)
    assert b["min"] == [4, 10, 2] and b["max"] == [8, 20, 4]
    assert b["size_voxels"] == [5, 11, 3]
    assert b["size_mm"] == pytest.approx([4.0, 6.6, 9.0])
    corners = np.array(b["world_corners_mm"])
    assert corners.shape == (8, 3)
    assert corners[0] == pytest.approx(aff[:3, :3] @ [4, 10, 2] + aff[:3, 3])
    assert corners[-1] == pytest.approx(aff[:3, :3] @ [8, 20, 4] + aff[:3, 3])
    assert np.array(b["world_min_mm"]) == pytest.approx(corners.min(0))
    assert centroid(np.zeros(shape, bool), image) == {"voxel": None, "world_mm": None}
    assert bbox(np.zeros(shape, bool), image)["min"] is None
    # 2D image: 2 voxel coordinates, 4 corners
    img2 = MedImage(data=np.zeros((10, 8, 1)), ndim=2)
    m2 = np.zeros((10, 8), bool)
    m2[2:4, 3:7] = True
    assert centroid(m2, img2)["voxel"] == pytest.approx([2.5, 4.5])
    assert len(bbox(m2, img2)["world_corners_mm"]) == 4


def test_components_sizes_and_connectivity():
    m = np.zeros((20, 20, 10), bool)
    m[1:3, 1:3, 1:3] = True          # 8 voxels
    m[10:15, 10:15, 5:7] = True      # 50 voxels
    m[3, 3, 3] = True                # touches the first block only diagonally
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    full = components(m, aff)
    assert full["n"] == 2
    assert [c["voxels"] for c in full["components"]] == [50, 9]
    assert full["components"][0]["label"] == 1 and full["labels"][12, 12, 5] == 1
    assert full["components"][0]["volume_ml"] == pytest.approx(50 * 0.5 / 1000)
    face = components(m, connectivity="face")
    assert face["n"] == 3 and [c["voxels"] for c in face["components"]] == [50, 8, 1]
    assert "volume_ml" not in face["components"][0]
    assert components(np.zeros((5, 5), bool))["n"] == 0
