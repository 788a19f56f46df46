"""Vector-store back ends: CRUD, upsert, filters, persistence, dimension checks."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from medground.io.image import MedGroundInputError
from medground.retrieve.store import open_store

_n = itertools.count()


@pytest.fixture(params=["lance", "sqlite", "pgvector"])
def store_uri(request, tmp_path):
    if request.param == "lance":
        pytest.importorskip("lancedb")
        return str(tmp_path / "cases.db")
    if request.param == "sqlite":
        return str(tmp_path / "cases.sqlite")
    uri = request.getfixturevalue("pg_uri")
    # a fresh table per test: drop what the previous test left
    import psycopg

    with psycopg.connect(uri, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS medground_records")
        con.execute("DROP TABLE IF EXISTS medground_info")
    return uri


def _records(n=12, d=8, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    recs = [{"id": f"r{i}", "kind": "image" if i % 3 == 0 else "region", "image_id": f"img{i // 3}",
             "path": f"/x/{i // 3}.png", "region": "" if i % 3 == 0 else ("right lung" if i % 3 == 1 else "heart"),
             "term": "" if i % 3 == 0 else ("lung_right" if i % 3 == 1 else "heart"),
             "modality": "XR" if i < 6 else "CT", "patient": f"p{i // 6}", "report": "", "meta": {"i": i}}
            for i in range(n)]
    return recs, vecs


def _exact(vecs, q, idx):
    v = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    s = v[idx] @ (q / np.linalg.norm(q))
    return [idx[i] for i in np.argsort(-s)]


def test_crud_search_filters_and_persistence(store_uri):
    recs, vecs = _records()
    s = open_store(store_uri)
    assert s.count() == 0 and s.search(vecs[0], k=3) == []
    assert s.add(recs, vecs) == 12
    assert s.add(recs[:4], vecs[:4]) == 0  # ids already there: skipped
    assert s.count() == 12 and s.dim == 8
    assert s.count({"kind": "region"}) == 8
    assert s.count({"term": "lung_right", "modality": "CT"}) == 2
    # exact top-k equals brute force; the query's own record first with cosine 1
    res = s.search(vecs[4], k=4)
    assert [r["id"] for r in res] == [f"r{i}" for i in _exact(vecs, vecs[4], list(range(12)))[:4]]
    assert res[0]["id"] == "r4" and res[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(a["score"] >= b["score"] for a, b in zip(res, res[1:]))
    # filters: region, list, not-equal
    res = s.search(vecs[0], k=10, filters={"term": "lung_right"})
    assert {r["id"] for r in res} == {"r1", "r4", "r7", "r10"}
    res = s.search(vecs[0], k=10, filters={"kind": "region", "patient": ("!=", "p0")})
    assert {r["id"] for r in res} == {"r7", "r8", "r10", "r11"}
    res = s.search(vecs[0], k=10, filters={"image_id": ["img0", "img3"]})
    assert {r["id"] for r in res} == {"r0", "r1", "r2", "r9", "r10", "r11"}
    with pytest.raises(MedGroundInputError):
        s.search(vecs[0], k=3, filters={"nonsense": 1})
    # get / existing / distinct / upsert / delete
    got = s.get(["r5", "r2"], vectors=True)
    assert [g["id"] for g in got] == ["r5", "r2"]
    assert np.allclose(got[0]["vector"], vecs[5] / np.linalg.norm(vecs[5]), atol=1e-5)
    assert '"i": 5' in got[0]["meta"]
    assert s.existing(["r1", "zz"]) == {"r1"}
    assert s.distinct("term", {"kind": "region"}) == ["heart", "lung_right"]
    s.upsert([{**recs[1], "report": "new text"}], vecs[0])
    assert s.count() == 12 and s.get(["r1"])[0]["report"] == "new text"
    assert s.search(vecs[0], k=2, filters={"kind": "region"})[0]["id"] == "r1"  # vector replaced too
    assert s.delete(["r1", "r2", "missing"]) == 2
    assert s.count() == 10 and not s.existing(["r1"])
    assert s.delete(filters={"modality": "CT"}) == 6
    s.set_info({**s.get_info(), "embedder": "x"})
    s.close()
    # persisted
    s2 = open_store(store_uri, create=False)
    assert s2.count() == 4 and s2.dim == 8 and s2.get_info()["embedder"] == "x"
    assert s2.search(vecs[3], k=1)[0]["id"] == "r3"
    with pytest.raises(MedGroundInputError, match="dimensions"):
        s2.add([{"id": "bad"}], np.ones((1, 5)))
    with pytest.raises(MedGroundInputError, match="dimensions"):
        s2.search(np.ones(5), k=1)
    s2.close()


def test_missing_database_is_input_error(tmp_path):
    with pytest.raises(MedGroundInputError, match="not found"):
        open_store(tmp_path / "nope.db", create=False)
    with pytest.raises(MedGroundInputError, match="not found"):
        open_store(tmp_path / "nope.sqlite", create=False)


def test_lance_ivfpq_index_keeps_recall(tmp_path):
    pytest.importorskip("lancedb")
    rng = np.random.default_rng(1)
    n, d = 3000, 32
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    s = open_store(tmp_path / "big.db")
    s.add([{"id": str(i), "kind": "image", "image_id": str(i)} for i in range(n)], vecs)
    s.build_index(num_partitions=16, num_sub_vectors=4, nprobes=16)
    hits = sum(s.search(vecs[i], k=1)[0]["id"] == str(i) for i in range(0, n, 150))
    assert hits >= 18  # of 20 (refined IVF-PQ finds the exact vector itself)
    s.close()


def test_pgvector_hnsw_index(pg_uri):
    import psycopg

    with psycopg.connect(pg_uri, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS medground_records")
        con.execute("DROP TABLE IF EXISTS medground_info")
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    s = open_store(pg_uri)
    s.add([{"id": str(i), "kind": "image", "image_id": str(i)} for i in range(500)], vecs)
    s.build_index("hnsw")
    assert sum(s.search(vecs[i], k=1)[0]["id"] == str(i) for i in range(0, 500, 25)) >= 19
    s.build_index("ivfflat", lists=10, probes=10)
    assert s.search(vecs[7], k=1)[0]["id"] == "7"
    s.close()
