"""compute_metrics: analytic shapes, anisotropic spacing, and each empty-mask case."""
import math

import numpy as np
import pytest

from medground import MedGroundInputError
from medground.evaluate import compute_metrics


def _square(shape, x0, y0, n):
    m = np.zeros(shape, bool)
    m[x0:x0 + n, y0:y0 + n] = True
    return m


def _cube(shape, x0, y0, z0, n):
    m = np.zeros(shape, bool)
    m[x0:x0 + n, y0:y0 + n, z0:z0 + n] = True
    return m


def test_offset_squares_dice_analytic():
    n, dx, dy = 20, 3, 5
    a = _square((40, 40), 5, 5, n)
    b = _square((40, 40), 5 + dx, 5 + dy, n)
    m = compute_metrics(a, b, spacing=(0.5, 0.5))
    assert m["dice"] == pytest.approx((n - dx) * (n - dy) / n**2, abs=1e-6)
    assert m["ndim"] == 2
    assert m["area_pred_mm2"] == pytest.approx(n * n * 0.25)
    assert m["area_ref_mm2"] == pytest.approx(n * n * 0.25)
    assert m["presence"] == "TP"
    assert m["presence_counts"] == {"TP": 1, "FP": 0, "TN": 0, "FN": 0}
    assert 0.0 < m["nsd"] < 1.0


def test_offset_cubes_dice_and_hd95_anisotropic():
    n, k = 12, 2
    spacing = (0.8, 0.7, 2.5)
    a = _cube((24, 24, 24), 4, 4, 4, n)
    b = _cube((24, 24, 24), 4, 4, 4 + k, n)  # shifted by k voxels along z (2.5 mm each)
    m = compute_metrics(a, b, spacing=spacing)
    assert m["dice"] == pytest.approx((n - k) / n, abs=1e-6)
    assert m["hd95"] == pytest.approx(k * spacing[2], abs=1e-6)  # 5 mm
    assert m["volume_pred_ml"] == pytest.approx(n**3 * 0.8 * 0.7 * 2.5 / 1000)
    assert m["units"] == "mm"
    # every boundary point is within 5 mm of the other surface -> NSD 1 at 5 mm, < 1 at 2 mm
    assert compute_metrics(a, b, spacing=spacing, nsd_tolerance_mm=5.0)["nsd"] == pytest.approx(1.0)
    assert m["nsd"] < 1.0
    # the same shift along x is 2 * 0.8 mm
    c = _cube((24, 24, 24), 4 + k, 4, 4, n)
    assert compute_metrics(a, c, spacing=spacing)["hd95"] == pytest.approx(k * spacing[0], abs=1e-6)


def test_identical_masks_and_2d_as_singleton_z():
    a = _square((30, 30), 4, 6, 10)
    m = compute_metrics(a[:, :, None], a[:, :, None], spacing=(0.5, 0.5, 1.0))
    assert m["ndim"] == 2 and m["dice"] == 1.0 and m["nsd"] == 1.0 and m["hd95"] == 0.0


def test_no_spacing_means_voxel_units():
    a = _square((30, 30), 5, 5, 10)
    b = _square((30, 30), 8, 5, 10)
    m = compute_metrics(a, b, spacing=None)
    assert m["units"] == "voxel"
    assert m["hd95"] == pytest.approx(3.0)


def test_both_empty_is_true_negative():
    e = np.zeros((10, 10, 10), bool)
    m = compute_metrics(e, e, spacing=(1, 1, 1))
    assert (m["dice"], m["nsd"], m["hd95"]) == (1.0, 1.0, 0.0)
    assert m["presence"] == "TN"
    assert m["volume_pred_ml"] == 0.0 and m["volume_ref_ml"] == 0.0


def test_empty_reference_nonempty_prediction_is_false_positive():
    e = np.zeros((10, 10, 10), bool)
    p = _cube((10, 10, 10), 2, 2, 2, 3)
    m = compute_metrics(p, e, spacing=(1, 1, 1))
    assert m["dice"] == 0.0 and m["nsd"] == 0.0 and math.isnan(m["hd95"])
    assert m["presence"] == "FP" and m["presence_counts"]["FP"] == 1


def test_nonempty_reference_empty_prediction_is_false_negative():
    e = np.zeros((10, 10), bool)
    r = _square((10, 10), 2, 2, 3)
    m = compute_metrics(e, r, spacing=(1, 1))
    assert m["dice"] == 0.0 and m["nsd"] == 0.0 and math.isnan(m["hd95"])
    assert m["presence"] == "FN"


def test_bad_input():
    with pytest.raises(MedGroundInputError):
        compute_metrics(np.zeros((4, 4), bool), np.zeros((4, 5), bool), None)
    with pytest.raises(MedGroundInputError):
        compute_metrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (1.0, 1.0))


def test_dice_score_plain_overlap_and_empty_rule():
    from medground.evaluate.metrics import compute_metrics, dice_score

    a = np.zeros((6, 6), bool)
    b = np.zeros((6, 6), bool)
    assert dice_score(a, b) == 1.0  # both empty: true negative
    a[1:3, 1:3] = True
    assert dice_score(a, b) == 0.0  # one empty
    b[2:4, 1:3] = True
    assert dice_score(a, b) == pytest.approx(0.5)
    assert dice_score(a.astype(np.uint8) * 3, b) == pytest.approx(compute_metrics(a, b)["dice"])
    with pytest.raises(MedGroundInputError):
        dice_score(a, b[:5])
