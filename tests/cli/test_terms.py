"""`medground terms` through medground.cli.main.main()."""
from __future__ import annotations

import json

import pytest

from medground.cli import main as cli


def test_terms_lists_everything(capsys):
    assert cli.main(["terms", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = {t["id"] for t in out["terms"]}
    assert {"liver", "kidney_left", "pleural_effusion"} <= ids
    assert out["count"] == len(out["terms"]) > 300


def test_terms_search_misspelling_suggests_kidney(capsys):
    assert cli.main(["terms", "--search", "kidny"]) == 0
    out = capsys.readouterr().out
    assert "kidney" in out
    assert cli.main(["terms", "--search", "kidny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["terms"][0]["id"] == "kidney"
    assert data["resolved"]["terms"] == ["kidney_left", "kidney_right"]


def test_terms_filters(capsys):
    assert cli.main(["terms", "--modality", "XR", "--kind", "finding", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["terms"]
    assert all(t["kind"] == "finding" and "XR" in t["modalities"] for t in data["terms"])
    assert "pneumothorax" in {t["id"] for t in data["terms"]}


def test_terms_table(capsys):
    assert cli.main(["terms", "--search", "left ventricle", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "left_ventricle" in out and "resolves to" in out


@pytest.mark.parametrize("args", [["terms", "--kind", "organ"], ["terms", "--modality", "nope"], ["terms", "--search", " "]])
def test_terms_bad_input_exits_2(capsys, args):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("medground: error:") and err.count("\n") == 1


def test_terms_say_what_segments_them(capsys):
    from medground.cli.main import main
    from medground.segment.vocab import method_of

    assert method_of("kidney_left") == "head" and method_of("putamen_left") == "atlas"
    assert method_of("vertebra_l3") == "zero-shot"
    assert method_of("portal_vein") == "head (as portal_vein_and_splenic_vein)"  # drawn as the trained whole
    assert method_of("left_atrium") == "zero-shot"  # a small share of the heart: not answered by it
    assert main(["terms", "--search", "putamen", "--json", "-n", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {t["id"]: t["segmented_by"] for t in doc["terms"]}
    assert by["putamen"] == "atlas" and by["putamen_left"] == "atlas"  # the union term as its parts
