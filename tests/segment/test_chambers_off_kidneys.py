"""A cardiac chamber drawn mostly inside a kidney (the right ventricle on an abdominal MR was the right kidney) is
removed from those slices; a chamber beside a kidney is kept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medground.segment.text import _chambers_off_kidneys

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _pt(mask):
    return {"mask": mask, "present": bool(mask.any()), "slices": [int(z) for z in np.where(mask.any(axis=(0, 1)))[0]]}


def test_slices_lying_in_a_kidney_are_removed():
    shape = (40, 40, 6)
    kid = np.zeros(shape, bool)
    kid[5:15, 5:15, :4] = True
    rv = np.zeros(shape, bool)
    rv[6:14, 6:14, 1:4] = True  # inside the kidney on slices 1-3
    rv[25:35, 25:35, 4:6] = True  # elsewhere on slices 4-5
    lv = np.zeros(shape, bool)
    lv[20:30, 5:15, :] = True  # beside it
    per = {"kidney_left": _pt(kid), "kidney_right": _pt(np.zeros(shape, bool)), "right_ventricle": _pt(rv),
           "left_ventricle": _pt(lv)}
    _chambers_off_kidneys(per, ["right_ventricle", "left_ventricle"])
    assert per["right_ventricle"]["on_kidneys"] == [1, 2, 3] and per["right_ventricle"]["slices"] == [4, 5]
    assert per["right_ventricle"]["mask"][:, :, 4:].any() and not per["right_ventricle"]["mask"][:, :, :4].any()
    assert "on_kidneys" not in per["left_ventricle"] and per["left_ventricle"]["mask"].sum() == lv.sum()
    only = np.zeros(shape, bool)
    only[6:14, 6:14, 0:2] = True
    per["myocardium"] = _pt(only)
    _chambers_off_kidneys(per, ["myocardium"])
    assert per["myocardium"]["kidney_instead"] and not per["myocardium"]["present"]


@pytest.mark.skipif(not (SHARED / "chaos-mr").exists(), reason="shared data absent")
def test_the_right_ventricle_of_an_abdominal_mr_is_not_its_kidney():
    import medground
    from medground.io.image import MedImage
    from medground.segment.text import TextConfig, segment_text

    full = medground.load(SHARED / "chaos-mr" / "images" / "patient_01")  # a T2 abdomen, no heart in view
    img = MedImage(np.ascontiguousarray(full.data[:, :, 14:22]), full.affine, 3, "MR", full.has_geometry,
                   source_format=full.source_format)  # 8 slices through the kidneys
    (rv, kid), _ = segment_text(img, ["right ventricle", "right kidney"])
    (rv_off,), _ = segment_text(img, ["right ventricle"], cfg=TextConfig(chamber_kidney_check=False))
    assert (rv_off.mask & kid.mask).sum() > 0.5 * rv_off.mask.sum()  # without the check: the kidney
    assert (rv.mask & kid.mask).sum() < 0.5 * max(1, rv.mask.sum()) and rv.mask.sum() < 0.5 * rv_off.mask.sum()
