"""Brain structures by atlas registration: a small synthetic atlas made here (a 'brain' with two
'putamina' and two 'caudates'), a subject made from it by a known rotation/scale/shift on another grid
(LPS order, other spacing) with a bright 'skull' around it; plus real-data checks that skip without
../shared/data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medground.io.image import MedGroundInputError, MedImage

VALUES = {"putamen_left": 1, "putamen_right": 2, "caudate_nucleus_left": 3, "caudate_nucleus_right": 4}


def _world(shape, aff):
    idx = np.indices(shape).reshape(3, -1)
    return (aff[:3, :3] @ idx + aff[:3, 3:4]).T.reshape(*shape, 3)


def _phantom(w):
    """Template intensities and labels at RAS world points w (..., 3), in mm: brain = ellipsoid 70 x 85 x 60
    (semi-axes); structures: ellipsoids at +-22 mm (putamen, x) and +-12 mm (caudate) from the midline."""
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    brain = (x / 70) ** 2 + (y / 85) ** 2 + (z / 60) ** 2 <= 1
    wm = (x / 55) ** 2 + (y / 70) ** 2 + (z / 45) ** 2 <= 1
    img = np.where(brain, 0.45, 0.0) + np.where(wm, 0.35, 0.0)
    lab = np.zeros(x.shape, np.uint16)
    for side, sx in (("left", -1), ("right", 1)):  # RAS: patient left is -x
        put = ((x - sx * 22) / 6) ** 2 + ((y - 2) / 14) ** 2 + (z / 10) ** 2 <= 1
        cau = ((x - sx * 12) / 5) ** 2 + ((y - 14) / 9) ** 2 + ((z - 10) / 9) ** 2 <= 1
        lab[put] = VALUES[f"putamen_{side}"]
        lab[cau] = VALUES[f"caudate_nucleus_{side}"]
    img = np.where(lab > 0, 0.25 + 0.1 * (lab % 2), img)
    return img.astype(np.float32), lab


@pytest.fixture()
def atlas_root(tmp_path, monkeypatch):
    import nibabel as nib

    from medground.segment import atlas as A

    aff = np.diag([-2.0, -2.0, 2.0, 1.0])  # LPS voxel order, 2 mm
    aff[:3, 3] = [80, 96, -70]
    shape = (81, 97, 71)
    img, lab = _phantom(_world(shape, aff))
    for name in A.ATLASES:
        d = tmp_path / "atlases" / name / "cases" / "c"
        d.mkdir(parents=True)
        nib.save(nib.Nifti1Image((img * 255).astype(np.uint8), aff), str(d / "image.nii.gz"))
        nib.save(nib.Nifti1Image(lab if name == "brain-cit168" else np.zeros_like(lab), aff), str(d / "label.nii.gz"))
        (d.parent.parent / "dataset.json").write_text(json.dumps(
            {"name": name, "cases": [{"id": "c", "image": "cases/c/image.nii.gz", "label": "cases/c/label.nii.gz"}]}))
    monkeypatch.setenv("MEDGROUND_ATLASES", str(tmp_path / "atlases"))
    monkeypatch.setattr(A, "_CACHE", {})
    return tmp_path / "atlases"


def _subject(angle_deg=8.0, scale=1.06, shift=(6.0, -4.0, 5.0), spacing=1.5, skull=True):
    """The phantom seen through a known similarity transform, on a RAS grid of another spacing."""
    th = np.radians(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    n = (int(200 / spacing), int(230 / spacing), int(170 / spacing))
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = [-100, -115, -85]
    w = _world(n, aff)
    # subject point p corresponds to template point R^T (p - shift) / scale
    t = np.einsum("ij,...j->...i", rot.T, w - np.asarray(shift)) / scale
    img, lab = _phantom(t)
    if skull:
        x, y, z = t[..., 0], t[..., 1], t[..., 2]
        r = (x / 78) ** 2 + (y / 93) ** 2 + (z / 68) ** 2
        img = np.where((r > 1.05) & (r <= 1.3), 0.9, img)
    rng = np.random.default_rng(0)
    img = img * 700 + rng.normal(0, 15, img.shape) * (img > 0)
    return MedImage.from_array(img.astype(np.float32), aff, modality="MR"), lab


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_atlas_terms_come_from_the_registry():
    from medground.segment.atlas import atlas_term_index, is_atlas_term

    idx = atlas_term_index()
    assert idx["putamen_left"] == ("brain-cit168", 1) and is_atlas_term("cerebellar_lobule_v_left")
    assert not is_atlas_term("liver")


def test_structures_the_atlases_label_in_parts_are_their_union():
    """The thalamus is labelled only as Julich-Brain nuclei, a cerebellar hemisphere only as lobules: they are
    segmented as the union of their atlas parts, of the term's own side."""
    from medground.ontology import Ontology
    from medground.segment.atlas import atlas_members, is_atlas_term

    onto = Ontology.default()
    right = atlas_members("thalamus_right")
    assert len(right) >= 10 and all(onto.get(t).laterality == "right" for t in right) and is_atlas_term("thalamus_right")
    assert sum(t.startswith("thalamus_") for t in right) >= 10 and "putamen_right" not in right
    hemi = atlas_members("cerebellar_hemisphere_left")
    assert hemi and all(onto.get(t).laterality == "left" and "vermis" not in t for t in hemi)
    assert atlas_members("putamen_left") == ("putamen_left",) and atlas_members("liver") == ()
    assert set(atlas_members("putamen")) == {"putamen_left", "putamen_right"}
    # a few nuclei inside the brainstem are not the brainstem; every brain label is not the head
    assert atlas_members("brainstem") == () and atlas_members("midbrain") == () and atlas_members("head") == ()
    assert not is_atlas_term("body") and is_atlas_term("frontal_lobe_left") and is_atlas_term("hippocampus_right")


