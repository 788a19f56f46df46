"""SQLite back end: metadata and float32 vectors in one file; exact cosine search with numpy.

Needs only the standard library and numpy. The vector matrix is loaded once per open store and kept
in memory (1M x 384 float32 = 1.5 GB), refreshed after writes.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

from medground.retrieve.store import FIELDS, VectorStore, match_filters, sql_where, delete_filters

_COLS = ", ".join(FIELDS)


class SqliteStore(VectorStore):
    backend = "sqlite"

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.con = sqlite3.connect(str(self.path))
        self.con.execute(f"CREATE TABLE IF NOT EXISTS records (rowid INTEGER PRIMARY KEY, "
                         f"{', '.join(f + ' TEXT NOT NULL' + (' UNIQUE' if f == 'id' else '') for f in FIELDS)}, "
                         "vector BLOB NOT NULL)")
        self.con.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)")
        for col in ("kind", "term", "image_id"):
            self.con.execute(f"CREATE INDEX IF NOT EXISTS idx_{col} ON records({col})")
        self.con.commit()
        d = self.get_info().get("dim")
        self.dim = int(d) if d else None
        self._cache = None  # (rowids, matrix, meta rows)

    def _write(self, records, vectors, upsert):
        verb = "INSERT OR REPLACE" if upsert else "INSERT OR IGNORE"
        rows = [tuple(r[f] for f in FIELDS) + (v.astype(np.float32).tobytes(),) for r, v in zip(records, vectors)]
        if upsert:  # replace keeps the id unique; drop the old row first so rowids stay consistent
            self.con.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in rows])
        self.con.executemany(f"{verb} INTO records ({_COLS}, vector) VALUES ({', '.join('?' * (len(FIELDS) + 1))})",
                             rows)
        if self.get_info().get("dim") is None:
            self.set_info({**self.get_info(), "dim": int(vectors.shape[1])})
        self.con.commit()
        self._cache = None

    def delete(self, ids: Iterable[str] | None = None, filters: dict | None = None) -> int:
        f = delete_filters(ids, filters)
        if f is None:
            return 0
        cur = self.con.execute(f"DELETE FROM records WHERE {sql_where(f)}")
        self.con.commit()
        self._cache = None
        return cur.rowcount

    def get(self, ids: Iterable[str], vectors: bool = False) -> list[dict]:
        ids = list(ids)
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            cur = self.con.execute(f"SELECT {_COLS}, vector FROM records WHERE id IN "
                                   f"({', '.join('?' * len(chunk))})", chunk)
            for row in cur:
                r = dict(zip(FIELDS, row[:-1]))
                if vectors:
                    r["vector"] = np.frombuffer(row[-1], np.float32).copy()
                out.append(r)
        order = {i: n for n, i in enumerate(ids)}
        out.sort(key=lambda r: order.get(r["id"], 0))
        return out

    def existing(self, ids: Iterable[str]) -> set[str]:
        return {r["id"] for r in self.get(ids)}

    def count(self, filters: dict | None = None) -> int:
        w = f" WHERE {sql_where(filters)}" if filters else ""
        return int(self.con.execute(f"SELECT COUNT(*) FROM records{w}").fetchone()[0])

    def distinct(self, field: str, filters: dict | None = None) -> list[str]:
        if field not in FIELDS:
            raise ValueError(field)
        w = f" WHERE {sql_where(filters)}" if filters else ""
        return sorted(r[0] for r in self.con.execute(f"SELECT DISTINCT {field} FROM records{w}"))

    def _load(self):
        if self._cache is None:
            rows = self.con.execute(f"SELECT {_COLS}, vector FROM records ORDER BY rowid").fetchall()
            meta = [dict(zip(FIELDS, r[:-1])) for r in rows]
            mat = (np.frombuffer(b"".join(r[-1] for r in rows), np.float32).reshape(len(rows), -1)
                   if rows else np.zeros((0, self.dim or 1), np.float32))
            cols = {f: np.array([m[f] for m in meta], dtype=object) for f in FIELDS if f not in ("meta", "report")}
            self._cache = (mat, meta, cols)
        return self._cache

    @staticmethod
    def _mask(cols: dict, n: int, filters: dict) -> np.ndarray:
        sel = np.ones(n, bool)
        for k, v in filters.items():
            if k not in cols:  # report/meta: rarely filtered, done row by row
                return None
            c = cols[k]
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "!=":
                sel &= c != str(v[1])
            elif isinstance(v, (list, set, frozenset)):
                sel &= np.isin(c, np.array([str(i) for i in v], dtype=object))
            else:
                sel &= c == str(v)
        return sel

    def _search(self, q, k, filters):
        mat, meta, cols = self._load()
        if not len(meta):
            return []
        if filters:
            sel = self._mask(cols, len(meta), filters)
            if sel is None:
                sel = np.fromiter((match_filters(m, filters) for m in meta), bool, len(meta))
            idx = np.nonzero(sel)[0]
            scores = mat[idx] @ q
        else:
            idx = None
            scores = mat @ q
        k = min(k, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        out = []
        for t in top:
            r = dict(meta[t if idx is None else idx[t]])
            r["score"] = float(scores[t])
            out.append(r)
        return out

    def get_info(self) -> dict:
        row = self.con.execute("SELECT value FROM info WHERE key = 'info'").fetchone()
        return json.loads(row[0]) if row else {}

    def set_info(self, info: dict) -> None:
        self.con.execute("INSERT OR REPLACE INTO info (key, value) VALUES ('info', ?)", (json.dumps(info),))
        self.con.commit()

    def close(self) -> None:
        self.con.close()
