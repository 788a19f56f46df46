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
