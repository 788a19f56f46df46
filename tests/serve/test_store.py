"""Job store and task plumbing without a server: idempotency keys, atomic claims, recovery, params checks,
missing capabilities. The store tests run on SQLite and, when a PostgreSQL server can be started
(``pgserver`` package), on PostgreSQL too."""
from __future__ import annotations

import threading

import pytest

from medground.io.image import MedGroundInputError
from medground.serve import tasks
from medground.serve.store import INTERRUPTED, JobStore, request_key


def test_request_key_is_canonical():
    a = request_key("s", "segment", {"boxes": [[1, 2, 3, 4]], "labels": ["x"]})
    b = request_key("s", "segment", {"labels": ["x"], "boxes": [[1, 2, 3, 4]]})
    assert a == b
    assert a != request_key("s", "segment", {"labels": ["x"], "boxes": [[1, 2, 3, 5]]})
    assert a != request_key("t", "segment", {"labels": ["x"], "boxes": [[1, 2, 3, 4]]})


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'j.db'}"
    return request.getfixturevalue("pg_database")


def test_submit_claim_finish_recover(db_url):
    st = JobStore(db_url)
    j1, new1 = st.submit("s1", "classify", {})
    j1b, new1b = st.submit("s1", "classify", {})
    assert new1 and not new1b and j1b["job_id"] == j1["job_id"]
    j2, _ = st.submit("s1", "segment", {"boxes": [[0, 0, 5, 5]]})
    c1 = st.claim()
    assert c1["job_id"] == j1["job_id"] and c1["status"] == "running" and c1["started"]
    st.finish(c1["job_id"], result={"a": 1})
    c2 = st.claim()
    assert c2["job_id"] == j2["job_id"]
    assert st.claim() is None
    st.close()
    st = JobStore(db_url)  # a restart with c2 still running
    assert st.recover() == 1
    assert st.get(j2["job_id"])["error"] == INTERRUPTED and st.get(j2["job_id"])["status"] == "failed"
    assert st.get(j1["job_id"])["result"] == {"a": 1}
    again, new = st.submit("s1", "segment", {"boxes": [[0, 0, 5, 5]]})  # failed -> queued again, same id
    assert new and again["job_id"] == j2["job_id"] and again["status"] == "queued" and again["error"] is None
    assert st.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0}
    assert st.duplicates() == 0


def test_concurrent_claims_take_each_job_once(db_url):
    st = JobStore(db_url)
    ids = {st.submit("s", "classify", {"labels": [str(i)]})[0]["job_id"] for i in range(200)}
    got: list[str] = []
    lock = threading.Lock()

    def worker():
        while (j := st.claim()) is not None:
            with lock:
                got.append(j["job_id"])

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(got) == sorted(ids)
    assert st.counts()["running"] == 200 and st.duplicates() == 0


def test_check_params():
    assert tasks.check_params("segment", {"prompts": "liver"})["prompts"] == ["liver"]
    for task, params, words in [("segment", {}, "give"), ("segment", {"boxes": [[1, 2]]}, "box"),
                                ("segment", {"points": [[1, "a"]]}, "point"), ("ask", {}, "question"),
                                ("classify", {"labels": "x"}, "labels"), ("search", {"k": 0}, "'k'"),
                                ("nope", {}, "unknown task"), ("report", [], "JSON object")]:
        with pytest.raises(MedGroundInputError, match=words):
            tasks.check_params(task, params)


def test_missing_capability_is_reported():
    with pytest.raises(tasks.CapabilityUnavailable, match="capability not available: magic"):
        tasks._capability("medground.no_such_capability", "run", "magic")
    with pytest.raises(tasks.CapabilityUnavailable, match="does not exist yet"):
        tasks._capability("medground.io", "no_such_function", "magic")