def test_registration_recovers_a_known_transform_in_the_input_grid(atlas_root):
    from medground.segment.text import segment_text

    image, ref = _subject()
    res, extra = segment_text(image, ["left putamen", "right putamen", "caudate"], findings=None)
    assert extra["atlas_registration"]["ok"], extra
    assert extra["grounding_model"] == "brain atlas registration"
    for r, vals in zip(res, ([1], [2], [3, 4])):
        assert r.mask.shape == image.data.shape
        d = _dice(r.mask, np.isin(ref, vals))
        assert d > 0.75, (r.name, d)
        assert r.info["present"] and r.info["terms"][0]["grounding_head"] == "brain-cit168 atlas (registration)"
    brain = segment_text(image, ["brain"], findings=None)[0][0]  # the template's brain mask carried over
    x, y, z = np.moveaxis(_world(image.data.shape, image.affine), -1, 0)
    th = np.radians(8.0)
    p = np.stack([x - 6.0, y + 4.0, z - 5.0])
    t = np.einsum("ji,j...->i...", np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]]), p) / 1.06
    ref_brain = (t[0] / 70) ** 2 + (t[1] / 85) ** 2 + (t[2] / 60) ** 2 <= 1
    assert _dice(brain.mask, ref_brain) > 0.9
    # left is left in world coordinates (RAS: patient left has the smaller x)
    xl = (image.affine @ np.r_[np.argwhere(res[0].mask).mean(0), 1])[0]
    xr = (image.affine @ np.r_[np.argwhere(res[1].mask).mean(0), 1])[0]
    assert xl < -10 < 10 < xr


def test_structure_outside_the_field_of_view_is_absent(atlas_root):
    from medground.segment.atlas import segment_atlas

    image, _ = _subject()
    # keep only the slices above z = +10 mm: the caudates (higher) stay in view, the putamina mostly leave it
    top = int(np.ceil((10 + 85) / 1.5))
    aff = image.affine.copy()
    aff[:3, 3] = aff[:3, :3] @ np.array([0, 0, top]) + aff[:3, 3]
    cut = MedImage.from_array(image.data[:, :, top:], aff, modality="MR")
    r = segment_atlas(cut, ["putamen_left", "caudate_nucleus_right"])
    assert not r.masks["putamen_left"].any() and r.inside["putamen_left"] < 0.5
    assert r.masks["caudate_nucleus_right"].any() and r.inside["caudate_nucleus_right"] > 0.8


