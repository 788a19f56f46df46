"""A lateral chest radiograph: the left and right lungs overlap, so they (and the heart and clavicles, learned from
frontal views) are not assessed; frontal views and a frontal view with one lung whited out are left alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medground.segment.text import TextConfig, lateral_view

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _field(shape, x0, x1, y0=20, y1=80):
    m = np.zeros(shape, bool)
    m[x0:x1, y0:y1] = True
    return m


def test_one_field_across_the_middle_is_lateral():
    cfg = TextConfig()
    lat = lateral_view(_field((100, 100), 18, 82), cfg)  # one field, centred, 64 % of the width
    assert lat == {"lung_fields": 1, "centre": 0.5, "width": 0.64}
    two = _field((100, 100), 15, 45) | _field((100, 100), 55, 85)  # a frontal view: two fields
    assert lateral_view(two, cfg) is None
    assert lateral_view(_field((100, 100), 10, 45), cfg) is None  # one lung whited out: one field, off the middle
    assert lateral_view(_field((100, 100), 40, 60), cfg) is None  # too narrow for a lung field seen from the side
    assert lateral_view(np.zeros((100, 100), bool), cfg) is None


@pytest.mark.skipif(not (SHARED / "covid-cxr").exists(), reason="shared data absent")
def test_a_lateral_covid_radiograph_keeps_its_lungs_but_not_their_sides():
    import medground
    from medground.segment.text import segment_text

    img = medground.load(SHARED / "covid-cxr" / "images" / "nejmoa2001191_f1-L.jpg")
    res, extra = segment_text(img, ["left lung", "right lung", "lungs", "heart"])
    by = {r.name: r for r in res}
    assert extra["view_check"]["lateral"] is True
    for name in ("left lung", "right lung", "heart"):
        assert not by[name].mask.any() and by[name].confidence == 0.5 and "side view" in by[name].info["not_assessed"]
    assert by["lungs"].mask.sum() > 0.2 * by["lungs"].mask.size
    front, extra = segment_text(medground.load(sorted((SHARED / "jsrt-cxr" / "images").glob("*.jpg"))[0]),
                                ["left lung"])
    assert extra["view_check"] == {"lateral": False} and front[0].mask.any()
    _, extra = segment_text(img, ["left lung"], cfg=TextConfig(lateral_check=False))
    assert "view_check" not in extra


class _Orient:
    """An orientation network that always answers ``probs`` (8 transforms, orientation.NAMES order)."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=float)

    def predict(self, thumb):
        return self.probs


def test_a_radiograph_is_mirrored_only_when_the_orientation_net_is_very_sure(monkeypatch):
    import medground.classify as C
    from medground.io.image import MedImage
    from medground.models.orientation import NAMES
    from medground.segment.text import canonicalize

    pic = MedImage.from_array(np.random.default_rng(0).random((32, 40)).astype(np.float32))
    flip = NAMES.index("flip_lr")

    def probs(p_flip, k=flip):
        v = np.zeros(8)
        v[0], v[k] = 1 - p_flip, p_flip
        return v

    def kind(modality):
        monkeypatch.setattr(C, "classify", lambda image: {"probabilities": {"modality": {modality: 0.95}}})

    kind("X-ray")
    c = canonicalize(pic, _Orient(probs(0.66)), TextConfig(), {})
    assert c.info["transform"] == "identity" and c.info["mirror_needs"] == 0.9  # 0.66 is not enough on a radiograph
    assert canonicalize(pic, _Orient(probs(0.95)), TextConfig(), {}).info["transform"] == "flip_lr"
    rot = NAMES.index("rot90")  # a rotation keeps left and right: the usual bar
    assert canonicalize(pic, _Orient(probs(0.66, rot)), TextConfig(), {}).info["transform"] != "identity"
    off = TextConfig(radiograph_mirror_min_prob=None)
    assert canonicalize(pic, _Orient(probs(0.66)), off, {}).info["transform"] == "flip_lr"
    kind("CT")  # a CT slice exported as a picture: the usual bar
    assert canonicalize(pic, _Orient(probs(0.66)), TextConfig(), {}).info["transform"] == "flip_lr"
