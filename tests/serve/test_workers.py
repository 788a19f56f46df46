"""Worker processes and the PostgreSQL back end against a real server: a job whose worker process dies is
failed with its reason while the API stays up; on PostgreSQL, jobs and studies survive a restart."""
from __future__ import annotations

import time

from _servehelpers import disk_png, upload, wait_job


def _box_job(c, sid: str, box: list[int]) -> str:
    r = c.post("/api/jobs", json={"study_id": sid, "task": "segment", "params": {"boxes": [box], "overlay": False}})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def test_postgres_backend_survives_restart(server_factory, pg_database, tmp_path):
    """The same service on PostgreSQL: a job runs, the server dies, the job and its result are still there."""
    data = tmp_path / "data"
    s1 = server_factory("--workers", "1", "--worker-mode", "thread", "--db", pg_database, data_dir=data)
    with s1.client() as c:
        assert c.get("/api/health").json()["db"] == "postgres"
        sid = upload(c, disk_png(tmp_path / "a.png")).json()["study_id"]
        jid = _box_job(c, sid, [14, 18, 46, 50])
        job = wait_job(c, jid)
        assert job["status"] == "done", job["error"]
    s1.kill()
    s2 = server_factory("--workers", "0", "--db", pg_database, data_dir=data)
    with s2.client() as c:
        again = c.get(f"/api/jobs/{jid}").json()
        assert again["status"] == "done" and again["result"] == job["result"]
        assert c.get(f"/api/studies/{sid}").json()["shape"][:2] == [64, 64]
        r = c.post("/api/jobs", json={"study_id": sid, "task": "segment",
                                      "params": {"boxes": [[14, 18, 46, 50]], "overlay": False}})
        assert r.status_code == 200 and r.json()["job_id"] == jid


def test_worker_process_crash_fails_its_job_only(server_factory, tmp_path):
    """A job whose worker process dies (killed here) is marked failed with the reason; the API stays up and a
    new worker process takes over."""
    import os
    import signal

    s = server_factory("--workers", "1", "--worker-mode", "process", env={"MEDGROUND_SERVE_TEST_SLEEP": "60"})
    with s.client() as c:
        sid = upload(c, disk_png(tmp_path / "a.png")).json()["study_id"]
        jid = _box_job(c, sid, [14, 18, 46, 50])
        assert wait_job(c, jid, timeout=60, until=("running",))["status"] == "running"
        pids = c.get("/api/health").json()["worker_pids"]
        assert len(pids) == 1 and pids[0] != s.proc.pid
        os.kill(pids[0], signal.SIGKILL)
        job = wait_job(c, jid, timeout=30)
        assert job["status"] == "failed" and "worker process died" in job["error"]
        t0 = time.time()
        while time.time() - t0 < 30:
            new = c.get("/api/health").json()["worker_pids"]
            if new and new != pids:
                break
            time.sleep(0.2)
        assert new and new != pids
    s.kill()  # its worker process dies with it
