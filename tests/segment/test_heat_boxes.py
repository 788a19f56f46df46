"""Heat maps -> boxes: the box margin (grown in the network's 256 frame, clipped to the slice) and how a term's
margin is chosen (explicit, per-term dict, or the head's calibration)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medground.io.image import MedImage
from medground.segment.predictor import SlicePredictor
from medground.segment.text import TextConfig, box_margin, heat_boxes


class _NoSAM:
    def encode(self, x):  # never called: heat_boxes reads no embedding
        raise AssertionError("the encoder should not run")


class _Bundle:
    calibration = {"pancreas": {"box_margin": 7.0}}


def _predictor(x=128, y=96):
    img = MedImage(np.zeros((x, y, 1), np.float32), np.eye(4), 2, "CT", False, source_format="png")
    return SlicePredictor(img, model=_NoSAM())


def _heat(g=64, rows=slice(20, 30), cols=slice(10, 20)):
    h = torch.full((g, g), -10.0)
    h[rows, cols] = 10.0
    return h


def test_margin_grows_the_box_by_frame_pixels_and_is_clipped():
    pred = _predictor()  # 128 x 96 slice: the 256 frame is 2x the slice
    cfg = TextConfig()
    (b0,), _, kept0 = heat_boxes(_heat(), pred, cfg, margin=0.0)
    (b4,), _, kept4 = heat_boxes(_heat(), pred, cfg, margin=4.0)
    grow = 4.0 / pred.scale
    assert pred.scale == pytest.approx(2.0)
    assert b4[0] == pytest.approx(b0[0] - grow) and b4[1] == pytest.approx(b0[1] - grow)
    assert b4[2] == pytest.approx(b0[2] + grow) and b4[3] == pytest.approx(b0[3] + grow)
    assert np.array_equal(kept0, kept4)  # the heat blobs themselves do not change
    # a blob at the corner: the grown box stays inside the slice
    (bc,), _, _ = heat_boxes(_heat(rows=slice(0, 6), cols=slice(0, 6)), pred, cfg, margin=20.0)
    assert bc[0] == 0.0 and bc[1] == 0.0
    (be,), _, _ = heat_boxes(_heat(rows=slice(40, 48), cols=slice(58, 64)), pred, cfg, margin=20.0)
    assert be[2] == 127.0 and be[3] <= 95.0


def test_box_margin_resolution():
    b = _Bundle()
    assert box_margin("pancreas", b, TextConfig()) == 7.0  # calibrated
    assert box_margin("liver", b, TextConfig()) == 0.0  # nothing calibrated
    assert box_margin("pancreas", b, TextConfig(box_margin=2)) == 2.0  # explicit for every term
    assert box_margin("pancreas", b, TextConfig(box_margin={"pancreas": 3, "liver": 1})) == 3.0
    assert box_margin("liver", b, TextConfig(box_margin={"pancreas": 3})) == 0.0  # missing from the dict: auto


def test_a_wall_is_filled_across_its_cavity_and_the_cavity_cut_out():
    from medground.segment.text import CAVITIES, _carve

    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(xx - 20, yy - 20)
    cavity = r < 8
    # the coarse wall: a blob that spills into the lumen on one side and leaves a hole on the other
    wall = (r < 12) & ~((r < 6) & (xx > 20))
    m = np.stack([wall, np.zeros_like(wall)], -1)
    c = np.stack([cavity, cavity], -1)
    per_term = {"myocardium": {"mask": m.copy(), "present": True, "slices": [0]},
                "left_ventricle": {"mask": c, "present": True, "slices": [0, 1]}}
    _carve(per_term, {"myocardium": "left_ventricle"})
    out = per_term["myocardium"]["mask"]
    assert np.array_equal(out[:, :, 0], (r < 12) & ~cavity)  # a ring: filled, then the cavity removed
    assert not out[:, :, 1].any()  # no wall where there was none, whatever the cavity
    assert per_term["myocardium"]["present"] and per_term["myocardium"]["slices"] == [0]
    assert CAVITIES["myocardium"] == "left_ventricle"


def test_weak_ends_of_a_run_are_trimmed_unless_nothing_is_strong():
    from medground.segment.text import _trim_run

    pz = np.array([0.1, 0.55, 0.7, 0.95, 0.99, 0.9, 0.6, 0.2])
    assert _trim_run((1, 6), pz, None) == (1, 7)
    assert _trim_run((1, 6), pz, 0.8) == (3, 6)  # slices 3..5
    assert _trim_run((1, 6), pz, 0.65) == (2, 6)
    weak = np.array([0.4, 0.5, 0.45])
    assert _trim_run((0, 2), weak, 0.8) == (0, 3)  # no slice reaches 0.8: the run is kept whole


def test_heat_is_smoothed_along_z_per_term():
    from medground.segment.text import smooth_z

    H = torch.zeros(5, 2, 3, 3)
    H[2] = 4.0  # a one-slice spike for both terms
    out = smooth_z(H, torch.tensor([0.25, 0.0]))
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0]))
    assert torch.equal(out[:, 1], H[:, 1])  # weight 0: untouched
    flat = torch.ones(4, 1, 2, 2)
    assert torch.allclose(smooth_z(flat, torch.tensor([0.25])), flat)  # constant along z (ends included) stays


def test_run_end_presence_is_a_per_term_setting():
    """"auto" reads the head's calibration (off where it says nothing); a number or a dict overrides it."""
    from types import SimpleNamespace

    from medground.models.grounding import CALIBRATED
    from medground.segment.text import TextConfig, _per_term

    assert "run_end_presence" in CALIBRATED
    head = SimpleNamespace(calibration={"right_ventricle": {"run_end_presence": 0.9}})
    get = lambda cfg, t: _per_term(cfg.run_end_presence, t, head, "run_end_presence", None)  # noqa: E731
    assert TextConfig().run_end_presence == "auto"
    assert get(TextConfig(), "right_ventricle") == 0.9 and get(TextConfig(), "liver") is None
    assert get(TextConfig(run_end_presence=None), "right_ventricle") is None
    assert get(TextConfig(run_end_presence={"liver": 0.7}), "liver") == 0.7
    assert get(TextConfig(run_end_presence={"liver": 0.7}), "right_ventricle") == 0.9


def test_packaged_head_trims_the_cardiac_terms_only():
    from medground.models.grounding import load_grounding

    cal = load_grounding().calibration
    trimmed = {t for t, v in cal.items() if v.get("run_end_presence") is not None}
    assert trimmed == {"left_ventricle", "right_ventricle", "myocardium"}
