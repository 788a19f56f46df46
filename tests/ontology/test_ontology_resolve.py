"""Prompt resolution, search and suggestions of medground.ontology."""
from __future__ import annotations

import pytest

from medground.io.image import MedGroundInputError
from medground.ontology import Ontology, resolve, slug


@pytest.fixture(scope="module")
def ont() -> Ontology:
    return Ontology.default()


@pytest.mark.parametrize("prompt, ids, union", [
    ("liver", ["liver"], False),
    ("Liver", ["liver"], False),
    ("Left Kidney", ["kidney_left"], False),
    ("left kidney", ["kidney_left"], False),
    ("the left kidney", ["kidney_left"], False),
    ("segment the left kidney", ["kidney_left"], False),
    ("lt kidney", ["kidney_left"], False),
    ("L kidney", ["kidney_left"], False),
    ("kidney, left", ["kidney_left"], False),
    ("left-sided kidney", ["kidney_left"], False),
    ("Right kidney.", ["kidney_right"], False),
    ("rt. kidney", ["kidney_right"], False),
    ("kidneys", ["kidney_left", "kidney_right"], True),
    ("both kidneys", ["kidney_left", "kidney_right"], True),
    ("bilateral kidneys", ["kidney_left", "kidney_right"], True),
    ("kidney", ["kidney_left", "kidney_right"], True),
    ("left and right kidney", ["kidney_left", "kidney_right"], True),
    ("both lungs", ["lung_left", "lung_right"], True),
    ("lungs", ["lung_left", "lung_right"], True),
    ("right lung", ["lung_right"], False),
    ("LV", ["left_ventricle"], False),
    ("lv", ["left_ventricle"], False),
    ("left ventricle", ["left_ventricle"], False),
    ("RV", ["right_ventricle"], False),
    ("right ventricle", ["right_ventricle"], False),
    ("myocardium", ["myocardium"], False),
    ("enhancing tumor", ["enhancing_tumor"], False),
    ("enhancing tumour", ["enhancing_tumor"], False),
    ("ET", ["enhancing_tumor"], False),
    ("IVC", ["inferior_vena_cava"], False),
    ("inferior vena cava", ["inferior_vena_cava"], False),
    ("CBD", ["common_bile_duct"], False),
    ("oesophagus", ["esophagus"], False),
    ("esophagus", ["esophagus"], False),
    ("haemorrhage", ["hemorrhage"], False),
    ("hemorrhage", ["hemorrhage"], False),
    ("tumour", ["tumor"], False),
    ("spleen", ["spleen"], False),
    ("gall bladder", ["gallbladder"], False),
    ("portal vein and splenic vein", ["portal_vein_and_splenic_vein"], False),
    ("adrenal glands", ["adrenal_gland_left", "adrenal_gland_right"], True),
    ("right adrenal gland", ["adrenal_gland_right"], False),
    ("cyst of the left kidney", ["kidney_cyst_left"], False),
    ("L1", ["vertebra_l1"], False),
    ("vertebrae_L1", ["vertebra_l1"], False),
    ("left 3rd rib", ["rib_left_3"], False),
    ("rib 3 left", ["rib_left_3"], False),
    ("left ribs", ["ribs_left"], False),
    ("clavicles", ["clavicle_left", "clavicle_right"], True),
    ("left clavicle", ["clavicle_left"], False),
    ("heart", ["heart"], False),
    ("cardiac silhouette", ["heart"], False),
    ("trachea", ["trachea"], False),
    ("mediastinum", ["mediastinum"], False),
    ("diaphragm", ["hemidiaphragm_left", "hemidiaphragm_right"], True),
    ("right hemidiaphragm", ["hemidiaphragm_right"], False),
    ("costophrenic angles", ["costophrenic_angle_left", "costophrenic_angle_right"], True),
    ("left costophrenic angle", ["costophrenic_angle_left"], False),
    ("pleural effusion", ["pleural_effusion"], False),
    ("consolidation", ["consolidation"], False),
    ("lung opacity", ["opacity"], False),
    ("pneumonia", ["pneumonia"], False),
    ("COVID-19", ["covid19_infection"], False),
    ("covid 19 infection", ["covid19_infection"], False),
    ("pneumothorax", ["pneumothorax"], False),
    ("fracture", ["fracture"], False),
    ("atelectasis", ["atelectasis"], False),
    ("cardiomegaly", ["cardiomegaly"], False),
    ("polyp", ["polyp"], False),
    ("polyps", ["polyp"], False),
    ("nodule", ["nodule"], False),
    ("mass", ["mass"], False),
    ("cyst", ["cyst"], False),
    ("lesion", ["lesion"], False),
    ("skin lesion", ["skin_lesion"], False),
    ("retinal vessels", ["retinal_vessels"], False),
    ("brain tumour", ["brain_tumor"], False),
    ("breast lesion", ["breast_lesion"], False),
    ("putamen", ["putamen_left", "putamen_right"], True),
    ("left putamen", ["putamen_left"], False),
    ("right hippocampus", ["hippocampus_right"], False),
    ("left crus I", ["cerebellar_lobule_crus_i_left"], False),
    ("vermis VI", ["cerebellar_vermis_vi"], False),
    ("left area 44", ["area_44_left"], False),
])
def test_resolve_real_prompts(ont, prompt, ids, union):
    res = ont.resolve(prompt)
    assert res.ids == ids, (prompt, res)
    assert res.union is union


