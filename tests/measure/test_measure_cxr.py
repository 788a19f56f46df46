"""Cardiothoracic ratio on synthetic masks with known widths and on real JSRT radiographs."""
import numpy as np
import pytest

from medground import MedGroundInputError, MedImage
from medground.measure import cardiothoracic_ratio, flag


def _masks():
    shape = (300, 260)  # [x, y]
    heart = np.zeros(shape, bool)
    heart[110:190, 140:200] = True   # 80 px wide rows
    heart[105:110, 145:150] = True   # bulge on the image-left border (rows 145-149: 85 px wide)
    heart[190:196, 190:195] = True   # bulge on the image-right border (rows 190-194: 86 px wide)
    # transverse cardiac diameter (extremes on different rows): 105..195 = 91 px
    right = np.zeros(shape, bool)    # patient's right lung = image left
    right[40:140, 30:220] = True
    left = np.zeros(shape, bool)
    left[160:251, 40:230] = True     # outer edge x = 250
    right[35:40, 100:120] = True     # widest thoracic rows 100..119: 35..250 = 216 px
    return heart, left, right


def test_ctr_synthetic_known_widths():
    heart, left, right = _masks()
    img = MedImage(data=np.zeros(heart.shape + (1,)), affine=np.diag([0.2, 0.3, 1.0, 1.0]), ndim=2)
    r = cardiothoracic_ratio(heart, left, right, img)
    assert r["heart_width_px"] == 91 and r["thoracic_width_px"] == 216
    assert r["ratio"] == pytest.approx(91 / 216)
    assert r["heart_width_mm"] == pytest.approx(91 * 0.2) and r["thoracic_width_mm"] == pytest.approx(216 * 0.2)
    assert r["heart_x"] == [105, 195] and r["thoracic_x"] == [35, 250]
    assert r["heart_rows"] == [147, 192]
    assert 100 <= r["thoracic_row"] < 120
    assert "PA" in r["method"]
    row = cardiothoracic_ratio(heart, left, right, img, heart_method="row")
    assert row["heart_width_px"] == 86 and row["ratio"] == pytest.approx(86 / 216)
    assert row["heart_rows"] == [190, 190]
    # without physical spacing: pixels only
    png = MedImage(data=np.zeros(heart.shape + (1,)), ndim=2, has_geometry=False)
    assert cardiothoracic_ratio(heart, left, right, png)["heart_width_mm"] is None


def test_ctr_input_errors():
    heart, left, right = _masks()
    with pytest.raises(MedGroundInputError):
        cardiothoracic_ratio(np.zeros_like(heart), left, right)
    with pytest.raises(MedGroundInputError):
        cardiothoracic_ratio(heart, left, np.zeros_like(right))
    with pytest.raises(MedGroundInputError):
        cardiothoracic_ratio(np.zeros((4, 4, 3), bool), np.zeros((4, 4, 3), bool), np.zeros((4, 4, 3), bool))


def test_ctr_jsrt_plausible(measure_shared_data):
    from PIL import Image

    root = measure_shared_data / "jsrt-cxr" / "masks"
    if not (root / "heart").is_dir():
        pytest.skip("jsrt-cxr masks absent")
    ids = sorted(p.name for p in (root / "heart").glob("*.png"))[:8]
    assert ids
    for name in ids:
        # PNG rows are y: the [x, y] mask is the transposed array
        masks = [np.asarray(Image.open(root / organ / name)).T > 0 for organ in ("heart", "left_lung", "right_lung")]
        img = MedImage(data=np.zeros(masks[0].shape + (1,)), ndim=2, has_geometry=False)
        r = cardiothoracic_ratio(*masks, img)
        assert 0.3 <= r["ratio"] <= 0.7, (name, r["ratio"])
        assert flag("cardiothoracic_ratio", r["ratio"])["status"] in ("normal", "high")
