"""LanceDB back end: an embedded columnar vector database in a folder (``cases.db/``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from medground.retrieve.store import FIELDS, TABLE, VectorStore, sql_where, delete_filters

INFO_FILE = "medground_store.json"


def _quote(s) -> str:
    return "'" + str(s).replace("'", "''") + "'"


class LanceStore(VectorStore):
    backend = "lance"

    def __init__(self, path: str | Path):
        super().__init__()
        import lancedb

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(self.path))
        self.table = self.db.open_table(TABLE) if TABLE in self._tables() else None
        info = self.get_info()
        if self.table is not None:
            self.dim = int(self.table.schema.field("vector").type.list_size)
        elif info.get("dim"):
            self.dim = int(info["dim"])

    def _tables(self) -> list[str]:
        try:
            res = self.db.list_tables()
            names = getattr(res, "tables", res)
        except AttributeError:  # older lancedb
            names = self.db.table_names()
        return list(names)

    def _schema(self, dim: int):
        import pyarrow as pa

        return pa.schema([pa.field(f, pa.string()) for f in FIELDS] +
                         [pa.field("vector", pa.list_(pa.float32(), dim))])

    def _arrow(self, records: list[dict], vectors: np.ndarray):
        import pyarrow as pa

        cols = [pa.array([r[f] for r in records], pa.string()) for f in FIELDS]
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32())
        cols.append(pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))
        return pa.Table.from_arrays(cols, schema=self._schema(vectors.shape[1]))

    def _write(self, records, vectors, upsert):
        data = self._arrow(records, vectors)
        if self.table is None:
            self.table = self.db.create_table(TABLE, data=data, schema=self._schema(vectors.shape[1]))
            self.set_info({**self.get_info(), "dim": int(vectors.shape[1])})
            return
        if upsert:
            (self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
             .execute(data))
        else:
            self.table.add(data)

    def delete(self, ids: Iterable[str] | None = None, filters: dict | None = None) -> int:
        if self.table is None:
            return 0
        f = delete_filters(ids, filters)
        if f is None:
            return 0
        before = self.table.count_rows()
        self.table.delete(sql_where(f, _quote))
        return before - self.table.count_rows()

    def _query_rows(self, where: str | None, columns: list[str], limit: int | None = None) -> list[dict]:
        if self.table is None:
            return []
        q = self.table.search()
        if where:
            q = q.where(where)
        q = q.select(columns)
        q = q.limit(limit if limit is not None else max(self.table.count_rows(), 1))
        return q.to_arrow().to_pylist()

    def get(self, ids: Iterable[str], vectors: bool = False) -> list[dict]:
        ids = list(ids)
        if not ids or self.table is None:
            return []
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self._query_rows(sql_where({"id": chunk}, _quote), list(FIELDS) + (["vector"] if vectors else []),
                                    limit=len(chunk))
            out += rows
        order = {i: n for n, i in enumerate(ids)}
        out.sort(key=lambda r: order.get(r["id"], 0))
        if vectors:
            for r in out:
                r["vector"] = np.asarray(r["vector"], np.float32)
        return out

    def existing(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            found |= {r["id"] for r in self._query_rows(sql_where({"id": chunk}, _quote), ["id"], limit=len(chunk))}
        return found

    def count(self, filters: dict | None = None) -> int:
        if self.table is None:
            return 0
        return int(self.table.count_rows(sql_where(filters, _quote) if filters else None))

    def distinct(self, field: str, filters: dict | None = None) -> list[str]:
        if field not in FIELDS:
            raise ValueError(field)
        rows = self._query_rows(sql_where(filters, _quote) if filters else None, [field])
        return sorted({r[field] for r in rows})

    def _search(self, q, k, filters):
        if self.table is None:
            return []
        s = self.table.search(q.astype(np.float32), vector_column_name="vector").metric("cosine")
        if filters:
            s = s.where(sql_where(filters, _quote), prefilter=True)
        if self._indexed():
            s = s.nprobes(self._nprobes).refine_factor(self._refine)
        rows = s.select(list(FIELDS) + ["_distance"]).limit(k).to_arrow().to_pylist()
        for r in rows:
            r["score"] = 1.0 - float(r.pop("_distance"))
        return rows

    _nprobes = 20
    _refine = 50  # re-rank 50 x k PQ candidates exactly: recall@10 0.62 -> 0.97 at 1M for +4 ms (benchmark)

    _vindex: bool | None = None

    def _indexed(self) -> bool:
        if self._vindex is None:
            try:
                self._vindex = any("vector" in getattr(i, "columns", []) for i in self.table.list_indices())
            except Exception:  # noqa: BLE001
                self._vindex = False
        return self._vindex

    def build_index(self, num_partitions: int | None = None, num_sub_vectors: int | None = None,
                    nprobes: int = 20, refine: int = 50, **kw) -> None:
        """IVF-PQ index on the vectors (worth it from ~100k rows) plus scalar indexes on kind/term."""
        if self.table is None:
            return
        n = self.table.count_rows()
        parts = num_partitions or max(1, int(np.sqrt(n)))
        sub = num_sub_vectors or (self.dim // 8 if self.dim and self.dim % 8 == 0 else 1)
        try:
            from lancedb.index import IvfPq

            self.table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=parts,
                                                           num_sub_vectors=sub), replace=True)
        except ImportError:  # older lancedb
            self.table.create_index(metric="cosine", num_partitions=parts, num_sub_vectors=sub,
                                    vector_column_name="vector", replace=True)
        self._nprobes = nprobes
        self._refine = refine
        self._vindex = True
        for col in ("kind", "term", "image_id"):
            try:
                from lancedb.index import BTree

                self.table.create_index(col, config=BTree(), replace=True)
            except Exception:  # noqa: BLE001 - scalar indexes are an optimisation only
                pass

    def get_info(self) -> dict:
        p = self.path / INFO_FILE
        return json.loads(p.read_text()) if p.exists() else {}

    def set_info(self, info: dict) -> None:
        (self.path / INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True))
