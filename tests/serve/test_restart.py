"""Jobs survive server restarts: finished jobs keep their results, queued jobs run after a restart, and a
job that was running when the server was killed is marked failed ("interrupted by server restart")."""
from __future__ import annotations

import sqlite3
import time

import pytest

from _servehelpers import disk_png, upload, wait_job


def _box_job(c, sid: str, box: list[int]) -> str:
    r = c.post("/api/jobs", json={"study_id": sid, "task": "segment", "params": {"boxes": [box], "overlay": False}})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


@pytest.mark.slow
def test_jobs_survive_restarts(server_factory, tmp_path):
    data = tmp_path / "data"
    # 1. a server that runs a job to the end, then dies without warning
    s1 = server_factory("--workers", "1", "--worker-mode", "thread", data_dir=data)
    with s1.client() as c:
        sid = upload(c, disk_png(tmp_path / "a.png")).json()["study_id"]
        done_id = _box_job(c, sid, [14, 18, 46, 50])
        done = wait_job(c, done_id)
        assert done["status"] == "done", done["error"]
    s1.kill()

    # 2. a server with paused workers accepts jobs that stay queued; it dies too
    s2 = server_factory("--workers", "0", data_dir=data)
    with s2.client() as c:
        assert c.get(f"/api/jobs/{done_id}").json()["result"] == done["result"]  # finished job still there
        killed_id = _box_job(c, sid, [12, 16, 48, 52])
        queued_id = _box_job(c, sid, [16, 20, 44, 48])
        time.sleep(0.5)
        assert {c.get(f"/api/jobs/{j}").json()["status"] for j in (killed_id, queued_id)} == {"queued"}
    s2.kill()

    # 3. a server whose only worker is stuck in the first queued job is killed mid-run (the second job
    #    is still queued when it dies)
    s3 = server_factory("--workers", "1", "--worker-mode", "thread", data_dir=data,
                        env={"MEDGROUND_SERVE_TEST_SLEEP": "60"})
    with s3.client() as c:
        assert wait_job(c, killed_id, timeout=30, until=("running",))["status"] == "running"
        assert c.get(f"/api/jobs/{queued_id}").json()["status"] == "queued"
    s3.kill()

    # 4. after the restart: the killed job failed with its reason, the queued one runs, the finished one is kept
    s4 = server_factory("--workers", "1", "--worker-mode", "thread", data_dir=data)
    with s4.client() as c:
        k = c.get(f"/api/jobs/{killed_id}").json()
        assert k["status"] == "failed" and k["error"] == "interrupted by server restart"
        q = wait_job(c, queued_id)
        assert q["status"] == "done", q["error"]
        assert q["result"]["findings"][0]["present"]
        assert c.get(f"/api/jobs/{done_id}").json()["status"] == "done"
        assert c.get(f"/api/jobs/{done_id}/files/findings.json").status_code == 200
        # re-submitting the killed request queues the same job again (never a duplicate), and it runs
        r = c.post("/api/jobs", json={"study_id": sid, "task": "segment",
                                      "params": {"boxes": [[12, 16, 48, 52]], "overlay": False}})
        assert r.status_code == 202 and r.json()["job_id"] == killed_id
        k = wait_job(c, killed_id)
        assert k["status"] == "done" and k["error"] is None
        r = c.post("/api/jobs", json={"study_id": sid, "task": "segment",
                                      "params": {"boxes": [[12, 16, 48, 52]], "overlay": False}})
        assert r.status_code == 200 and r.json()["job_id"] == killed_id
    s4.stop()
    con = sqlite3.connect(data / "medground.db")
    rows = con.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
    assert dict(rows) == {"done": 3}

