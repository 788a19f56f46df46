"""MR grey-scale check: the inverse inside the body, and the choice between it and the image as acquired."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medground.io.image import MedImage
from medground.segment.contrast import body_mask, invert_within_body
from medground.segment.text import TextConfig, _check_contrast


def _body(organ: float, fat: float = 0.5, z: int = 10) -> MedImage:
    """A 64 x 64 x z 'abdomen': air 0, an elliptic body of grey `fat` holding a dark 'lung' (air inside the
    body) and a central organ of grey `organ`."""
    x, y = np.mgrid[:64, :64]
    body = ((x - 32) / 28.0) ** 2 + ((y - 32) / 22.0) ** 2 <= 1
    lung = ((x - 18) / 5.0) ** 2 + ((y - 32) / 5.0) ** 2 <= 1
    centre = ((x - 36) / 8.0) ** 2 + ((y - 32) / 8.0) ** 2 <= 1
    sl = np.where(body, fat, 0.0)
    sl[lung] = 0.02
    sl[centre] = organ
    vol = np.repeat(sl[:, :, None], z, axis=2).astype(np.float32) * 1000
    return MedImage.from_array(vol, np.diag([1.5, 1.5, 3.0, 1.0]), modality="MR")


def test_body_mask_keeps_air_inside_the_body():
    img = _body(0.9)
    m = body_mask(img.data)
    assert m[18, 32, 0]  # the dark 'lung' is inside the body
    assert not m[0, 0, 0] and not m[63, 63, 2]  # air outside is not
    assert 0.4 < m.mean() < 0.6


def test_inverse_swaps_tissues_and_keeps_air_and_geometry():
    img = _body(0.9, fat=0.3)
    inv = invert_within_body(img)
    d, e = img.data, inv.data
    assert e.shape == d.shape and np.array_equal(inv.affine, img.affine) and inv.modality == "MR"
    assert e[36, 32, 0] < e[10, 32, 0]  # the bright organ is now darker than the fat around it
    assert e[18, 32, 0] > e[10, 32, 0]  # air inside the body becomes bright ...
    assert e[0, 0, 0] == e.min()  # ... air outside stays the darkest
    assert np.array_equal(img.data, d)  # the input is untouched
    assert inv.meta["contrast"] == "inverted within the body"


class _Model:
    """Stands in for LiteMedSAM: the 'embedding' is the picture pooled to 8 x 8."""

    def encode(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.mean(dim=1, keepdim=True), 8)


class _Head:
    """Stands in for the organ head: the asked term is 'present' where the picture's centre is dark."""

    def head(self, emb, temb):
        centre = emb[:, 0, 3:5, 3:5].mean(dim=(1, 2))
        logits = (0.35 - centre)[:, None].repeat(1, temb.shape[0]) * 40
        return None, logits


def _check(img, cfg, modality="MRI", head=0.1):
    from medground.segment.predictor import SlicePredictor

    pred = SlicePredictor(img, model=_Model())
    memo = {"c": {"modality": modality, "probabilities": {"body_region": {"head": head}}}}
    return _check_contrast(img, img, pred, _Head(), torch.zeros(2, 4), cfg, memo)


def test_the_inverse_is_used_only_when_the_organs_become_clearer():
    dark_organ = _body(0.05)  # what the head knows: kept as acquired
    info = _check(dark_organ, TextConfig())
    assert info["used"] == "as acquired" and info["checked"] and "_image" not in info
    assert info["organ_presence"]["as acquired"] > info["organ_presence"]["inverted"]
    bright_organ = _body(0.95)  # the opposite contrast: inverted
    info = _check(bright_organ, TextConfig())
    assert info["used"] == "inverted" and info["probe_slices"] == 6
    assert info["organ_presence"]["inverted"] >= info["organ_presence"]["as acquired"] + 0.15
    assert info["_image"].data[36, 32, 0] < info["_image"].data[10, 32, 0]
    assert info["_predictor"].image is info["_image"]
    # a margin the gain cannot reach, or an inverse still not clear enough: as acquired
    assert _check(bright_organ, TextConfig(contrast_margin=1.01))["used"] == "as acquired"
    assert _check(bright_organ, TextConfig(contrast_min=1.01))["used"] == "as acquired"