def test_not_a_brain_gives_absent_not_a_blob(atlas_root, monkeypatch):
    from medground.segment import atlas as A

    monkeypatch.setattr(A, "_head_check", lambda image: ("abdomen", 0.02))
    rng = np.random.default_rng(1)
    vol = rng.normal(100, 30, (90, 90, 40)).astype(np.float32)
    vol[:, :, :] *= (np.hypot(*np.meshgrid(np.arange(90) - 45, np.arange(90) - 45, indexing="ij")) < 40)[..., None]
    image = MedImage.from_array(vol, np.diag([3.0, 3.0, 5.0, 1.0]), modality="CT")
    r = A.segment_atlas(image, ["putamen_left"])
    assert not r.info["ok"] and "not a brain" in r.info["reason"]
    assert not r.masks["putamen_left"].any()


def test_2d_input_and_missing_atlases_are_clear_errors(atlas_root, monkeypatch, tmp_path):
    from medground.segment.atlas import segment_atlas

    pic = MedImage.from_array(np.random.default_rng(0).random((64, 64)).astype(np.float32))
    with pytest.raises(MedGroundInputError, match="3D volume"):
        segment_atlas(pic, ["putamen_left"])
    flat = MedImage.from_array(np.random.default_rng(0).random((32, 32, 8)).astype(np.float32))  # no geometry
    with pytest.raises(MedGroundInputError, match="geometry"):
        segment_atlas(flat, ["putamen_left"])
    monkeypatch.setenv("MEDGROUND_ATLASES", str(tmp_path / "nothing"))
    image, _ = _subject(spacing=3.0)
    with pytest.raises(MedGroundInputError, match="MEDGROUND_ATLASES"):
        segment_atlas(image, ["putamen_left"])


