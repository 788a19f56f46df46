"""Integrity and coverage of the ontology data files."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from medground.ontology import MODALITIES, Ontology
from medground.ontology.ontology import DATA_DIR, _canon_sides
from medground.ontology import text as T
from medground.ontology.terms import build_terms, load_raw_terms


@pytest.fixture(scope="module")
def ont() -> Ontology:
    return Ontology.default()


@pytest.fixture
def shared(shared_data):
    """shared("sub/path") -> that path under ../shared/data, or skip when it is missing."""
    def get(rel: str) -> Path:
        p = shared_data / rel
        if not p.exists():
            pytest.skip(f"../shared/data/{rel} not available")
        return p
    return get


def test_default_is_cached(ont):
    assert Ontology.default() is ont
    assert len(ont) > 300


def test_ids_unique_and_snake_case():
    raws = load_raw_terms(DATA_DIR)
    ids = [r["id"] for r in raws]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", i) for i in ids)


def test_duplicate_id_is_rejected():
    raws = load_raw_terms(DATA_DIR)
    with pytest.raises(ValueError, match="duplicate term id"):
        build_terms(raws + [dict(raws[0])])


def test_hierarchy_is_acyclic_and_rooted(ont):
    roots = {t.id for t in ont.roots()}
    assert roots == {"body", "finding"}
    for t in ont:
        chain = [a.id for a in ont.ancestors(t.id)]
        assert len(chain) == len(set(chain)) and t.id not in chain
        if t.id not in roots:
            assert chain[-1] in roots
            assert chain[-1] == ("finding" if t.kind == "finding" else "body"), t.id


def test_brief_example_hierarchy(ont):
    assert [a.id for a in ont.ancestors("kidney_left")] == ["kidney", "urinary_system", "abdomen", "body"]
    assert {c.id for c in ont.children("kidney")} == {"kidney_left", "kidney_right"}
    assert ont.get("kidney").pair == ("kidney_left", "kidney_right")
    assert ont.get("kidney_left").laterality == "left"
    assert ont.get("kidney_left").region == "abdomen"
    assert ont.get("kidney_left").system == "urinary_system"
    assert ont.get("urinary_bladder").region == "pelvis"
    assert ont.is_a("enhancing_tumor", "tumor")
    assert "kidney_left" in {t.id for t in ont.descendants("urinary_system")}


def test_every_term_is_complete(ont):
    for t in ont:
        assert t.name and t.name == t.name.strip(), t.id
        assert t.kind in ("anatomy", "finding")
        assert t.definition and t.definition.endswith("."), t.id
        assert t.modalities and set(t.modalities) <= set(MODALITIES), t.id
        assert t.region is not None, t.id
        assert t.laterality in ("left", "right", "none")


def test_pairs_are_consistent(ont):
    for t in ont:
        if t.pair:
            left, right = (ont.get(i) for i in t.pair)
            assert (left.laterality, right.laterality) == ("left", "right"), t.id
        for p in t.union_of:
            assert p in ont


def test_codes_look_valid(ont):
    n = 0
    for t in ont:
        for system, code in t.codes.items():
            assert system in ("SNOMED", "FMA", "RadLex"), (t.id, system)
            pattern = {"SNOMED": r"\d{6,18}", "FMA": r"\d{3,6}", "RadLex": r"RID\d+"}[system]
            assert re.fullmatch(pattern, code), (t.id, code)
            n += 1
    assert n > 60
    assert ont.get("liver").codes["SNOMED"] == "10200004"
    assert ont.get("kidney_left").codes["SNOMED"] == "18639004"


def test_index_keys_map_to_one_term(ont):
    """Every name, synonym, dataset name and abbreviation identifies a single term."""
    shared_keys = {}  # key -> set of ids, for keys intentionally shared (none so far)
    clashes = {}
    for key, hits in ont._keys.items():
        best = min(hits.values())
        ids = {i for i, p in hits.items() if p == best}
        if len(ids) > 1 and len(ont._collapse(sorted(ids))) > 1:
            clashes[key] = ids
    assert clashes == shared_keys


def test_every_name_and_synonym_resolves_to_its_term(ont):
    bad = []
    for t in ont:
        for s in (t.name,) + t.synonyms + t.abbreviations:
            try:
                r = ont.resolve(s)
            except Exception as exc:  # noqa: BLE001
                bad.append((t.id, s, str(exc)))
                continue
            if r.term.id != t.id:
                bad.append((t.id, s, r.term.id))
    assert not bad, bad[:20]


def test_british_and_american_spellings_are_listed(ont):
    for tid, words in [("esophagus", {"esophagus", "oesophagus"}), ("tumor", {"tumor", "tumour"}),
                       ("hemorrhage", {"hemorrhage", "haemorrhage"}), ("peritumoral_edema", {"peritumoral edema", "peritumoral oedema"})]:
        t = ont.get(tid)
        names = {t.name.lower(), *[s.lower() for s in t.synonyms]}
        assert words <= names, tid


def test_describe(ont):
    d = ont.describe("kidney_left")
    assert d.startswith("Left kidney.")
    assert ont.get("kidney_left").definition in d
    assert "IVC" in ont.describe("inferior_vena_cava")


def test_terms_for_modality(ont):
    ct = {t.id for t in ont.terms_for_modality("CT")}
    assert {"liver", "kidney_left", "aorta"} <= ct
    xr = {t.id for t in ont.terms_for_modality("x-ray")}
    assert {"lung_left", "heart", "clavicle_right", "mediastinum", "trachea", "costophrenic_angle_left",
            "hemidiaphragm_right", "pneumothorax", "cardiomegaly"} <= xr
    assert {t.id for t in ont.terms_for_modality("MRI", kind="finding")} >= {"enhancing_tumor"}


def test_dataset_labels(ont):
    lobes = ont.dataset_labels("lung", "totalsegmentator")
    assert sorted(lobes.values()) == sorted(["lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
                                             "lung_middle_lobe_right", "lung_lower_lobe_right"])
    assert sorted(ont.dataset_labels("whole_tumor", "brats").values()) == [1, 2, 4]
    assert ont.dataset_labels("kidney", "btcv") == {"kidney_left": 3, "kidney_right": 2}


def test_required_findings_present(ont):
    for p in ["tumour", "cyst", "nodule", "mass", "lesion", "pleural effusion", "consolidation", "opacity",
              "pneumonia", "COVID-19 infection", "pneumothorax", "fracture", "haemorrhage", "atelectasis",
              "cardiomegaly", "polyp"]:
        assert ont.resolve(p).term.kind == "finding", p


def test_normalisation():
    assert T.normalize("Segment the Kidneys, please!") == "kidney"
    assert T.normalize("Haemorrhages") == "hemorrhage"
    assert T.normalize("oesophageal tumours") == "esophageal tumor"
    assert T.normalize("vertebrae") == "vertebra"
    assert T.normalize("nuclei") == "nucleus"
    assert T.normalize("pancreas") == "pancreas"
    assert T.normalize("Area Te 1.0") == "area te 1.0"
    assert _canon_sides(["lt", "kidney"]) == ["left", "kidney"]
    assert T.levenshtein("kidny", "kidney") == 1
    assert T.levenshtein("kidnye", "kidney") == 1  # transposition
    assert T.levenshtein("abc", "xyz", max_dist=1) == 2


# ------------------------------------------------------------------ real label names (../shared/data)
def test_totalsegmentator_classes_resolve(ont, shared):
    labels = json.loads(shared("totalsegmentator/labels.json").read_text())
    assert len(labels["total"]) == 117
    for task, key in (("total", "totalsegmentator"), ("total_mr", "totalsegmentator_mr")):
        mapped = {v: t.id for t in ont for k, v in t.datasets.items() if k == key}
        for idx, name in labels[task].items():
            assert name in mapped, (task, name)
            assert ont.resolve(name).term.id == mapped[name], (task, name)
            assert ont.resolve(name.replace("_", " ")).term.id == mapped[name], (task, name)


def test_totalsegmentator_classes_embedded(ont):
    """The TotalSegmentator names are in the ontology even without ../shared/data."""
    names = [v for t in ont for k, v in t.datasets.items() if k == "totalsegmentator"]
    assert len(names) == len(set(names)) == 117
    assert len([v for t in ont for k, v in t.datasets.items() if k == "totalsegmentator_mr"]) == 50


@pytest.mark.parametrize("folder, key", [("btcv-ct", "btcv-ct"), ("chaos-mr", "chaos-mr"), ("acdc-cmr", "acdc-cmr")])
def test_labelled_set_names_resolve(ont, shared, folder, key):
    labels = json.loads(shared(f"{folder}/labels.json").read_text())
    for idx, name in labels.items():
        res = ont.resolve(name)
        assert len(res.terms) == 1 or res.term.pair, name
        assert res.term.datasets.get(key) == int(idx), (name, res.term.id)


def test_jsrt_and_covid_names_resolve(ont, shared):
    masks = shared("jsrt-cxr/masks")
    expect = {"heart": "heart", "left_lung": "lung_left", "right_lung": "lung_right",
              "left_clavicle": "clavicle_left", "right_clavicle": "clavicle_right"}
    assert {p.name for p in masks.iterdir()} == set(expect)
    for name, tid in expect.items():
        assert ont.resolve(name).ids == [tid]
    assert ont.resolve("lung masks").ids == ["lung_left", "lung_right"]


def test_brain_atlas_label_names_resolve(ont, shared):
    root = shared("brain-atlases")
    cit = json.loads((root / "CIT168/CIT168.json").read_text())["labels"][1:]
    for i, name in enumerate(cit, start=1):
        (t,) = ont.resolve(name).terms
        assert t.datasets.get("brain-cit168") == i, name
    cer = json.loads((root / "Cerebellum/atl-Anatom.json").read_text())["labels"][1:]
    for i, name in enumerate(cer, start=1):
        (t,) = ont.resolve(name).terms
        assert t.datasets.get("brain-cerebellum") == i, name
    jul = json.loads((root / "Juelich31/Julich.json").read_text())["labels"][1:]
    for i, name in enumerate(jul, start=1):
        res = ont.resolve(name)
        left, right = ont.resolve("left " + name), ont.resolve("right " + name)
        assert left.terms[0].datasets.get("brain-julich") == i, name
        assert right.terms[0].datasets.get("brain-julich") == 1000 + i, name
        if not name.startswith("Rt "):  # "Rt" (reticular nucleus) reads as "right"
            assert res.union, name