def test_when_the_check_does_not_run():
    img = _body(0.95)
    assert _check(img, TextConfig(contrast_check="off")) == {}
    unknown = MedImage.from_array(img.data, img.affine)  # no modality in the header (e.g. NIfTI) ...
    assert _check(unknown, TextConfig(), modality="CT") == {}  # ... and the classifier takes it for CT
    assert _check(unknown, TextConfig(), modality="MRI")["used"] == "inverted"
    assert _check(img, TextConfig(), head=0.95) == {}  # a head: body organs are gated anyway
    ct = MedImage.from_array(img.data, img.affine, modality="CT")
    assert _check(ct, TextConfig(), modality="MRI") == {}  # the header says CT
    forced = _check(_body(0.05), TextConfig(contrast_check="inverted"))
    assert forced["used"] == "inverted" and forced["checked"] is False
    with pytest.raises(ValueError, match="contrast_check"):
        _check(img, TextConfig(contrast_check="maybe"))


def test_a_real_t1_abdomen_slice_is_read_inverted(shared_data, tmp_path):
    """TotalSegmentator's MR example (T1-weighted, never trained on), one slice as a picture: the liver is lost as
    acquired and found once the check inverts the grey scale."""
    nib = pytest.importorskip("nibabel")
    from PIL import Image

    import medground
    from medground.segment.text import segment_text

    f, seg = shared_data / "totalsegmentator" / "example_mr_sm.nii.gz", shared_data / "totalsegmentator" / "example_seg_mr.nii.gz"
    if not f.exists() or not seg.exists():
        pytest.skip("TotalSegmentator MR example not in the shared data")
    d = np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)
    lo, hi = np.percentile(d, [0.5, 99.5])
    sl = (np.clip((d[:, :, 8] - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(sl.T).save(tmp_path / "t1.png")
    ref = np.asarray(nib.load(str(seg)).dataobj)[:, :, 8] == 5  # liver
    img = medground.load(tmp_path / "t1.png")

    def liver_dice(mode):
        (r,), extra = segment_text(img, ["liver"], cfg=TextConfig(contrast_check=mode))
        m = r.mask[:, :, 0]
        return 2 * (m & ref).sum() / (m.sum() + ref.sum()), extra

    off, _ = liver_dice("off")
    on, extra = liver_dice("auto")
    assert extra["contrast"]["used"] == "inverted"
    assert on > 0.85 and off < 0.3


def test_the_check_reads_the_image_not_the_prompt(shared_data):
    """TotalSegmentator's T1 MR volume: "liver" alone was read inverted (liver found), but "liver, pancreas, left
    kidney" was read as acquired (the pancreas, learned from CT only, dragged the asked terms' mean) and drew 8 mL of
    liver. The check now scores a fixed set of organs learned from MR, whatever is asked."""
    nib = pytest.importorskip("nibabel")

    import medground
    from medground.models.grounding import load_grounding
    from medground.segment.text import mr_probe_terms, segment_text

    f, seg = shared_data / "totalsegmentator" / "example_mr_sm.nii.gz", shared_data / "totalsegmentator" / "example_seg_mr.nii.gz"
    if not f.exists() or not seg.exists():
        pytest.skip("TotalSegmentator MR example not in the shared data")
    assert {"liver", "spleen", "kidney_left", "left_ventricle"} <= set(mr_probe_terms(load_grounding()))
    assert "pancreas" not in mr_probe_terms(load_grounding())
    img = medground.load(f)
    ref = np.asarray(nib.load(str(seg)).dataobj) == 5  # liver
    (liver, _, _), extra = segment_text(img, ["liver", "pancreas", "left kidney"])
    assert extra["contrast"]["used"] == "inverted"
    assert 2 * (liver.mask & ref).sum() / (liver.mask.sum() + ref.sum()) > 0.8
