"""The measurement stage of the report on given masks: volumes, RECIST, side, flags, CTR on JSRT."""
import json

import nibabel as nib
import numpy as np
import pytest

import medground
from medground.report import report_from_masks
from _report_helpers import ellipsoid


def _nifti(tmp_path, data, affine, name="img.nii.gz"):
    p = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), str(p))
    return p


def _meas(rep, structure_name, name):
    s = next(x for x in rep["structures"] if x["name"] == structure_name)
    return next(m for m in rep["measurements"] if m["id"] in s["measurement_ids"] and m["name"] == name)


def test_volumes_match_voxel_count_times_header_voxel_volume(tmp_path):
    rng = np.random.default_rng(1)
    shape = (48, 40, 20)
    # anisotropic, oblique (rotated about z) affine: voxel volume = 0.7 * 0.9 * 2.5 mm^3
    th = np.deg2rad(20)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 0.9, 2.5])
    aff[:3, 3] = [-20, -15, 10]
    hu = rng.normal(40, 10, shape).astype(np.float32)
    hu[:3] = -1000
    path = _nifti(tmp_path, hu, aff)
    img = medground.load(path)
    assert img.modality == "CT"
    liver = ellipsoid(shape, (20, 20, 10), (10, 12, 15), (0.7, 0.9, 2.5))
    spleen = ellipsoid(shape, (36, 18, 9), (6, 5, 10), (0.7, 0.9, 2.5))
    rep = report_from_masks(img, {"liver": liver, "spleen": spleen}, tmp_path / "out")
    hdr = nib.load(str(path)).header
    vox_ml = float(np.prod(hdr.get_zooms()[:3])) / 1000.0  # independent: the header's voxel sizes
    for name, m in (("liver", liver), ("spleen", spleen)):
        got = _meas(rep, name, "volume")
        assert got["unit"] == "mL"
        assert got["value"] == pytest.approx(m.sum() * vox_ml, rel=0.005)
    # mean HU is the mean of the voxels inside the mask
    assert _meas(rep, "liver", "mean_intensity")["value"] == pytest.approx(hu[liver].mean(), abs=0.05)
    assert _meas(rep, "liver", "mean_intensity")["unit"] == "HU"
    # the mask files written beside the report hold the same voxels
    saved = nib.load(str(tmp_path / "out" / "liver.nii.gz"))
    assert np.array_equal(np.asarray(saved.dataobj) > 0, liver) and np.allclose(saved.affine, aff, atol=1e-5)
    # every sentence carries ids that exist
    ids = {m["id"] for m in rep["measurements"]} | {s["mask"]["id"] for s in rep["structures"] if s["mask"]}
    for s in rep["sentences"] + rep["impression"]:
        assert set(s["measurement_ids"]) | set(s["mask_ids"]) <= ids
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["measurements"] == rep["measurements"]


@pytest.mark.parametrize("axes,spacing", [((14.0, 8.0, 6.0), (0.8, 0.8, 2.0)), ((10.0, 16.0, 5.0), (1.0, 0.6, 1.5))])
def test_recist_on_synthetic_ellipsoid_within_one_voxel(tmp_path, axes, spacing):
    shape = (64, 64, 16)
    aff = np.diag(list(spacing) + [1.0])
    img = medground.load(_nifti(tmp_path, np.random.default_rng(0).normal(40, 5, shape).astype(np.float32), aff))
    lesion = ellipsoid(shape, (31.5, 31.7, 7.6), axes, spacing)
    rep = report_from_masks(img, {"liver lesion": lesion}, tmp_path / "out")
    long_ = _meas(rep, "liver tumor", "recist_long_axis")
    short = _meas(rep, "liver tumor", "recist_short_axis")
    a, b = sorted(axes[:2], reverse=True)
    px = max(spacing[:2])
    assert abs(long_["value"] - 2 * a) <= px and abs(short["value"] - 2 * b) <= px
    assert long_["plane"] == "axial" and "RECIST 1.1" in long_["method"]
    vol = _meas(rep, "liver tumor", "lesion_volume")
    assert vol["value"] == pytest.approx(lesion.sum() * np.prod(spacing) / 1000, rel=0.005)
    # a present finding is abnormal and goes into the impression, with its ids
    imp = [i for i in rep["impression"] if "liver tumor" in i["text"].lower()]
    assert imp and long_["id"] in imp[0]["measurement_ids"]
    # a picture of the lesion on its RECIST slice, with the axes drawn, embedded in the HTML
    les = next(s for s in rep["structures"] if s["name"] == "liver tumor")["lesions"][0]
    assert les["overlay"] in rep["files"]["overlays"] and (tmp_path / "out" / les["overlay"]).is_file()
    assert "RECIST long axis (red)" in (tmp_path / "out" / "report.html").read_text()


