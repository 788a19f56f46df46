"""Panels resolve through the ontology; modality/region recognition; user panels."""
import numpy as np
import pytest

from medground.io.image import MedGroundInputError, MedImage
from medground.ontology import Ontology
from medground.report.panels import choose_panel, detect_context, load_panel, panel_keys, panels_data


def test_every_panel_prompt_resolves_to_ontology_terms():
    onto = Ontology.default()
    assert {"ct_abdomen", "ct_chest", "mr_abdomen", "mr_heart", "mr_head", "xr_chest"} <= set(panel_keys())
    for key, p in panels_data().items():
        for it in p["items"]:
            assert onto.resolve(it["prompt"]).terms, (key, it["prompt"])
        pnl = load_panel(key)
        assert pnl.items and all(i.term_id in onto for i in pnl.items)


def test_reference_names_in_panels_exist():
    from medground.measure import reference_range

    for p in panels_data().values():
        for it in p["items"]:
            for ref in it.get("reference", {}).values():
                assert reference_range(ref)["source"]


def _ct(shape=(20, 20, 8), lung=False):
    d = np.full(shape, 40.0, np.float32)
    d[:2] = -1000.0
    if lung:
        d[4:16, 4:16, :] = -800.0
    return MedImage(d, np.diag([2.0, 2.0, 3.0, 1.0]), 3, "CT", True, source_format="nifti")


def test_context_from_geometry_heuristics_and_dicom_header(monkeypatch):
    import medground.report.panels as P

    monkeypatch.setattr(P, "_from_classifier", lambda image: None)  # the fallback heuristics alone
    assert detect_context(_ct())["panel"] == "ct_abdomen"
    assert detect_context(_ct(lung=True))["panel"] == "ct_chest"
    pic = MedImage(np.random.default_rng(0).random((32, 32, 1)).astype(np.float32), ndim=2,
                   has_geometry=False, source_format="png")
    ctx = detect_context(pic)
    assert ctx["panel"] == "xr_chest" and any("heuristic" in e for e in ctx["evidence"])
    mr = _ct()
    mr.modality, mr.source_format = "MR", "dicom-series"
    mr.meta = {"modality": "MR", "body_part_examined": "HEART"}
    ctx = detect_context(mr)
    assert ctx["panel"] == "mr_heart" and "DICOM BodyPartExamined HEART" in ctx["evidence"]
    mr.meta = {"modality": "MR", "body_part_examined": "BRAIN"}
    assert detect_context(mr)["panel"] == "mr_head"


def test_user_panel_expands_pairs_and_rejects_unknown_terms():
    pnl, _ = choose_panel(_ct(), "liver, kidneys")
    assert [i.term_id for i in pnl.items] == ["liver", "kidney_left", "kidney_right"]
    assert "length" in pnl.items[1].measures  # measures come from the default panels
    with pytest.raises(MedGroundInputError, match="did you mean"):
        choose_panel(_ct(), "liver,kidny stonez")
    pnl, _ = choose_panel(_ct(), "ct_chest")
    assert pnl.key == "ct_chest"


def test_classifier_answers_when_the_header_does_not(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("medground.classify")
    fake.classify = lambda image, labels=None: {"modality": "MRI", "modality_confidence": 0.9,
                                                "body_region": "brain", "body_region_confidence": 0.8}
    monkeypatch.setitem(sys.modules, "medground.classify", fake)
    img = MedImage(np.random.default_rng(0).random((16, 16, 6)).astype(np.float32), np.eye(4), 3, "OT")
    ctx = detect_context(img)
    assert ctx["panel"] == "mr_head" and any("classify" in e for e in ctx["evidence"])
    fake.classify = lambda image, labels=None: {"modality": "CT", "modality_confidence": 0.1,
                                                "body_region": "colon", "body_region_confidence": 0.1}
    pic = MedImage(np.random.default_rng(0).random((32, 32, 1)).astype(np.float32), ndim=2,
                   has_geometry=False, source_format="png")
    assert detect_context(pic)["panel"] == "xr_chest"  # an unsure classifier is not used


def _classifier(monkeypatch, modality, mconf, regions: dict):
    import sys
    import types

    best = max(regions, key=regions.get)
    fake = types.ModuleType("medground.classify")
    fake.classify = lambda image, labels=None: {"modality": modality, "modality_confidence": mconf,
                                                "body_region": best, "body_region_confidence": regions[best],
                                                "probabilities": {"body_region": regions}}
    monkeypatch.setitem(sys.modules, "medground.classify", fake)


def test_an_unsure_head_falls_to_the_next_region_with_a_panel(monkeypatch):
    vol = MedImage(np.random.default_rng(0).random((16, 16, 6)).astype(np.float32), np.eye(4), 3, "OT")
    _classifier(monkeypatch, "MRI", 0.9, {"head": 0.65, "heart": 0.29, "abdomen": 0.04})  # a cardiac cine MR
    ctx = detect_context(vol)
    assert ctx["panel"] == "mr_heart" and "medground.classify body region heart" in ctx["evidence"]
    _classifier(monkeypatch, "MRI", 0.9, {"head": 0.74, "abdomen": 0.14, "heart": 0.08})  # an abdominal T1 MR
    assert detect_context(vol)["panel"] == "mr_abdomen"
    _classifier(monkeypatch, "MRI", 0.9, {"head": 0.83, "abdomen": 0.1, "heart": 0.07})  # a brain atlas MR
    assert detect_context(vol)["panel"] == "mr_head"


def test_kinds_of_image_and_regions_without_a_panel_ask_for_one(monkeypatch):
    pic = MedImage(np.random.default_rng(0).random((32, 32, 1)).astype(np.float32), ndim=2,
                   has_geometry=False, source_format="jpg")
    _classifier(monkeypatch, "ultrasound", 0.88, {"breast": 0.81, "abdomen": 0.09})
    ctx = detect_context(pic)
    assert (ctx["modality"], ctx["region"], ctx["panel"]) == ("US", "breast", None)
    with pytest.raises(MedGroundInputError, match="no default report panel for US breast"):
        choose_panel(pic)
    assert [i.term_id for i in choose_panel(pic, "heart")[0].items] == ["heart"]  # --panel still works
    _classifier(monkeypatch, "mammography", 0.97, {"breast": 0.98})
    assert detect_context(pic)["panel"] is None  # not the chest radiograph panel
    _classifier(monkeypatch, "ultrasound", 0.7, {"breast": 0.81})  # unsure of the kind: as before
    assert detect_context(pic)["modality"] == "XR"
