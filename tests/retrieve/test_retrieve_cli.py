"""`medground index` / `medground search` through medground.cli.main.main()."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medground.cli import main as cli


@pytest.fixture
def stubbed(monkeypatch, stub_segmenter):
    """The CLI with the stand-in embedder and the stub segmenter (no model weights, fast)."""
    from medground.retrieve import embedder, index

    monkeypatch.setattr(embedder, "default_embedder", lambda: embedder.HashEmbedder(dim=32))
    monkeypatch.setattr(index, "default_segmenter", stub_segmenter)  # used by index and search


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_index_then_search(stubbed, pictures, tmp_path, capsys):
    db = str(tmp_path / "cases.db")
    csv = tmp_path / "reports.csv"
    csv.write_text(f"image,report\n{pictures[3].name},Left basal consolidation.\nother.png,Not indexed.\n")
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--reports", str(csv),
                     "--regions", "right lung,left lung", "--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["images_added"], s["regions_added"], s["reports_added"], s["reports_unmatched"]) == (4, 8, 1, 1)
    # again: idempotent
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--regions", "right lung,left lung",
                     "--quiet"]) == 0
    assert "0 added" in capsys.readouterr().out
    assert cli.main(["search", "--db", db, "--image", str(pictures[2]), "-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["image"] == str(pictures[2].resolve())
    assert set(rows[0]) >= {"rank", "id", "image", "region", "score", "report"}
    assert cli.main(["search", "--db", db, "--image", str(pictures[2]), "--region", "left lung", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and all(r["region"] == "left lung" for r in rows)
    assert rows[0]["image"] == str(pictures[2].resolve())
    assert cli.main(["search", "--db", db, "--text", "left basal consolidation", "-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"] == str(pictures[3].resolve()) and rows[0]["report"] == "Left basal consolidation."
    assert cli.main(["search", "--db", db, "--image", str(pictures[3]), "--text", "consolidation", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "image+text" in out and pictures[3].name in out


def test_bad_input_exits_2_with_one_line(stubbed, pictures, tmp_path, capsys):
    db = str(tmp_path / "cases.db")
    assert cli.main(["search", "--db", db, "--text", "effusion"]) == 2
    assert "database not found" in _err_line(capsys)
    assert cli.main(["index", str(tmp_path / "missing"), "--db", db]) == 2
    assert "not found" in _err_line(capsys)
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--regions", "right lnug xyzzy"]) == 2
    assert "unknown term" in _err_line(capsys)
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--reports", str(tmp_path / "no.csv")]) == 2
    assert "reports file not found" in _err_line(capsys)
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--regions", "right lung", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["search", "--db", db, "--image", str(pictures[0]), "--region", "lefft lugn qq"]) == 2
    line = _err_line(capsys)
    assert "unknown term" in line and "did you mean" in line
    assert cli.main(["search", "--db", db, "--image", str(pictures[0]), "--region", "liver"]) == 2
    assert "not indexed" in _err_line(capsys)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture at all")
    assert cli.main(["search", "--db", db, "--image", str(bad)]) == 2
    _err_line(capsys)
    assert cli.main(["search", "--db", db, "--image", str(tmp_path / "nope.png")]) == 2
    assert "not found" in _err_line(capsys)
    assert cli.main(["search", "--db", db]) == 2
    assert "--image, --text" in _err_line(capsys)
    # an unreadable file inside an indexed folder: the others are indexed, exit 2, one line for it
    bad.rename(pictures[0].parent / "bad.png")
    assert cli.main(["index", str(pictures[0].parent), "--db", db, "--regions", "right lung", "--quiet"]) == 2
    cap = capsys.readouterr()
    assert "4 already indexed, 1 failed" in cap.out
    errs = cap.err.strip().splitlines()
    assert len(errs) == 1 and "bad.png" in errs[0]


@pytest.mark.shared
def test_real_chest_xray_region_crops(shared_data, tmp_path, monkeypatch, capsys):
    """Real text-prompted segmentation of both lungs on a JSRT radiograph; stand-in embedder."""
    from medground.retrieve import embedder, open_store

    monkeypatch.setattr(embedder, "default_embedder", lambda: embedder.HashEmbedder(dim=32))
    img = sorted((shared_data / "jsrt-cxr" / "images").glob("*.jpg"))[0]
    db = str(tmp_path / "cases.db")
    assert cli.main(["index", str(img), "--db", db, "--regions", "right lung,left lung", "--json",
                     "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["regions_added"] == 2, s
    with open_store(db) as st:
        recs = {r["term"]: json.loads(r["meta"]) for r in
                st.get([f"{st.distinct('image_id')[0]}:{t}" for t in ("lung_right", "lung_left")])}
    for t in ("lung_right", "lung_left"):
        assert 0.05 < recs[t]["mask_fraction"] < 0.4
        h, w = recs[t]["crop_shape"][:2]
        assert 80 < h < 400 and 150 < w < 500  # one lung: narrower than the 512-px image, most of its height
    assert cli.main(["search", "--db", db, "--image", str(img), "--region", "right lung", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["term"] == "lung_right" and np.isclose(rows[0]["score"], 1.0, atol=1e-4)


def test_index_and_search_on_pgvector_server(stubbed, pictures, pg_uri, capsys):
    import psycopg

    with psycopg.connect(pg_uri, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS medground_records")
        con.execute("DROP TABLE IF EXISTS medground_info")
    assert cli.main(["index", str(pictures[0].parent), "--db", pg_uri, "--regions", "heart", "--json",
                     "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["backend"], s["images_added"], s["regions_added"], s["total_records"]) == ("pgvector", 4, 4, 8)
    assert "@" not in s["db"]
    assert cli.main(["search", "--db", pg_uri, "--image", str(pictures[1]), "--region", "heart", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"] == str(pictures[1].resolve()) and rows[0]["region"] == "heart"
