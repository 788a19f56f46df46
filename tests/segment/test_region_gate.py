"""A thoracic, abdominal or pelvic structure asked of an image the classifier takes for the head is reported absent
(empty mask, the reason in findings.json); head structures and body images are left alone."""
from __future__ import annotations

import numpy as np

from medground.io.image import MedImage
from medground.ontology import Ontology
from medground.segment.text import TextConfig, _out_of_region


def _fake(head: float, warning: bool = False):
    def classify(image):
        out = {"probabilities": {"body_region": {"head": head, "abdomen": 1 - head}}}
        if warning:
            out["warning"] = "untrained"
        return out
    return classify


def test_body_terms_on_a_head_image_are_out_of_region(monkeypatch):
    import medground.classify as C

    onto = Ontology.default()
    img = MedImage.from_array(np.arange(256, dtype=np.float32).reshape(8, 8, 4), np.eye(4), modality="MR")
    terms = ["liver", "lung", "urinary_bladder", "putamen_left", "brain"]
    monkeypatch.setattr(C, "classify", _fake(0.95))
    out = _out_of_region(terms, img, TextConfig(), onto)
    assert set(out) == {"liver", "lung", "urinary_bladder"}  # head structures are never gated
    assert out["liver"] == {"image_region": "head", "probability": 0.95, "term_region": "abdomen"}
    assert out["lung"]["term_region"] == "thorax"
    monkeypatch.setattr(C, "classify", _fake(0.85))  # not sure enough that it is a head
    assert _out_of_region(terms, img, TextConfig(), onto) == {}
    monkeypatch.setattr(C, "classify", _fake(0.99, warning=True))  # no trained classifier: no gate
    assert _out_of_region(terms, img, TextConfig(), onto) == {}
    monkeypatch.setattr(C, "classify", _fake(0.99))
    assert _out_of_region(terms, img, TextConfig(head_region_gate=None), onto) == {}
    assert _out_of_region(["putamen_left"], img, TextConfig(), onto) == {}


def _ellipse_volume(width_mm: float, spacing: float = 2.0) -> MedImage:
    """An MR-like volume: a bright ellipse ``width_mm`` wide (patient left-right) on a dark background, RAS affine."""
    X = int(width_mm / spacing) + 40
    i, j = np.meshgrid(np.arange(X), np.arange(X), indexing="ij")
    r = width_mm / spacing / 2
    body = ((i - X / 2) / r) ** 2 + ((j - X / 2) / (0.7 * r)) ** 2 <= 1
    data = np.repeat((body * 400.0 + 5.0)[:, :, None], 8, axis=2).astype(np.float32)
    return MedImage.from_array(data, np.diag([spacing, spacing, 4.0, 1.0]), modality="MR")


def test_a_body_too_wide_for_a_head_is_not_gated_whatever_the_classifier_says(monkeypatch):
    """TotalSegmentator's abdominal MR (339 mm wide) is "head" 0.74 to the classifier; at 0.9 or more every abdominal
    organ would have been reported absent. The body's measured width overrules it; a head-sized one does not."""
    import medground.classify as C
    from medground.segment.text import body_width_mm

    onto = Ontology.default()
    monkeypatch.setattr(C, "classify", _fake(0.97))
    wide, narrow = _ellipse_volume(340.0), _ellipse_volume(160.0)
    assert abs(body_width_mm(wide) - 340) < 6 and abs(body_width_mm(narrow) - 160) < 6
    assert _out_of_region(["liver"], wide, TextConfig(), onto) == {}
    assert set(_out_of_region(["liver"], narrow, TextConfig(), onto)) == {"liver"}
    assert set(_out_of_region(["liver"], wide, TextConfig(head_max_width_mm=None), onto)) == {"liver"}
    # no geometry to measure (an identity affine): the classifier alone, as before
    flat = MedImage.from_array(wide.data, np.eye(4), modality="MR")
    assert body_width_mm(flat) is None and set(_out_of_region(["liver"], flat, TextConfig(), onto)) == {"liver"}
