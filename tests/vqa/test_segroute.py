import pytest

from medground.vqa import segroute


def test_plan_routes_only_what_the_segmenter_knows():
    p = segroute.plan("Is the heart enlarged?", True)
    assert p["kind"] == "ctr" and p["ask_enlarged"]
    assert segroute.plan("Is/Are the heart size normal?", True)["ask_enlarged"] is False
    assert segroute.plan("Is the heart enlarged?", False) is None  # not a chest radiograph
    p = segroute.plan("Are the kidneys visible in this image?", False)
    assert p["kind"] == "presence" and p["term"] == "kidney"
    assert segroute.plan("Is there a mass in the pancreas?", False) is None
    assert segroute.plan("Is there evidence of free air?", False) is None


@pytest.mark.shared
def test_ctr_route_on_a_chest_radiograph(shared_data):
    import medground

    img = medground.load(shared_data / "jsrt-cxr" / "images" / "JPCLN001.jpg")
    out = segroute.run(img, segroute.plan("Is the heart enlarged?", True))
    assert out["route"] == "segmenter:ctr" and out["answer"] in ("yes", "no")
    assert 0.3 < out["cardiothoracic_ratio"] < 0.7
    assert out["mask"].shape[:2] == img.shape[:2] and out["mask"].any()
    assert (out["answer"] == "yes") == (out["cardiothoracic_ratio"] > segroute.CTR_THRESHOLD)


def test_presence_of_an_organ_not_assessed_on_this_kind_of_image_is_left_to_other_routes(monkeypatch):
    import numpy as np

    import medground.segment.text as T
    from medground.io.image import MedImage
    from medground.segment.engine import SegmentationResult

    def fake(image, prompts, **kw):
        r = SegmentationResult(np.zeros(image.data.shape[:3], bool), {"type": "text", "text": prompts[0]}, 0.5,
                               prompts[0])
        r.info = {"terms": [], "present": False, "warning": "not assessed: ...", "not_assessed": "learned from CT only"}
        return [r], {}

    monkeypatch.setattr(T, "segment_text", fake)
    img = MedImage.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), modality="CR")
    p = segroute.plan("Are the kidneys visible in this image?", False)
    assert segroute.run(img, p) is None  # no "no" from a segmenter that never learned kidneys on radiographs
    monkeypatch.setattr(T, "segment_text", lambda image, prompts, **kw: (
        [SegmentationResult(np.ones(image.data.shape[:3], bool), {}, 0.9, prompts[0])], {}))
    assert segroute.run(img, p)["answer"] == "yes"
