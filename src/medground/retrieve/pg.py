"""PostgreSQL + pgvector back end (a server: for large collections and several writers), via psycopg 3.

``PgVectorStore("postgresql://user@host:port/db")`` keeps records in ``medground_records`` (one
``vector(D)`` column; the table is created on the first write) and store info in ``medground_info``.
Search is exact (sequential scan) until :meth:`PgVectorStore.build_index` adds an HNSW or IVFFlat index.

:func:`local_server` starts a throwaway server in a temporary folder on a random loopback port (tests,
benchmarks). It needs PostgreSQL binaries whose installation has the ``vector`` extension: those of the
``pgserver`` wheel (PostgreSQL 16 + pgvector, in the ``retrieve`` extra), a system PostgreSQL with
pgvector (e.g. Debian's ``postgresql-NN-pgvector`` where the release has it) or ``$MEDGROUND_PG_BIN``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from medground.io.image import MedGroundInputError
from medground.retrieve.store import FIELDS, VectorStore, delete_filters

_COLS = ", ".join(FIELDS)


class PgVectorStore(VectorStore):
    backend = "pgvector"

    def __init__(self, uri: str, create: bool = True, table: str = "medground_records"):
        super().__init__()
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise MedGroundInputError("the pgvector back end needs psycopg and pgvector: "
                                      "pip install 'medground[retrieve]'") from exc
        self.uri = uri
        self.table = table
        try:
            self.con = psycopg.connect(uri, autocommit=True)
        except psycopg.OperationalError as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedGroundInputError(f"cannot connect to PostgreSQL: {msg}") from exc
        self.con.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.con)
        self.con.execute("CREATE TABLE IF NOT EXISTS medground_info (key TEXT PRIMARY KEY, value TEXT)")
        info = self.get_info()
        if not create and not self._has_table():
            raise MedGroundInputError(f"database not found: no medground records in {self._safe_uri()}")
        self.dim = int(info["dim"]) if info.get("dim") else None

    def _safe_uri(self) -> str:
        return self.uri.split("@")[-1]

    def _has_table(self) -> bool:
        return self.con.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is not None

    def _ensure_table(self, dim: int) -> None:
        if self._has_table():
            return
        cols = ", ".join(f"{f} TEXT NOT NULL" + (" PRIMARY KEY" if f == "id" else "") for f in FIELDS)
        self.con.execute(f"CREATE TABLE {self.table} ({cols}, vector vector({int(dim)}) NOT NULL)")
        for col in ("kind", "term", "image_id"):
            self.con.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_{col} ON {self.table} ({col})")
        self.set_info({**self.get_info(), "dim": int(dim)})

    def _write(self, records, vectors, upsert):
        self._ensure_table(vectors.shape[1])
        with self.con.transaction(), self.con.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE staging (LIKE {self.table}) ON COMMIT DROP")
            with cur.copy(f"COPY staging ({_COLS}, vector) FROM STDIN WITH (FORMAT BINARY)") as cp:
                cp.set_types(["text"] * len(FIELDS) + ["vector"])
                for r, v in zip(records, vectors):
                    cp.write_row([r[f] for f in FIELDS] + [v])
            if upsert:
                sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS[1:] + ("vector",))
                cur.execute(f"INSERT INTO {self.table} SELECT * FROM staging ON CONFLICT (id) DO UPDATE SET {sets}")
            else:
                cur.execute(f"INSERT INTO {self.table} SELECT * FROM staging ON CONFLICT (id) DO NOTHING")

    @staticmethod
    def _where(filters: dict) -> tuple[str, list]:
        parts, params = [], []
        for k, v in filters.items():
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "!=":
                parts.append(f"{k} <> %s")
                params.append(str(v[1]))
            elif isinstance(v, (list, set, frozenset)):
                parts.append(f"{k} = ANY(%s)")
                params.append([str(i) for i in v])
            else:
                parts.append(f"{k} = %s")
                params.append(str(v))
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    def delete(self, ids: Iterable[str] | None = None, filters: dict | None = None) -> int:
        if not self._has_table():
            return 0
        f = delete_filters(ids, filters)
        if f is None:
            return 0
        w, p = self._where(f)
        return self.con.execute(f"DELETE FROM {self.table}{w}", p).rowcount

    def get(self, ids: Iterable[str], vectors: bool = False) -> list[dict]:
        ids = list(ids)
        if not ids or not self._has_table():
            return []
        cols = _COLS + (", vector" if vectors else "")
        rows = self.con.execute(f"SELECT {cols} FROM {self.table} WHERE id = ANY(%s)", (ids,)).fetchall()
        out = []
        for row in rows:
            r = dict(zip(FIELDS, row[: len(FIELDS)]))
            if vectors:
                v = row[-1]
                r["vector"] = np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, np.float32)
            out.append(r)
        order = {i: n for n, i in enumerate(ids)}
        out.sort(key=lambda r: order.get(r["id"], 0))
        return out

    def existing(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        if not ids or not self._has_table():
            return set()
        return {r[0] for r in self.con.execute(f"SELECT id FROM {self.table} WHERE id = ANY(%s)", (ids,))}

    def count(self, filters: dict | None = None) -> int:
        if not self._has_table():
            return 0
        w, p = self._where(filters or {})
        return int(self.con.execute(f"SELECT COUNT(*) FROM {self.table}{w}", p).fetchone()[0])

    def distinct(self, field: str, filters: dict | None = None) -> list[str]:
        if field not in FIELDS:
            raise ValueError(field)
        if not self._has_table():
            return []
        w, p = self._where(filters or {})
        return sorted(r[0] for r in self.con.execute(f"SELECT DISTINCT {field} FROM {self.table}{w}", p))

    def _search(self, q, k, filters):
        if not self._has_table():
            return []
        w, p = self._where(filters)
        rows = self.con.execute(
            f"SELECT {_COLS}, 1 - (vector <=> %s) AS score FROM {self.table}{w} ORDER BY vector <=> %s LIMIT %s",
            [q] + p + [q, k]).fetchall()
        return [dict(zip(FIELDS + ("score",), r[:-1] + (float(r[-1]),))) for r in rows]

    def build_index(self, method: str = "hnsw", lists: int | None = None, probes: int = 10,
                    ef_search: int = 100, **kw) -> None:
        """``hnsw`` (better recall, slow to build) or ``ivfflat`` (``lists`` clusters, fast to build)."""
        if not self._has_table():
            return
        self.con.execute(f"DROP INDEX IF EXISTS {self.table}_vec")
        if method == "ivfflat":
            n = self.count()
            lists = lists or max(1, int(np.sqrt(n)))
            self.con.execute(f"CREATE INDEX {self.table}_vec ON {self.table} USING ivfflat "
                             f"(vector vector_cosine_ops) WITH (lists = {int(lists)})")
            self.con.execute(f"SET ivfflat.probes = {int(probes)}")
        else:
            self.con.execute(f"CREATE INDEX {self.table}_vec ON {self.table} USING hnsw (vector vector_cosine_ops)")
            self.con.execute(f"SET hnsw.ef_search = {int(ef_search)}")

    def get_info(self) -> dict:
        row = self.con.execute("SELECT value FROM medground_info WHERE key = 'info'").fetchone()
        return json.loads(row[0]) if row else {}

    def set_info(self, info: dict) -> None:
        self.con.execute("INSERT INTO medground_info (key, value) VALUES ('info', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (json.dumps(info),))

    def close(self) -> None:
        self.con.close()


# --------------------------------------------------------------------------- throwaway server
def _has_vector(bindir: Path) -> bool:
    share = bindir.parent / "share"
    return any((d / "extension" / "vector.control").exists()
               for d in (share / "postgresql", share, *sorted(share.glob("postgresql/*"))))


def find_pg_bin() -> Path | None:
    """A PostgreSQL bin folder (with initdb, pg_ctl) whose installation has pgvector, or None."""
    cands: list[Path] = []
    verified: set[Path] = set()
    if os.environ.get("MEDGROUND_PG_BIN"):
        cands.append(Path(os.environ["MEDGROUND_PG_BIN"]))
        verified.add(cands[-1])
    import importlib.util

    spec = importlib.util.find_spec("pgserver")  # the wheel's binaries (not imported: it writes on import)
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cands.append(Path(loc) / "pginstall" / "bin")
    pgc = shutil.which("pg_config")
    if pgc:
        try:
            bindir = subprocess.run([pgc, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            sharedir = subprocess.run([pgc, "--sharedir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if (Path(sharedir) / "extension" / "vector.control").exists():
                cands.append(Path(bindir))
                verified.add(Path(bindir))
        except (OSError, subprocess.SubprocessError):
            pass
    for c in cands:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c in verified or _has_vector(c)):
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(timeout: float = 60.0) -> Iterator[str]:
    """Start a throwaway PostgreSQL (+pgvector) on 127.0.0.1:<random port>; yields its URI.

    Raises RuntimeError (with the reason) when no suitable binaries are found or the server fails to
    start. As root the server runs as the ``postgres`` or ``nobody`` user (PostgreSQL refuses root).
    """
    bindir = find_pg_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries with the pgvector extension found "
                           "(install medground[retrieve] for pgserver's, or set MEDGROUND_PG_BIN)")
    tmp = Path(tempfile.mkdtemp(prefix="medground-pg-"))
    prefix: list[str] = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        user = next((u for u in ("postgres", "nobody") if _user_exists(pwd, u)), None)
        runuser = shutil.which("runuser") or shutil.which("setpriv")
        if user is None or runuser is None:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError("running as root without a 'postgres'/'nobody' user and runuser to start PostgreSQL")
        pw = pwd.getpwnam(user)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", user, "--"]
    data, log = tmp / "data", tmp / "server.log"
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    started = False
    try:
        r = subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "medground", "--auth=trust",
                                     "-E", "UTF8", "--no-sync"], capture_output=True, text=True, env=env,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        r = subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
                                     "-t", str(int(timeout)), "start"], capture_output=True, text=True, env=env,
                           timeout=timeout + 10)
        if r.returncode != 0:
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            raise RuntimeError(f"PostgreSQL did not start: {tail or r.stderr.strip()}")
        started = True
        yield f"postgresql://medground@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def _user_exists(pwd, name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