def test_resolution_fields(ont):
    res = ont.resolve("Both Kidneys")
    assert res.term.id == "kidney"
    assert res.laterality == "both"
    assert res.method in ("name", "synonym")
    assert res.score == 1.0
    assert res.slug == "both-kidneys"
    assert res.to_dict()["terms"] == ["kidney_left", "kidney_right"]


def test_module_level_resolve():
    assert resolve("liver").ids == ["liver"]


@pytest.mark.parametrize("prompt, ids", [
    ("kidny", ["kidney_left", "kidney_right"]),
    ("left kidny", ["kidney_left"]),
    ("lefft kidney", ["kidney_left"]),
    ("livr", ["liver"]),
    ("spleeen", ["spleen"]),
    ("pancraes", ["pancreas"]),
    ("oesophagous", ["esophagus"]),
])
def test_misspellings_resolve_fuzzily(ont, prompt, ids):
    res = ont.resolve(prompt)
    assert res.ids == ids
    assert res.method == "fuzzy"
    assert 0 < res.score < 1


def test_kidny_suggests_kidney(ont):
    assert ont.suggest("kidny", k=5)[0] == "kidney"
    top = ont.search("kidny", k=5)
    assert top[0][0].id == "kidney"
    assert all(0 < s <= 1 for _, s in top)


def test_unknown_prompt_error_has_suggestions(ont):
    with pytest.raises(MedGroundInputError) as ei:
        ont.resolve("xyzzy")
    msg = str(ei.value)
    assert msg.startswith("unknown term 'xyzzy'; did you mean: ")
    assert msg.endswith("?")
    assert len(msg.split("did you mean: ")[1].split(", ")) == 3


def test_unknown_close_prompt_lists_candidates(ont):
    with pytest.raises(MedGroundInputError, match="left ventricle"):
        ont.resolve("ventricles")


def test_empty_prompt_errors(ont):
    for bad in ("", "   "):
        with pytest.raises(MedGroundInputError):
            ont.resolve(bad)


def test_side_on_unpaired_structure_errors(ont):
    with pytest.raises(MedGroundInputError, match="no left part"):
        ont.resolve("left liver")


def test_resolve_by_id(ont):
    assert ont.resolve("kidney_left").ids == ["kidney_left"]
    assert ont.resolve("lung_upper_lobe_left").ids == ["lung_upper_lobe_left"]


def test_resolve_many(ont):
    res = ont.resolve_many("liver, spleen and both kidneys")
    assert [r.ids for r in res] == [["liver"], ["spleen"], ["kidney_left", "kidney_right"]]
    assert [r.ids for r in ont.resolve_many("portal vein and splenic vein")] == [["portal_vein_and_splenic_vein"]]


def test_search_filters(ont):
    res = ont.search("tumor", k=50, kind="finding")
    assert res and all(t.kind == "finding" for t, _ in res)
    res = ont.search("lung", k=50, modality="XR")
    assert res and all("XR" in t.modalities for t, _ in res)
    with pytest.raises(MedGroundInputError):
        ont.search("")
    with pytest.raises(MedGroundInputError):
        ont.search("lung", modality="nope")


def test_search_by_definition_words(ont):
    ids = [t.id for t, _ in ont.search("reward motivation", k=10)]
    assert "nucleus_accumbens" in ids


@pytest.mark.parametrize("prompt, expected", [
    ("Left Kidney", "left-kidney"),
    ("liver", "liver"),
    ("  Liver / tumour: segment?  ", "liver-tumour-segment"),
    ("enhancing tumor (ET)", "enhancing-tumor-et"),
    ("../../etc/passwd", "etc-passwd"),
    ("Œsophagus", "oesophagus"),
    ("???", "prompt"),
])
def test_slug(prompt, expected):
    assert slug(prompt) == expected
