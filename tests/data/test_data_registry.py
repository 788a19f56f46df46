"""medground.data.registry: entries, label maps and their agreement with the ontology."""
from __future__ import annotations

import pytest

from medground.data.registry import all_datasets, get_dataset, list_datasets, validate_against_ontology
from medground.io.image import MedGroundInputError
from medground.ontology import Ontology

PUBLIC = ["totalsegmentator", "totalsegmentator_mr", "amos", "btcv", "flare22", "kits23", "lits", "brats", "chaos",
          "jsrt", "montgomery", "shenzhen", "acdc"] + [f"msd_task{i:02d}" for i in range(1, 11)]
CONVERTED = ["btcv-ct", "chaos-mr", "acdc-cmr", "jsrt-cxr", "covid-cxr", "totalsegmentator-ct", "totalsegmentator-mr",
             "ct-lesions", "mr-tumour", "endoscopy-kvasir", "dermoscopy-ph2", "fundus-drive", "brain-cit168",
             "brain-cerebellum", "brain-julich"]


def test_expected_datasets_present():
    names = set(list_datasets())
    assert set(PUBLIC) <= names
    assert set(CONVERTED) <= names


@pytest.mark.parametrize("name", PUBLIC + CONVERTED)
def test_entry_is_complete(name):
    d = get_dataset(name)
    assert d.title and d.description and d.citation and d.licence
    assert d.modality and d.dims in (2, 3)
    assert d.labels and 0 not in d.labels
    assert validate_against_ontology(d) == []
    if name in CONVERTED:
        assert d.converter and d.orientation


def test_label_maps_agree_with_ontology_dataset_fields():
    """Where a term lists a dataset label (term.datasets[name]), the registry maps it back to the term."""
    ont = Ontology.default()
    checked = 0
    for d in all_datasets():
        for t in ont.terms_for_dataset(d.name):
            v = t.datasets[d.name]
            if isinstance(v, int):
                assert d.labels.get(v) == t.id, (d.name, v, t.id)
                checked += 1
            elif d.class_names:
                assert v in d.class_names.values(), (d.name, v)
                k = [k for k, n in d.class_names.items() if n == v][0]
                assert d.labels[k] == t.id, (d.name, v)
                checked += 1
    assert checked > 300


def test_known_label_maps():
    assert get_dataset("btcv").labels[6] == "liver"
    assert get_dataset("amos").labels[15] == "prostate_or_uterus"
    assert get_dataset("flare22").labels[13] == "kidney_left"
    assert get_dataset("kits23").labels == {1: "kidney", 2: "kidney_tumor", 3: "kidney_cyst"}
    assert get_dataset("brats").labels == {1: "necrotic_tumor_core", 2: "peritumoral_edema", 4: "enhancing_tumor"}
    assert get_dataset("acdc").labels == {1: "right_ventricle", 2: "myocardium", 3: "left_ventricle"}
    assert len(get_dataset("totalsegmentator").labels) == 117
    assert get_dataset("totalsegmentator").class_names[2] == "kidney_right"
    assert get_dataset("msd_task04").labels == {1: "hippocampus_anterior", 2: "hippocampus_posterior"}
    assert get_dataset("btcv-ct").label_of("spleen") == 1


def test_lookup_is_forgiving_and_errors_help():
    assert get_dataset("BTCV").name == "btcv"
    assert get_dataset("msd-task01").name == "msd_task01"
    with pytest.raises(MedGroundInputError, match="did you mean"):
        get_dataset("btvc")


def test_to_dict_roundtrip_keys():
    d = get_dataset("jsrt-cxr").to_dict()
    assert d["labels"]["1"] == "lung_right" and d["dims"] == 2