def test_side_from_world_coordinates_and_flags(tmp_path):
    shape = (60, 40, 56)
    sp = (2.0, 2.0, 3.0)
    aff = np.diag(list(sp) + [1.0])  # RAS: +x (growing x index) = toward the patient's right
    hu = np.full(shape, -1000.0, np.float32)
    hu[5:55, 5:35, :] = 30.0
    img = medground.load(_nifti(tmp_path, hu, aff))
    # kidney at large x = patient right in RAS; 130 mm long -> above the 100-120 mm range
    right = ellipsoid(shape, (44, 20, 28), (14, 12, 65), sp)
    left = ellipsoid(shape, (14, 20, 28), (14, 12, 52), sp)
    rep = report_from_masks(img, {"right kidney": right, "left kidney": left}, tmp_path / "o1")
    sr = next(s for s in rep["structures"] if s["term_id"] == "kidney_right")
    sl = next(s for s in rep["structures"] if s["term_id"] == "kidney_left")
    assert sr["side"]["side"] == "right" and sl["side"]["side"] == "left"
    assert not sr["warnings"] and not sl["warnings"]
    ln = _meas(rep, "right kidney", "length")
    assert ln["status"] == "high" and "Emamian" in ln["reference"]["source"]
    assert _meas(rep, "left kidney", "length")["status"] == "normal"
    assert any("Large kidney" in i["text"] and ln["id"] in i["measurement_ids"] for i in rep["impression"])
    # swapped labels: the report says the mask is on the wrong side
    rep2 = report_from_masks(img, {"right kidney": left, "left kidney": right}, tmp_path / "o2")
    sr2 = next(s for s in rep2["structures"] if s["term_id"] == "kidney_right")
    assert sr2["warnings"] and "patient's left" in sr2["warnings"][0]


def test_a_volume_without_orientation_gets_voxel_counts_and_no_sides(tmp_path):
    shape = (60, 40, 56)
    hu = np.full(shape, -1000.0, np.float32)
    hu[5:55, 5:35, :] = 30.0
    img = medground.load(_nifti(tmp_path, hu, np.eye(4)))  # an array saved without its geometry (ACDC's files)
    right = ellipsoid(shape, (44, 20, 28), (14, 12, 40), (1.0, 1.0, 1.0))
    rep = report_from_masks(img, {"right kidney": right}, tmp_path / "o")
    s = next(x for x in rep["structures"] if x["term_id"] == "kidney_right")
    assert not s.get("side") and not s["warnings"]  # no "on the patient's left" from an arbitrary frame
    m = next(m for m in rep["measurements"] if m["id"] in s["measurement_ids"] and m["name"] == "volume")
    assert m["unit"] == "voxels" and m["value"] == int(right.sum())
    assert "orientation" in rep["input"]["geometry_note"]
    assert "voxel size and orientation unknown" in (tmp_path / "o" / "report.md").read_text()


def test_absent_and_unassessed_structures_are_said_plainly(tmp_path):
    shape = (32, 32, 10)
    img = medground.load(_nifti(tmp_path, np.random.default_rng(0).normal(0, 50, shape).astype(np.float32),
                                np.diag([1.5, 1.5, 3.0, 1.0])))
    liver = ellipsoid(shape, (15, 15, 5), (8, 8, 8), (1.5, 1.5, 3.0))
    rep = report_from_masks(img, {"liver": liver, "pancreas": np.zeros(shape, bool), "stomach": liver},
                            tmp_path / "o", panel="ct_abdomen")
    assert rep["structures"][-1]["name"] == "stomach"  # a mask outside the panel is reported too
    texts = [s["text"] for s in rep["sentences"]]
    assert "Pancreas not assessed: not found." in texts
    assert "Spleen not assessed: no mask given." in texts
    assert any(n["name"] == "pancreas" for n in rep["not_assessed"])
    assert rep["impression"][-1]["text"].startswith("Not assessed:")
    md = (tmp_path / "o" / "report.md").read_text()
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Pancreas not assessed: not found." in md and "Pancreas not assessed: not found." in html
    assert "data:image/png;base64," in html and "src='overlay_" not in html  # self-contained
    assert rep["dicom_sr"]["written"] is False and "not DICOM" in rep["dicom_sr"]["reason"]


