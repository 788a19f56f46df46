"""The lungs on an 8-bit picture of a CT slice (no Hounsfield units, window unknown): read in a lung window, with gas
kept out and the sides taken from the display convention; not assessed in a soft-tissue window."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medground.evaluate.metrics import dice_score as dice
from medground.segment.air import PictureAirConfig, picture_lung_masks

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def slice_hu(seed: int = 0, lungs: bool = True):
    """A 128 x 128 axial chest slice in HU, (X, Y) in display orientation (X grows toward the patient's left): air
    around, fat under the skin, soft tissue, two lungs with vessels (the patient's right one larger), a gas pocket."""
    rng = np.random.default_rng(seed)
    X = Y = 128
    i, j = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    a = -1000.0 + rng.normal(0, 10, (X, Y))
    body = ((i - 64) / 58) ** 2 + ((j - 64) / 44) ** 2 <= 1
    inner = ((i - 64) / 52) ** 2 + ((j - 64) / 38) ** 2 <= 1
    a[body] = -100 + rng.normal(0, 15, body.sum())  # fat
    a[inner] = 40 + rng.normal(0, 15, inner.sum())  # muscle and organs
    right = ((i - 40) / 20) ** 2 + ((j - 64) / 26) ** 2 <= 1  # image left = patient's right
    left = ((i - 90) / 17) ** 2 + ((j - 64) / 24) ** 2 <= 1
    gas = ((i - 64) / 5) ** 2 + ((j - 95) / 4) ** 2 <= 1
    truth = {"lung_right": right & lungs, "lung_left": left & lungs}
    if lungs:
        for m in (right, left):
            a[m] = -840 + rng.normal(0, 40, m.sum())
            vessels = m & (rng.random((X, Y)) < 0.03)
            a[vessels] = 40
    a[gas] = -1000 + rng.normal(0, 10, gas.sum())
    return a, truth


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """An 8-bit picture's grey values (scaled to [0, 1]) through a CT window."""
    return np.round(np.clip((hu - (level - width / 2)) / width, 0, 1) * 255) / 255


def test_lung_window_lungs_found_gas_left_out_sides_by_display():
    hu, truth = slice_hu()
    masks, info = picture_lung_masks(window(hu, -600, 1500))
    assert info["lung_window"] is True
    assert dice(masks["lung_right"], truth["lung_right"]) > 0.9
    assert dice(masks["lung_left"], truth["lung_left"]) > 0.9
    assert not (masks["lung"] & (window(hu, -600, 1500) < 0.3) & ~(truth["lung_left"] | truth["lung_right"])).any()
    assert len(info["components_kept"]) == 2


def test_no_lungs_on_a_lung_window_slice_without_them():
    hu, _ = slice_hu(lungs=False)
    masks, info = picture_lung_masks(window(hu, -600, 1500))
    assert masks is not None and not masks["lung"].any()  # the gas pocket is air, not lung


def test_soft_tissue_window_is_not_read():
    hu, _ = slice_hu()
    masks, info = picture_lung_masks(window(hu, 40, 400))
    assert masks is None and info["lung_window"] is False and "not in a lung window" in info["why"]


def test_padding_and_a_crop_through_the_lungs():
    hu, truth = slice_hu()
    g = window(hu, -600, 1500)
    padded = np.zeros((168, 150))
    padded[20:148, 11:139] = g  # a figure's black frame around the picture
    masks, _ = picture_lung_masks(padded)
    assert dice(masks["lung"][20:148, 11:139], truth["lung_left"] | truth["lung_right"]) > 0.9
    crop = g[:, 50:]  # cut through both lungs at the picture's top edge
    masks, _ = picture_lung_masks(crop)
    t = (truth["lung_left"] | truth["lung_right"])[:, 50:]
    assert dice(masks["lung"], t) > 0.85


def test_rejects_wrong_input():
    with pytest.raises(ValueError):
        picture_lung_masks(np.zeros((4, 4, 4)))
    masks, info = picture_lung_masks(np.zeros((32, 32)))  # all black: nothing to read
    assert masks is None or not masks["lung"].any()
    cfg = PictureAirConfig(min_tissue_grey=0.99)
    hu, _ = slice_hu()
    assert picture_lung_masks(window(hu, -600, 1500), cfg)[0] is None


def test_segment_text_on_a_lung_window_picture(tmp_path):
    """The text route: "left lung" / "lungs" on a PNG of a CT slice classified CT, in the input's own grid."""
    import medground
    from PIL import Image

    from medground.segment.text import segment_text

    hu, truth = slice_hu()
    Image.fromarray((window(hu, -600, 1500).T * 255).astype(np.uint8)).save(tmp_path / "chest_ct.png")
    img = medground.load(tmp_path / "chest_ct.png")
    res, extra = segment_text(img, ["lungs", "left lung"])
    by = {r.name: r for r in res}
    info = extra.get("lungs_by_air")
    if info is None:  # the image classifier did not take this drawing for a CT: the organ route answered
        pytest.skip("the synthetic picture was not classified as CT")
    assert by["left lung"].mask.shape[:2] == (128, 128)
    assert info["orientation"]["transform"] == "identity"  # drawn in the display convention: kept as it is
    assert dice(by["left lung"].mask[:, :, 0], truth["lung_left"]) > 0.85
    assert by["lungs"].info["terms"][0]["grounding_head"].startswith("CT air rule (lung window of a picture")


@pytest.mark.skipif(not (SHARED / "covid-cxr" / "metadata.csv").exists(), reason="../shared/data not present")
def test_covid_ct_figures_show_two_lungs():
    """Real JPEG figures of chest CT (covid-chestxray-dataset, CT rows): most in a lung window, both lungs found."""
    from PIL import Image

    root = SHARED / "covid-cxr"
    rows = [r for r in csv.DictReader(open(root / "metadata.csv")) if r["modality"] == "CT"][:20]
    both = read = 0
    for r in rows:
        g = np.asarray(Image.open(root / r["image"]).convert("L"), dtype=np.float32).T / 255
        masks, _ = picture_lung_masks(g)
        if masks is None:
            continue
        read += 1
        both += bool(masks["lung_left"].any() and masks["lung_right"].any())
    assert read >= 14 and both >= 0.8 * read
