"""Search: by image, by text, or both, optionally conditioned on an anatomical region.

* image query: the whole query image against indexed whole images, or, with ``region``, the query's
  masked crop of that region (segmented on the fly) against indexed crops of the same region;
* text query: the text against indexed images (the shared image-text space) and reports (text-text);
* both: ``alpha * image score + (1 - alpha) * text score`` over the union of both candidate lists.

One row per indexed image (its best-matching record), best first.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.retrieve import index as _index
from medground.retrieve.index import masked_crop
from medground.retrieve.store import VectorStore, open_store


def resolve_region(store: VectorStore, region: str) -> tuple[str, str]:
    """Region words -> (term id, name); unknown -> error with nearest terms; not indexed -> error
    listing what is."""
    from medground.ontology import Ontology

    onto = Ontology.default()
    res = onto.resolve(region)  # raises MedGroundInputError "unknown term ...; did you mean: ..."
    tid = res.term.id
    indexed = store.distinct("term", {"kind": "region"})
    if tid not in indexed:
        names = ", ".join(onto.get(t).name for t in indexed if t in onto) or "none"
        raise MedGroundInputError(f"region '{region}' ({res.term.name}) is not indexed in this database; "
                                  f"indexed regions: {names}")
    return tid, res.term.name


def _best_per_image(rows: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for r in rows:
        b = best.get(r["image_id"])
        if b is None or r["score"] > b["score"]:
            best[r["image_id"]] = r
    return best


def search(db, image: MedImage | None = None, text: str | None = None, region: str | None = None, k: int = 10,
           embedder=None, segmenter=None, filters: dict | None = None, alpha: float = 0.5,
           candidates: int | None = None) -> list[dict]:
    """Top-k indexed images for an image and/or text query; see the module docstring.

    ``db``: path/URI or an open VectorStore. ``filters``: extra metadata filters (e.g. ``{"modality": "CT"}``,
    ``{"patient": ("!=", "p1")}``). Each row: rank, id, image_id, image, region, term, match, score,
    report, modality, patient (+ score_image / score_text for combined queries).
    """
    from medground.retrieve.embedder import default_embedder

    if image is None and not (text and text.strip()):
        raise MedGroundInputError("give a query image, a query text or both")
    if k < 1:
        raise MedGroundInputError("k must be at least 1")
    if not 0.0 <= alpha <= 1.0:
        raise MedGroundInputError("alpha must be between 0 and 1")
    own = not isinstance(db, VectorStore)
    store = open_store(db, create=False) if own else db
    try:
        if store.count() == 0:
            raise MedGroundInputError(f"the database {db if own else ''} is empty: index images first".replace("  ", " "))
        info = store.get_info()
        embedder = embedder or default_embedder()
        if info.get("embedder") and info["embedder"] != embedder.name:
            raise MedGroundInputError(f"this database was indexed with embedder '{info['embedder']}' but the "
                                      f"query uses '{embedder.name}'")
        base = dict(filters or {})
        term = name = None
        if region:
            term, name = resolve_region(store, region)
        n = candidates or max(5 * k, 50)
        qi = qt = None
        note = ""
        if image is not None:
            q_img = image
            if term is not None:
                seg = segmenter or _index.default_segmenter
                (mask, _conf), = seg(image, [name])
                if mask is not None and np.asarray(mask).any():
                    q_img = masked_crop(image, mask)
                else:
                    note = f"'{name}' not found on the query image: the whole image was used"
                    print(f"medground: warning: {note}", file=sys.stderr)
            qi = embedder.embed_images([q_img])[0]
        if text and text.strip():
            qt = embedder.embed_texts([text.strip()])[0]
        if term:  # region-conditioned: that region's crops only
            f_img = f_txt = {**base, "kind": "region", "term": term}
        else:  # a "kind" filter given by the caller wins (e.g. kind=image: text -> image without reports)
            f_img = {"kind": "image", **base}
            f_txt = {"kind": ["image", "report"], **base}
        if qi is not None and qt is None:
            best = _best_per_image(store.search(qi, n, f_img))
            rows = sorted(best.values(), key=lambda r: -r["score"])
        elif qt is not None and qi is None:
            best = _best_per_image(store.search(qt, n, f_txt))
            rows = sorted(best.values(), key=lambda r: -r["score"])
        else:
            a = _best_per_image(store.search(qi, n, f_img))
            b = _best_per_image(store.search(qt, n, f_txt))
            cand = sorted(set(a) | set(b))
            a2 = _best_per_image(store.search(qi, 4 * len(cand) + 8, {**f_img, "image_id": cand}))
            b2 = _best_per_image(store.search(qt, 4 * len(cand) + 8, {**f_txt, "image_id": cand}))
            lo_a = min((r["score"] for r in a2.values()), default=0.0)
            lo_b = min((r["score"] for r in b2.values()), default=0.0)
            rows = []
            for iid in cand:
                ra, rb = a2.get(iid), b2.get(iid)
                sa = ra["score"] if ra else lo_a
                sb = rb["score"] if rb else lo_b
                r = dict(ra or rb)
                r["score_image"], r["score_text"] = round(float(sa), 6), round(float(sb), 6)
                r["score"] = alpha * sa + (1 - alpha) * sb
                r["match"] = "image+text"
                rows.append(r)
            rows.sort(key=lambda r: -r["score"])
        rows = rows[:k]
        # the report of each hit's image (for region/image hits) for display
        need = [r["image_id"] for r in rows if not r.get("report")]
        parents = {p["id"]: p for p in store.get(need)} if need else {}
        out = []
        for i, r in enumerate(rows, 1):
            p = parents.get(r["image_id"], {})
            row: dict[str, Any] = {
                "rank": i, "id": r["id"], "image_id": r["image_id"], "image": r["path"],
                "region": r.get("region", ""), "term": r.get("term", ""),
                "match": r.get("match") or r.get("kind", ""), "score": round(float(r["score"]), 6),
                "report": r.get("report") or p.get("report", ""), "modality": r.get("modality", ""),
                "patient": r.get("patient", ""),
            }
            try:
                row["label"] = json.loads(p.get("meta") or r.get("meta") or "{}").get("label", "")
            except json.JSONDecodeError:
                row["label"] = ""
            for key in ("score_image", "score_text"):
                if key in r:
                    row[key] = r[key]
            if note:
                row["note"] = note
            out.append(row)
        return out
    finally:
        if own:
            store.close()