@pytest.mark.shared
def test_cardiothoracic_ratio_on_jsrt_reference_masks(shared_data, tmp_path):
    from PIL import Image

    from medground.measure import cardiothoracic_ratio

    case = "JPCLN001"
    img = medground.load(shared_data / "jsrt-cxr" / "images" / f"{case}.jpg")
    masks = {o: np.asarray(Image.open(shared_data / "jsrt-cxr" / "masks" / o / f"{case}.png")).T > 0
             for o in ("heart", "left_lung", "right_lung")}
    rep = report_from_masks(img, {"heart": masks["heart"], "left lung": masks["left_lung"],
                                  "right lung": masks["right_lung"]}, tmp_path / "o", panel="xr_chest")
    ctr = next(m for m in rep["measurements"] if m["name"] == "cardiothoracic_ratio")
    # independent: widest heart extent / widest row-wise distance between the lungs' outer edges
    heart_cols = np.nonzero(masks["heart"].any(axis=1))[0]
    both = masks["left_lung"].any(axis=0) & masks["right_lung"].any(axis=0)
    union = masks["left_lung"] | masks["right_lung"]
    widths = [np.nonzero(union[:, y])[0][-1] - np.nonzero(union[:, y])[0][0] + 1 for y in np.nonzero(both)[0]]
    expected = (heart_cols[-1] - heart_cols[0] + 1) / max(widths)
    assert ctr["value"] == pytest.approx(expected, abs=1e-3)
    assert 0.3 < ctr["value"] < 0.65
    assert "PA chest radiograph" in ctr["method"] and "Danzer" in ctr["reference"]["source"]
    assert ctr["status"] in ("normal", "high")
    assert ctr["value"] == pytest.approx(cardiothoracic_ratio(masks["heart"], masks["left_lung"],
                                                              masks["right_lung"], img)["ratio"], abs=1e-3)
    # patient's left lung lies on the image right (PA view)
    ll = next(s for s in rep["structures"] if s["term_id"] == "lung_left")
    assert ll["side"]["side"] == "left" and not ll["warnings"]
    sent = next(s for s in rep["sentences"] if s["text"].startswith("Cardiothoracic ratio"))
    assert ctr["id"] in sent["measurement_ids"] and len(sent["mask_ids"]) == 3
    assert ctr["overlay"] == "overlay_ctr.png" and (tmp_path / "o" / "overlay_ctr.png").is_file()


def test_cardiac_panel_lv_mass_and_no_side_check_for_ventricles(tmp_path):
    shape = (48, 48, 14)
    sp = (1.5, 1.5, 8.0)
    img = medground.load(_nifti(tmp_path, np.random.default_rng(0).normal(100, 10, shape).astype(np.float32),
                                np.diag(list(sp) + [1.0])))
    lv = ellipsoid(shape, (30, 24, 7), (15, 15, 35), sp)
    myo = ellipsoid(shape, (30, 24, 7), (22, 22, 42), sp) & ~lv
    rv = ellipsoid(shape, (36, 24, 7), (10, 14, 30), sp) & ~myo & ~lv  # on the patient's right in RAS
    rep = report_from_masks(img, {"left ventricle": lv, "myocardium": myo, "right ventricle": rv},
                            tmp_path / "o", panel="mr_heart")
    mass = next(m for m in rep["measurements"] if m["name"] == "lv_myocardial_mass")
    assert mass["unit"] == "g" and mass["value"] == pytest.approx(myo.sum() * np.prod(sp) / 1000 * 1.05, rel=0.005)
    assert all(not s["warnings"] for s in rep["structures"])  # "right ventricle" is not a body side
    assert {s["section"] for s in rep["sentences"]} == {"Heart"}


def test_implausibly_small_organ_is_not_graded_but_a_small_one_is(tmp_path):
    """A 2 mL 'kidney' is not reported as a small kidney; a 70 mm kidney is."""
    shape = (60, 40, 56)
    sp = (2.0, 2.0, 3.0)
    aff = np.diag(list(sp) + [1.0])
    hu = np.full(shape, -1000.0, np.float32)
    hu[5:55, 5:35, :] = 30.0
    img = medground.load(_nifti(tmp_path, hu, aff))
    tiny = ellipsoid(shape, (44, 20, 28), (6, 5, 8), sp)  # 16 mm long
    small = ellipsoid(shape, (14, 20, 28), (14, 12, 35), sp)  # 70 mm long: atrophic, not implausible
    rep = report_from_masks(img, {"right kidney": tiny, "left kidney": small}, tmp_path / "o")
    sr = next(s for s in rep["structures"] if s["term_id"] == "kidney_right")
    sl = next(s for s in rep["structures"] if s["term_id"] == "kidney_left")
    assert sr["implausible"]["measure"] == "length" and sr["implausible"]["reference_min"] == 100
    assert "implausible" not in sl
    assert _meas(rep, "right kidney", "length")["status"] is None  # not graded
    assert _meas(rep, "left kidney", "length")["status"] == "low"
    texts = [i["text"] for i in rep["impression"]]
    assert any(t.startswith("Implausibly small") and "right kidney" in t for t in texts)
    small_kidney = [t for t in texts if "Small kidney" in t]
    assert small_kidney and all("right kidney" not in t for t in small_kidney)