def test_cli_writes_atlas_masks_and_findings(atlas_root, tmp_path, monkeypatch, capsys):
    import nibabel as nib

    from medground.cli.main import main

    image, ref = _subject(spacing=2.0)
    p = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(image.data, image.affine), str(p))
    out = tmp_path / "out"
    assert main(["segment", str(p), "--prompt", "left putamen", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "findings.json").read_text())
    f = doc["findings"][0]
    assert f["present"] and f["mask_file"] == "left-putamen.nii.gz" and doc["atlas_registration"]["ok"]
    m = nib.load(str(out / "left-putamen.nii.gz"))
    assert m.shape == image.data.shape and np.allclose(m.affine, image.affine)
    assert _dice(np.asarray(m.dataobj) > 0, ref == 1) > 0.7
    monkeypatch.setenv("MEDGROUND_ATLASES", str(tmp_path / "nothing"))
    capsys.readouterr()
    assert main(["segment", str(p), "--prompt", "left putamen", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "MEDGROUND_ATLASES" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _shared_brain(shared_data, name):
    p = shared_data / "brain-atlases" / name
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def test_real_t1_putamen_on_the_left(shared_data, tmp_path, monkeypatch):
    """A real T1 head scan (skull, neck): the left putamen lands left of the midline with a plausible volume."""
    import medground
    from medground.segment import atlas as A

    monkeypatch.setenv("MEDGROUND_ATLASES", str(shared_data / "brain-atlases"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(A, "_CACHE", {})
    image = medground.load(_shared_brain(shared_data, "chris_t1.nii.gz"))
    r = A.segment_atlas(image, ["putamen_left", "putamen_right", "thalamus_right"])
    assert r.info["ok"] and r.info["correlation"] > 0.3, r.info
    assert set(r.masks) == {"putamen_left", "putamen_right", "thalamus_right"}  # the thalamic nuclei are not listed
    ml = {t: m.sum() * abs(np.linalg.det(image.affine[:3, :3])) / 1000 for t, m in r.masks.items()}
    assert all(3 < ml[t] < 10 for t in ("putamen_left", "putamen_right")), ml  # adult putamen: ~4-7 mL
    assert 5 < ml["thalamus_right"] < 15, ml  # the union of the right thalamic nuclei (adult thalamus ~6-9 mL)
    xt = (image.affine @ np.r_[np.argwhere(r.masks["thalamus_right"]).mean(0), 1])[0]
    assert xt > 5 and "brain-julich" in r.atlas["thalamus_right"]
    xl = (image.affine @ np.r_[np.argwhere(r.masks["putamen_left"]).mean(0), 1])[0]
    xr = (image.affine @ np.r_[np.argwhere(r.masks["putamen_right"]).mean(0), 1])[0]
    assert xl < -15 and xr > 15


def test_real_non_brain_volume_reports_absent(shared_data, tmp_path, monkeypatch):
    import medground
    from medground.segment import atlas as A

    p = shared_data / "mr-tumour" / "breast1_image.nrrd"
    if not p.exists():
        pytest.skip("breast MR not available")
    _shared_brain(shared_data, "")
    monkeypatch.setenv("MEDGROUND_ATLASES", str(shared_data / "brain-atlases"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(A, "_CACHE", {})
    r = A.segment_atlas(medground.load(p), ["putamen_left"])
    assert not r.info["ok"] and not r.masks["putamen_left"].any()


def test_untrained_terms_are_flagged_and_atlas_masks_stay_in_the_input_grid():
    """_assemble: a term the organ head never saw is marked trained: false; an atlas mask (input grid) and a
    head mask (canonical grid, mapped back) are united per prompt."""
    from types import SimpleNamespace

    from medground.ontology import Ontology
    from medground.segment.text import _assemble

    onto = Ontology.default()
    image = MedImage.from_array(np.zeros((6, 5, 4), np.float32) + np.arange(4), np.eye(4) * [2, 2, 3, 1])
    canon = SimpleNamespace(back=lambda v: np.flip(v, 0))
    head = np.zeros((6, 5, 4), bool)
    head[0, 0, 0] = True
    atl = np.zeros((6, 5, 4), bool)
    atl[1, 1, 1] = True
    per_term = {"vertebra_l3": {"mask": head, "presence": 0.7, "iou": 0.9, "present": True, "head": "organs"},
                "putamen_left": {"mask": atl, "presence": 1.0, "iou": 1.0, "present": True, "head": "atlas",
                                 "input_grid": True, "atlas": "brain-cit168"}}
    heads = {"organs": SimpleNamespace(name="g", term_ids=["liver"]), "findings": None}
    res = _assemble(image, ["L3 vertebra", "left putamen"], [onto.resolve("L3 vertebra"), onto.resolve("left putamen")],
                    per_term, heads, canon)
    assert res[0].info["terms"][0]["trained"] is False and res[0].mask[5, 0, 0] and res[0].mask.sum() == 1
    assert res[0].confidence == 0.5 and "zero-shot" in res[0].info["warning"]  # 0.7 x 0.9 claimed, capped
    assert res[1].confidence == 1.0 and "warning" not in res[1].info
    assert "trained" not in res[1].info["terms"][0] and res[1].mask[1, 1, 1] and res[1].mask.sum() == 1
    assert res[1].info["terms"][0]["grounding_head"] == "brain-cit168 atlas (registration)"


def test_brain_mr_report_assesses_atlas_structures(atlas_root, tmp_path, monkeypatch):
    """The mr_head panel's brain, putamen and caudate come from the atlas; without atlases they are 'not
    assessed' with the reason, not guessed."""
    from medground.report.builder import build_report

    image, ref = _subject(spacing=2.0)
    rep = build_report(image, tmp_path / "rep", panel="mr_head", dicom_sr=False)
    text = json.dumps(rep)
    assert "left putamen" in text and (tmp_path / "rep" / "left-putamen.nii.gz").exists()
    monkeypatch.setenv("MEDGROUND_ATLASES", str(tmp_path / "nothing"))
    rep2 = build_report(image, tmp_path / "rep2", panel="mr_head", dicom_sr=False)
    assert "the brain atlases are not installed" in json.dumps(rep2)
    assert not (tmp_path / "rep2" / "left-putamen.nii.gz").exists()
