"""Persistent job and study records: SQLite by default, PostgreSQL (psycopg 3) optional.

One table of studies (their info; the files live in the data dir) and one of jobs. A job is keyed by
the SHA-256 of its canonical JSON request (study, task, params), so re-submitting the same request finds
the same job (a failed job is queued again, under the same id). Workers claim queued jobs atomically (``claim``); at startup, jobs left "running" by a
server that died are marked failed ("interrupted by server restart"): they are not re-run, because a
job that killed the server would kill it again.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "done", "failed")
INTERRUPTED = "interrupted by server restart"

_JOB_COLS = ("job_id", "study_id", "task", "params", "status", "error", "created", "started", "finished",
             "result")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def request_key(study_id: str, task: str, params: dict) -> str:
    return hashlib.sha256(canonical({"study_id": study_id, "task": task, "params": params}).encode()).hexdigest()


class JobStore:
    """Jobs and studies in SQLite (``sqlite:///path`` or a plain path) or PostgreSQL (``postgresql://...``)."""

    def __init__(self, url: str):
        self.url = url
        self.kind = "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._lock = threading.RLock()
        self._local = threading.local()
        if self.kind == "sqlite":
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            if path.startswith("sqlite:"):
                raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(Path(path).expanduser()), check_same_thread=False,
                                         isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import importlib.util

            if importlib.util.find_spec("psycopg") is None:
                raise ValueError("a postgresql:// database needs the psycopg package (pip install 'psycopg[binary]')")
        try:
            self._init_schema()
        except Exception as exc:
            if self.kind != "postgres":
                raise
            msg = " ".join(str(exc).split())[:200]
            raise ValueError(f"cannot use the PostgreSQL database ({type(exc).__name__}: {msg})") from None

    # ------------------------------------------------------------------ low level
    def _pg(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
            self._local.conn = conn
        return conn

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgres" else sql

    def _exec(self, sql: str, args: tuple = (), fetch: str | None = None):
        if self.kind == "sqlite":
            with self._lock:
                cur = self._conn.execute(sql, args)
                if fetch == "one":
                    return cur.fetchone()
                if fetch == "all":
                    return cur.fetchall()
                return cur.rowcount
        for attempt in range(2):
            try:
                with self._pg().cursor() as cur:
                    cur.execute(self._q(sql), args)
                    if fetch == "one":
                        return cur.fetchone()
                    if fetch == "all":
                        return cur.fetchall()
                    return cur.rowcount
            except Exception as exc:  # a dropped connection: reconnect once
                import psycopg

                if attempt or not isinstance(exc, psycopg.OperationalError):
                    raise
                self._local.conn = None

    def _init_schema(self) -> None:
        seq = "seq INTEGER PRIMARY KEY AUTOINCREMENT" if self.kind == "sqlite" else "seq BIGSERIAL PRIMARY KEY"
        self._exec(f"""CREATE TABLE IF NOT EXISTS jobs (
            {seq}, job_id TEXT UNIQUE NOT NULL, req_key TEXT UNIQUE NOT NULL, study_id TEXT NOT NULL,
            task TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
            created TEXT NOT NULL, started TEXT, finished TEXT, result TEXT, worker TEXT)""")
        self._exec("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)")
        self._exec("CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_id, seq)")
        self._exec("""CREATE TABLE IF NOT EXISTS studies (
            study_id TEXT PRIMARY KEY, info TEXT NOT NULL, created TEXT NOT NULL)""")

    # ------------------------------------------------------------------ studies
    def add_study(self, study_id: str, info: dict) -> None:
        self._exec("INSERT INTO studies (study_id, info, created) VALUES (?, ?, ?)",
                   (study_id, json.dumps(info), info.get("created") or now_iso()))

    def get_study(self, study_id: str) -> dict | None:
        row = self._exec("SELECT info FROM studies WHERE study_id = ?", (study_id,), fetch="one")
        return json.loads(row[0]) if row else None

    def list_studies(self) -> list[dict]:
        rows = self._exec("SELECT info FROM studies ORDER BY created", fetch="all")
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ jobs
    def _row(self, r) -> dict:
        d = dict(zip(_JOB_COLS, r))
        d["params"] = json.loads(d["params"])
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def submit(self, study_id: str, task: str, params: dict) -> tuple[dict, bool]:
        """Insert a queued job, or find the existing one for the same request. Returns (job, created)."""
        key = request_key(study_id, task, params)
        job_id = secrets.token_hex(8)
        n = self._exec("INSERT INTO jobs (job_id, req_key, study_id, task, params, status, created) "
                       "VALUES (?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT (req_key) DO NOTHING",
                       (job_id, key, study_id, task, canonical(params), now_iso()))
        row = self._exec(f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE req_key = ?", (key,), fetch="one")
        job = self._row(row)
        if job["job_id"] == job_id and n:
            return job, True
        if job["status"] == "failed":  # a failed request sent again is run again, as the same job
            k = self._exec("UPDATE jobs SET status = 'queued', error = NULL, result = NULL, started = NULL, "
                           "finished = NULL WHERE job_id = ? AND status = 'failed'", (job["job_id"],))
            if k:
                return self.get(job["job_id"]), True
        return job, False

    def get(self, job_id: str) -> dict | None:
        row = self._exec(f"SELECT {', '.join(_JOB_COLS)} FROM jobs WHERE job_id = ?", (job_id,), fetch="one")
        return self._row(row) if row else None

    def list(self, study_id: str | None = None, status: str | None = None, limit: int = 1000) -> list[dict]:
        where, args = [], []
        if study_id:
            where.append("study_id = ?")
            args.append(study_id)
        if status:
            where.append("status = ?")
            args.append(status)
        sql = f"SELECT {', '.join(_JOB_COLS)} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq LIMIT {int(limit)}"
        return [self._row(r) for r in self._exec(sql, tuple(args), fetch="all")]

    def counts(self) -> dict[str, int]:
        rows = self._exec("SELECT status, COUNT(*) FROM jobs GROUP BY status", fetch="all")
        out = {s: 0 for s in STATUSES}
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def claim(self, worker: str | None = None) -> dict | None:
        """Atomically move the oldest queued job to running (recording which worker took it) and return it;
        None when none is queued."""
        lock = "FOR UPDATE SKIP LOCKED" if self.kind == "postgres" else ""
        sql = (f"UPDATE jobs SET status = 'running', started = ?, worker = ? WHERE seq = (SELECT seq FROM jobs "
               f"WHERE status = 'queued' ORDER BY seq LIMIT 1 {lock}) AND status = 'queued' RETURNING job_id")
        for _ in range(5):
            row = self._exec(sql, (now_iso(), worker), fetch="one")
            if row:
                return self.get(row[0])
            if not self._exec("SELECT 1 FROM jobs WHERE status = 'queued' LIMIT 1", fetch="one"):
                return None
            time.sleep(0.01)  # lost a race with another worker: try again
        return None

    def finish(self, job_id: str, result: Any = None, error: str | None = None) -> None:
        status = "failed" if error is not None else "done"
        self._exec("UPDATE jobs SET status = ?, error = ?, result = ?, finished = ? WHERE job_id = ?",
                   (status, error, json.dumps(result) if result is not None else None, now_iso(), job_id))

    def recover(self) -> int:
        """At startup: jobs left running by a dead server are marked failed. Returns how many."""
        return self._exec("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE status = 'running'",
                          (INTERRUPTED, now_iso()))

    def fail_running(self, worker: str, error: str) -> int:
        """Jobs a dead worker was running: failed with ``error``."""
        return self._exec("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE status = 'running' "
                          "AND worker = ?", (error, now_iso(), worker))

    def requeue_running(self, worker: str) -> int:
        """Jobs a worker stopped on purpose (server shutdown) was running: queued again."""
        return self._exec("UPDATE jobs SET status = 'queued', started = NULL WHERE status = 'running' "
                          "AND worker = ?", (worker,))

    def duplicates(self) -> int:
        """Requests stored more than once (should always be 0; the load test checks it)."""
        row = self._exec("SELECT COUNT(*) FROM (SELECT req_key FROM jobs GROUP BY req_key HAVING COUNT(*) > 1) d",
                         fetch="one")
        return int(row[0])

    def close(self) -> None:
        if self.kind == "sqlite":
            with self._lock:
                self._conn.close()
        else:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
