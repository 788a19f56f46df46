"""A small vector-store interface: records with fixed metadata columns plus one float32 vector each.

Back ends (all behind :class:`VectorStore`):

* ``lance``  - LanceDB, embedded (a folder on disk); the default. Exact search, or an IVF-PQ index on
  large tables (:meth:`VectorStore.build_index`).
* ``sqlite`` - SQLite for metadata and vectors, exact search with numpy; needs nothing beyond the
  standard library (the fallback when LanceDB is not installed).
* ``pgvector`` - PostgreSQL + pgvector (a server, for scale and for several writers), via psycopg.

``open_store(uri)`` picks the back end from the URI: ``postgresql://...`` -> pgvector, a path ending in
``.sqlite``/``.sqlite3`` -> sqlite, any other path -> LanceDB folder (falls back to sqlite when LanceDB is
not installed). Vectors are L2-normalised on write; scores are cosine similarities (higher is closer).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable

import numpy as np

from medground.io.image import MedGroundInputError

# metadata columns of every record (all text); filters work on these
FIELDS = ("id", "kind", "image_id", "path", "region", "term", "modality", "patient", "report", "meta")
KINDS = ("image", "region", "report")
TABLE = "records"


def normalize(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None]
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


def clean_record(r: dict) -> dict:
    """A record restricted to FIELDS, every value a string (meta JSON-encoded)."""
    if not r.get("id"):
        raise ValueError("record without an id")
    out = {}
    for f in FIELDS:
        v = r.get(f, "")
        if f == "meta" and not isinstance(v, str):
            v = json.dumps(v or {}, sort_keys=True)
        out[f] = "" if v is None else str(v)
    return out


def check_filters(filters: dict | None) -> dict:
    """Filters: {field: value} (equal), {field: [v1, v2]} (any of), {field: ("!=", v)} (not equal)."""
    out = {}
    for k, v in (filters or {}).items():
        if k not in FIELDS:
            raise MedGroundInputError(f"cannot filter on {k!r}; use one of: {', '.join(FIELDS)}")
        if v is None:
            continue
        out[k] = v
    return out


def match_filters(rec: dict, filters: dict) -> bool:
    for k, v in filters.items():
        x = rec.get(k, "")
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "!=":
            if x == str(v[1]):
                return False
        elif isinstance(v, (list, set, frozenset)):
            if x not in {str(i) for i in v}:
                return False
        elif x != str(v):
            return False
    return True


def delete_filters(ids: Iterable[str] | None, filters: dict | None) -> dict | None:
    """The filters a ``delete`` call selects (ids become an ``id`` any-of filter); None when ``ids`` is an empty
    list (nothing to delete). Deleting everything by accident is refused."""
    f = dict(filters or {})
    if ids is not None:
        ids = list(ids)
        if not ids:
            return None
        f["id"] = ids
    if not f:
        raise ValueError("delete needs ids or filters")
    return f


def sql_where(filters: dict, quote=lambda s: "'" + str(s).replace("'", "''") + "'") -> str:
    """SQL text of the filters (values quoted; field names come from FIELDS only)."""
    parts = []
    for k, v in filters.items():
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "!=":
            parts.append(f"{k} <> {quote(v[1])}")
        elif isinstance(v, (list, set, frozenset)):
            vals = sorted(str(i) for i in v)
            parts.append(f"{k} IN ({', '.join(quote(i) for i in vals)})" if vals else "FALSE")
        else:
            parts.append(f"{k} = {quote(v)}")
    return " AND ".join(parts)


class VectorStore(ABC):
    """Records (metadata FIELDS + one vector) with exact or indexed top-k cosine search."""

    backend = "?"

    def __init__(self) -> None:
        self.dim: int | None = None

    # ---- required
    @abstractmethod
    def _write(self, records: list[dict], vectors: np.ndarray, upsert: bool) -> None: ...

    @abstractmethod
    def delete(self, ids: Iterable[str] | None = None, filters: dict | None = None) -> int: ...

    @abstractmethod
    def get(self, ids: Iterable[str], vectors: bool = False) -> list[dict]: ...

    @abstractmethod
    def existing(self, ids: Iterable[str]) -> set[str]: ...

    @abstractmethod
    def count(self, filters: dict | None = None) -> int: ...

    @abstractmethod
    def _search(self, q: np.ndarray, k: int, filters: dict) -> list[dict]: ...

    @abstractmethod
    def distinct(self, field: str, filters: dict | None = None) -> list[str]: ...

    @abstractmethod
    def get_info(self) -> dict: ...

    @abstractmethod
    def set_info(self, info: dict) -> None: ...

    def build_index(self, **kw) -> None:
        """Build an approximate-search index (no-op for exact back ends)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- shared logic
    def _prep(self, records: list[dict], vectors) -> tuple[list[dict], np.ndarray]:
        recs = [clean_record(r) for r in records]
        vec = normalize(vectors) if len(recs) else np.zeros((0, self.dim or 1), np.float32)
        if len(recs) != len(vec):
            raise ValueError(f"{len(recs)} records but {len(vec)} vectors")
        if len(recs):
            if self.dim is None:
                self.dim = int(vec.shape[1])
            elif vec.shape[1] != self.dim:
                raise MedGroundInputError(f"vectors have {vec.shape[1]} dimensions but this database holds "
                                          f"{self.dim}-dimensional vectors (indexed with another embedder?)")
        ids = [r["id"] for r in recs]
        if len(set(ids)) != len(ids):  # keep the last of duplicate ids within one call
            last = {i: n for n, i in enumerate(ids)}
            keep = sorted(last.values())
            recs, vec = [recs[i] for i in keep], vec[keep]
        return recs, vec

    def add(self, records: list[dict], vectors, skip_existing: bool = True) -> int:
        """Insert new records; ids already present are skipped. Returns how many were added.
        ``skip_existing=False``: bulk load of ids known to be new (no look-up; duplicates are the caller's)."""
        recs, vec = self._prep(records, vectors)
        if not recs:
            return 0
        if not skip_existing:
            self._write(recs, vec, upsert=False)
            return len(recs)
        have = self.existing([r["id"] for r in recs])
        keep = [i for i, r in enumerate(recs) if r["id"] not in have]
        if keep:
            self._write([recs[i] for i in keep], vec[keep], upsert=False)
        return len(keep)

    def upsert(self, records: list[dict], vectors) -> None:
        """Insert or replace records by id."""
        recs, vec = self._prep(records, vectors)
        if recs:
            self._write(recs, vec, upsert=True)

    def search(self, vector, k: int = 10, filters: dict | None = None) -> list[dict]:
        """Top-k records by cosine similarity: dicts of FIELDS + ``score``."""
        if self.dim is None:
            return []
        q = normalize(vector)[0]
        if q.shape[0] != self.dim:
            raise MedGroundInputError(f"query has {q.shape[0]} dimensions but this database holds "
                                      f"{self.dim}-dimensional vectors (indexed with another embedder?)")
        if k <= 0:
            return []
        return self._search(q, int(k), check_filters(filters))


def open_store(uri: str | Path, create: bool = True, backend: str | None = None) -> VectorStore:
    """Open (or create) a store. ``create=False`` raises MedGroundInputError when it does not exist."""
    s = str(uri)
    if backend is None:
        if s.startswith(("postgresql://", "postgres://")):
            backend = "pgvector"
        elif s.lower().endswith((".sqlite", ".sqlite3")):
            backend = "sqlite"
        elif Path(s).is_file():  # an existing single-file database is SQLite
            backend = "sqlite"
        else:
            backend = "lance"
            try:
                import lancedb  # noqa: F401
            except ImportError:
                backend = "sqlite"
    if backend == "pgvector":
        from medground.retrieve.pg import PgVectorStore

        return PgVectorStore(s, create=create)
    p = Path(s)
    if not create and not p.exists():
        raise MedGroundInputError(f"database not found: {s} (create it with 'medground index ... --db {s}')")
    if backend == "sqlite":
        from medground.retrieve.sqlite import SqliteStore

        return SqliteStore(p)
    if backend == "lance":
        from medground.retrieve.lance import LanceStore

        return LanceStore(p)
    raise MedGroundInputError(f"unknown vector store back end {backend!r}; use lance, sqlite or pgvector")
