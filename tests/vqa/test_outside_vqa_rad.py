"""Pictures of a modality VQA-RAD does not have (ultrasound, endoscopy, photographs): modality and organ questions are
answered by the image classifier, other answers of the VQA-RAD-trained routes are flagged and capped."""
from __future__ import annotations

import numpy as np
import pytest

import medground.classify as C
from medground.io.image import MedImage
from medground.vqa import OUTSIDE_CAP, _outside_vqa_rad

PIC = MedImage.from_array(np.arange(64, dtype=np.float32).reshape(8, 8))


def _fake(modality: str, mconf: float, region: str, rconf: float):
    def classify(image):
        return {"modality": modality, "modality_confidence": mconf, "body_region": region,
                "body_region_confidence": rconf,
                "probabilities": {"modality": {modality: mconf, "CT": 1 - mconf},
                                  "body_region": {region: rconf, "abdomen": 1 - rconf}}}
    return classify


def _out(qtype: str, closed: bool, answer: str = "brain", conf: float = 0.9, route: str = "knn") -> dict:
    return {"question_type": qtype, "closed": closed, "answer": answer, "confidence": conf, "route": route}


@pytest.fixture
def ultrasound(monkeypatch):
    monkeypatch.setattr(C, "classify", _fake("ultrasound", 0.88, "breast", 0.81))


def test_organ_questions_take_the_classifier_s_body_region(ultrasound):
    r = _outside_vqa_rad(PIC, "What organ is shown?", _out("presence", False))  # the type model misread it
    assert (r["answer"], r["route"], r["confidence"]) == ("breast", "classifier:body_region", 0.81)
    r = _outside_vqa_rad(PIC, "Is this the breast?", _out("presence", True, "no"))
    assert (r["answer"], r["route"]) == ("yes", "classifier:body_region")
    r = _outside_vqa_rad(PIC, "Is this an image of the abdomen?", _out("organ", True, "yes"))
    assert (r["answer"], r["route"]) == ("no", "classifier:body_region")


def test_modality_questions_take_the_classifier_s_modality(ultrasound):
    r = _outside_vqa_rad(PIC, "What imaging modality is this?", _out("modality", False, "ct"))
    assert (r["answer"], r["route"]) == ("ultrasound", "classifier:modality")


def test_other_answers_are_flagged_and_capped(ultrasound):
    r = _outside_vqa_rad(PIC, "Is there a mass?", _out("presence", True, "yes", 0.59, "question-image-model"))
    assert r["answer"] == "yes" and r["confidence"] == OUTSIDE_CAP and "learned from CT, MR and radiographs" in r["warning"]
    seg = _out("presence", True, "no", 0.8, "segmenter:presence")  # the segmenter's own gate speaks for itself
    assert _outside_vqa_rad(PIC, "Is there a liver?", seg) == seg


def test_vqa_rad_modalities_and_unsure_calls_are_left_alone(monkeypatch):
    o = _out("presence", True, "yes", 0.9, "question-image-model")
    monkeypatch.setattr(C, "classify", _fake("CT", 0.99, "abdomen", 0.95))
    assert _outside_vqa_rad(PIC, "Is there a mass?", o) == o
    monkeypatch.setattr(C, "classify", _fake("ultrasound", 0.7, "breast", 0.9))  # not sure it is ultrasound
    assert _outside_vqa_rad(PIC, "Is there a mass?", o) == o
    monkeypatch.setattr(C, "classify", _fake("ultrasound", 0.9, "breast", 0.6))  # nor of the region
    r = _outside_vqa_rad(PIC, "What organ is shown?", _out("organ", False))
    assert r["answer"] == "brain" and r["confidence"] == OUTSIDE_CAP and "warning" in r
