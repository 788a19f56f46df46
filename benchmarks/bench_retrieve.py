"""Retrieval benchmark (not a CI test).

``--part recall``: Recall@1/5/10 on the held-out patients of covid-cxr (the classifier's own held-out rule:
md5("covid-cxr:<patientid>") % 5 == 0, so the embedder's split run never saw them). The gallery is those
held-out images, indexed with ``medground.retrieve.index_paths`` (whole image + "lungs" masked crop from
the text-prompted segmenter; clinical notes as reports). A hit at k = at least one of the top k has the
query's finding (first label of ``finding``: "COVID-19, ARDS" -> "COVID-19"); images of the query's own
patient are excluded. Queries:
  * image -> image: every held-out image (whole image; and its "lungs" crop against lungs crops);
  * text -> image: every held-out clinical note (images only, no reports in the gallery), and one phrase
    per finding ("chest x-ray showing <finding>", no patient exclusion); also notes -> images + reports.
Beside each figure: the chance level (random ranking, per query 1 - C(n-r, k) / C(n, k), averaged).

``--part scale``: synthetic unit vectors (numpy, D = the embedder's dimension, around 1,000 random centres): ingest throughput and
top-10 query latency at 10k and 1M vectors for each back end (LanceDB exact + IVF-PQ, SQLite + numpy exact,
PostgreSQL + pgvector exact + IVFFlat/HNSW on a throwaway local server), with recall@10 of the approximate
indexes against exact search.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_retrieve.py --part recall
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_retrieve.py --part scale --sizes 10000,1000000
Results (JSON) go to cache/retrieve/; markdown tables are printed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / "cache" / "retrieve"


# --------------------------------------------------------------------------- recall on covid-cxr
def covid_rows(shared: Path) -> list[dict]:
    root = shared / "covid-cxr"
    with open(root / "metadata.csv", encoding="latin-1") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        p = root / r["image"]
        if not p.exists():
            continue
        pid = r["patientid"]
        held = int(hashlib.md5(f"covid-cxr:{pid}".encode()).hexdigest(), 16) % 5 == 0
        out.append({"path": str(p.resolve()), "patient": f"covid-{pid}", "finding": r["finding"].split(",")[0].strip(),
                    "modality": r["modality"], "notes": (r.get("clinical_notes") or "").strip(), "held_out": held})
    return out


def chance_hit(n: int, r: int, k: int) -> float:
    """P(at least one of r relevant items among the top k of a random ranking of n)."""
    if r <= 0:
        return 0.0
    k = min(k, n)
    if n - r < k:
        return 1.0
    return 1.0 - math.comb(n - r, k) / math.comb(n, k)


def _summarise(hits: list[list[bool]], chances: list[list[float]], ks=(1, 5, 10)) -> dict:
    if not hits:
        return {"n": 0}
    h = np.array(hits, float)
    c = np.array(chances, float)
    return {"n": len(hits), **{f"R@{k}": round(float(h[:, i].mean()), 3) for i, k in enumerate(ks)},
            **{f"chance@{k}": round(float(c[:, i].mean()), 3) for i, k in enumerate(ks)}}


def cached_segmenter(image, prompts):
    """The default text-prompted segmenter, its masks cached under cache/retrieve/masks/ (by pixel hash), so
    re-running the benchmark with another embedder does not segment again."""
    from medground.retrieve.index import default_segmenter

    key = hashlib.sha1(np.ascontiguousarray(image.data).tobytes() + "|".join(prompts).encode()).hexdigest()[:20]
    f = CACHE / "masks" / f"{key}.npz"
    if f.exists():
        z = np.load(f)
        return [(z[f"m{i}"], float(z[f"c{i}"])) for i in range(len(prompts))]
    out = default_segmenter(image, prompts)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(f, **{f"m{i}": m for i, (m, _) in enumerate(out)},
                        **{f"c{i}": np.float32(c) for i, (_, c) in enumerate(out)})
    return out


def part_recall(shared: Path, db: str, regions: str) -> dict:
    import medground
    from medground.retrieve import index_paths, open_store, search
    from medground.retrieve.embedder import default_embedder

    rows = [r for r in covid_rows(shared) if r["held_out"]]
    by_path = {r["path"]: r for r in rows}
    CACHE.mkdir(parents=True, exist_ok=True)
    rep = CACHE / "covid_heldout_reports.csv"
    with open(rep, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "report", "patient", "finding"])
        for r in rows:
            w.writerow([r["path"], r["notes"], r["patient"], r["finding"]])
    emb = default_embedder()
    t0 = time.perf_counter()
    summ = index_paths([r["path"] for r in rows], db, reports=rep, regions=regions, embedder=emb,
                       segmenter=cached_segmenter, progress=True)
    t_index = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in summ.items() if k != "failed"}), file=sys.stderr)
    store = open_store(db, create=False)
    imgs = store.search(np.ones(store.dim), k=10_000, filters={"kind": "image"})
    meta = {r["image_id"]: by_path[r["path"]] for r in imgs if r["path"] in by_path}
    ids = list(meta)
    finding_of = {i: meta[i]["finding"] for i in ids}
    patient_of = {i: meta[i]["patient"] for i in ids}
    ks = (1, 5, 10)

    def judge(res_ids, q_find, q_pat, gallery):
        n = sum(1 for g in gallery if patient_of[g] != q_pat) if q_pat else len(gallery)
        r = sum(1 for g in gallery if finding_of[g] == q_find and (not q_pat or patient_of[g] != q_pat))
        hit = [any(finding_of.get(x) == q_find for x in res_ids[:k]) for k in ks]
        return hit, [chance_hit(n, r, k) for k in ks], r

    def add(name, hit, ch, r, non_covid):
        if r == 0:  # nothing relevant left once the query's patient is excluded: not a usable query
            skipped[name] = skipped.get(name, 0) + 1
            return
        for key in (name, name + " (non-COVID queries)") if non_covid else (name,):
            res.setdefault(key, ([], []))
            res[key][0].append(hit)
            res[key][1].append(ch)

    out: dict = {"gallery_images": len(ids), "patients": len(set(patient_of.values())),
                 "findings": {f: sum(1 for i in ids if finding_of[i] == f) for f in sorted(set(finding_of.values()))},
                 "embedder": emb.name, "index_seconds": round(t_index, 1), "index_summary": {
                     k: v for k, v in summ.items() if k != "failed"}, "failed": len(summ["failed"])}
    res: dict[str, tuple[list, list]] = {}
    skipped: dict[str, int] = {}

    # image -> image, whole image (through search(): the query image is embedded again)
    lat = []
    for iid in ids:
        q = meta[iid]
        t = time.perf_counter()
        hits = search(store, image=medground.load(q["path"]), k=10, embedder=emb,
                      filters={"patient": ("!=", q["patient"])})
        lat.append(time.perf_counter() - t)
        hit, ch, r = judge([h["image_id"] for h in hits], q["finding"], q["patient"], ids)
        add("image -> image (whole)", hit, ch, r, q["finding"] != "COVID-19")
    out["image_query_latency_ms_median"] = round(1000 * statistics.median(lat), 1)
    # image -> image, lungs crop vs lungs crops (the query's crop vector as indexed)
    terms = store.distinct("term", {"kind": "region"})
    for term in terms:
        crops = {r["image_id"]: r for r in store.search(np.ones(store.dim), k=10_000,
                                                          filters={"kind": "region", "term": term})}
        vecs = {r["image_id"]: r["vector"] for r in store.get([c["id"] for c in crops.values()], vectors=True)}
        gal = [i for i in ids if i in crops]
        for iid in gal:
            q = meta[iid]
            hits = store.search(vecs[iid], k=10, filters={"kind": "region", "term": term,
                                                           "patient": ("!=", q["patient"])})
            hit, ch, r = judge([h["image_id"] for h in hits], q["finding"], q["patient"], gal)
            add(f"image -> image ({term} crop, {len(gal)} images with it)", hit, ch, r, q["finding"] != "COVID-19")
    # text -> image: notes (images only / images + reports), finding phrases
    for iid in ids:
        q = meta[iid]
        if not q["notes"]:
            continue
        for kind, name in ((["image"], "text (clinical note) -> image"),
                           (["image", "report"], "text (clinical note) -> image or its report")):
            hits = search(store, text=q["notes"], k=10, embedder=emb,
                          filters={"kind": kind, "patient": ("!=", q["patient"])})
            hit, ch, r = judge([h["image_id"] for h in hits], q["finding"], q["patient"], ids)
            add(name, hit, ch, r, q["finding"] != "COVID-19")
    for f in sorted(set(finding_of.values())):
        phrase = f"chest x-ray showing {f.lower() if f != 'No Finding' else 'no finding'}"
        hits = search(store, text=phrase, k=10, embedder=emb, filters={"kind": "image"})
        hit, ch, r = judge([h["image_id"] for h in hits], f, None, ids)
        add("text (finding phrase) -> image", hit, ch, r, f != "COVID-19")
    out["results"] = {k: _summarise(*v) for k, v in res.items()}
    out["queries_without_relevant_items_skipped"] = skipped
    store.close()
    return out


# --------------------------------------------------------------------------- recall on VQA-RAD (body region)
def part_organ(shared: Path, db: str) -> dict:
    """Held-out VQA-RAD images (md5("vqa-rad:<image>") % 5 == 0, the classifier's rule); relevant = same
    image_organ (HEAD / CHEST / ABD). Image -> image (the query itself excluded) and text -> image with one
    phrase per organ."""
    import medground
    from medground.retrieve import index_paths, open_store, search
    from medground.retrieve.embedder import default_embedder

    d = json.loads((shared / "vqa-rad" / "trainset.json").read_text())
    organ = {x["image_name"]: x["image_organ"].strip().upper() for x in d}
    held = sorted(n for n in organ if int(hashlib.md5(f"vqa-rad:{n}".encode()).hexdigest(), 16) % 5 == 0
                  and (shared / "vqa-rad" / "images" / n).exists())
    paths = {str((shared / "vqa-rad" / "images" / n).resolve()): n for n in held}
    emb = default_embedder()
    summ = index_paths(list(paths), db, regions="none", embedder=emb, progress=True)
    store = open_store(db, create=False)
    recs = store.search(np.ones(store.dim), k=10_000, filters={"kind": "image"})
    org = {r["image_id"]: organ[paths[r["path"]]] for r in recs if r["path"] in paths}
    ids = list(org)
    ks = (1, 5, 10)
    res: dict[str, tuple[list, list]] = {}
    for r in recs:
        iid = r["image_id"]
        hits = [h for h in search(store, image=medground.load(r["path"]), k=11, embedder=emb) if h["image_id"] != iid]
        rel = sum(1 for g in ids if g != iid and org[g] == org[iid])
        res.setdefault("image -> image (same body region)", ([], []))
        res["image -> image (same body region)"][0].append([any(org[h["image_id"]] == org[iid] for h in hits[:k])
                                                            for k in ks])
        res["image -> image (same body region)"][1].append([chance_hit(len(ids) - 1, rel, k) for k in ks])
    phrases = {"HEAD": "CT or MRI of the head and brain", "CHEST": "chest X-ray or chest CT of the lungs",
               "ABD": "abdominal CT or MRI of the abdomen"}
    for o, ph in phrases.items():
        hits = search(store, text=ph, k=10, embedder=emb, filters={"kind": "image"})
        rel = sum(1 for g in ids if org[g] == o)
        res.setdefault("text (body-region phrase) -> image", ([], []))
        res["text (body-region phrase) -> image"][0].append([any(org[h["image_id"]] == o for h in hits[:k])
                                                             for k in ks])
        res["text (body-region phrase) -> image"][1].append([chance_hit(len(ids), rel, k) for k in ks])
        # precision of the top 10 too (every phrase has relevant items in all top lists here)
        res.setdefault("text (body-region phrase) -> image: precision@10", ([], []))
        p10 = float(np.mean([org[h["image_id"]] == o for h in hits[:10]]))
        res["text (body-region phrase) -> image: precision@10"][0].append([p10] * 3)
        res["text (body-region phrase) -> image: precision@10"][1].append([rel / len(ids)] * 3)
    store.close()
    return {"gallery_images": len(ids), "organs": {o: sum(1 for g in ids if org[g] == o) for o in phrases},
            "embedder": emb.name, "index_seconds": summ["seconds"],
            "results": {k: _summarise(*v) for k, v in res.items()}}


# --------------------------------------------------------------------------- scale
_CENTRES: dict[int, np.ndarray] = {}


def _unit(rng, n, d, clusters: int = 1000, spread: float = 0.6):
    """Unit vectors around ``clusters`` random centres (cosine to the centre ~0.85), like embeddings of
    many similar cases; ``clusters=0``: uniform on the sphere (the hardest case for approximate search)."""
    v = rng.standard_normal((n, d)).astype(np.float32)
    if clusters:
        if d not in _CENTRES:
            c = np.random.default_rng(123).standard_normal((clusters, d)).astype(np.float32)
            _CENTRES[d] = c / np.linalg.norm(c, axis=1, keepdims=True)
        v = _CENTRES[d][rng.integers(0, clusters, n)] + spread * v / np.sqrt(d)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _recs(lo, hi):
    return [{"id": f"v{i}", "kind": "region" if i % 4 else "image", "image_id": f"i{i // 4}",
             "term": "lung" if i % 4 == 1 else ("heart" if i % 4 == 2 else ""), "path": f"/data/{i // 4}.png"}
            for i in range(lo, hi)]


def _lat(store, queries, k=10, filters=None):
    ts, res = [], []
    for q in queries:
        t = time.perf_counter()
        r = store.search(q, k=k, filters=filters)
        ts.append(1000 * (time.perf_counter() - t))
        res.append([x["id"] for x in r])
    return {"median_ms": round(statistics.median(ts), 2), "p95_ms": round(float(np.percentile(ts, 95)), 2)}, res


def _recall(approx, exact):
    return round(float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(approx, exact)])), 3)


def scale_one(backend: str, uri: str, n: int, d: int, nq: int, batch: int, index: bool) -> dict:
    from medground.retrieve.store import open_store

    rng = np.random.default_rng(0)
    st = open_store(uri, backend=backend)
    t = time.perf_counter()
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        st.add(_recs(lo, hi), _unit(rng, hi - lo, d), skip_existing=False)
    t_ing = time.perf_counter() - t
    assert st.count() == n
    print(f"[{backend} {n}] ingested in {t_ing:.1f} s", file=sys.stderr, flush=True)
    queries = _unit(np.random.default_rng(1), nq, d)
    out = {"backend": backend, "n": n, "dim": d, "ingest_s": round(t_ing, 1), "ingest_per_s": round(n / t_ing)}
    _lat(st, queries[:2])  # warm-up (loads the matrix for sqlite)
    out["exact"], exact = _lat(st, queries)
    out["exact_filtered"], _ = _lat(st, queries, filters={"kind": "region", "term": "lung"})
    print(f"[{backend} {n}] exact queries done: {out['exact']}", file=sys.stderr, flush=True)
    if index:
        t = time.perf_counter()
        if backend == "lance":
            parts = min(256, max(16, int(math.sqrt(n))))  # k-means cost grows with lists x samples: bounded
            st.build_index(num_partitions=parts, num_sub_vectors=d // 8, nprobes=20, refine=10)
            name = f"IVF-PQ ({parts} lists, {d // 8} sub-vectors, nprobes 20, refine x10)"
        elif backend == "pgvector":
            if n <= 100_000:
                st.build_index("hnsw", ef_search=100)
                name = "HNSW (m 16, ef_construction 64, ef_search 100)"
            else:
                lists = min(500, max(16, int(math.sqrt(n))))  # bounded build time on this CPU
                st.con.execute("SET maintenance_work_mem = '1GB'")
                st.build_index("ivfflat", lists=lists, probes=10)
                name = f"IVFFlat ({lists} lists, probes 10)"
        else:
            name = None
        if name:
            out["index"] = {"name": name, "build_s": round(time.perf_counter() - t, 1)}
            _lat(st, queries[:2])
            lat, approx = _lat(st, queries)
            out["index"].update(lat)
            out["index"]["recall@10_vs_exact"] = _recall(approx, exact)
    st.close()
    return out


def lance_sweep(n: int, d: int, nq: int, nprobes: list[int], refine: list[int]) -> list[dict]:
    """LanceDB IVF-PQ at n vectors: recall@10 against exact numpy search and latency per nprobes/refine."""
    from medground.retrieve.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="medground-bench-", dir=str(CACHE)))
    try:
        rng = np.random.default_rng(0)
        st = open_store(str(tmp / "s.lance"), backend="lance")
        allv = np.empty((n, d), np.float32)
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            allv[lo:hi] = _unit(rng, hi - lo, d)
            st.add(_recs(lo, hi), allv[lo:hi], skip_existing=False)
        queries = _unit(np.random.default_rng(1), nq, d)
        exact = [[f"v{i}" for i in np.argsort(-(allv @ q))[:10]] for q in queries]
        parts = min(256, max(16, int(math.sqrt(n))))
        t = time.perf_counter()
        st.build_index(num_partitions=parts, num_sub_vectors=d // 8)
        build = time.perf_counter() - t
        out = []
        for npb in nprobes:
            for rf in refine:
                st._nprobes = npb
                orig = st._search

                def _s(q, k, filters, _rf=rf):
                    s = st.table.search(q.astype(np.float32), vector_column_name="vector").metric("cosine")
                    s = s.nprobes(st._nprobes).refine_factor(_rf)
                    rows = s.select(["id", "_distance"]).limit(k).to_arrow().to_pylist()
                    return [{"id": r["id"], "score": 1 - r["_distance"]} for r in rows]

                st._search = _s
                _lat(st, queries[:2])
                lat, approx = _lat(st, queries)
                st._search = orig
                r = {"n": n, "lists": parts, "build_s": round(build, 1), "nprobes": npb, "refine": rf, **lat,
                     "recall@10_vs_exact": _recall(approx, exact)}
                print(json.dumps(r), flush=True)
                out.append(r)
        st.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def part_scale(sizes: list[int], backends: list[str], d: int, nq: int) -> list[dict]:
    results = []
    for n in sizes:
        for b in backends:
            tmp = Path(tempfile.mkdtemp(prefix="medground-bench-", dir=str(CACHE)))
            t0 = time.perf_counter()
            try:
                if b == "pgvector":
                    from medground.retrieve.pg import local_server

                    with local_server() as uri:
                        r = scale_one(b, uri, n, d, nq, 10_000, True)
                else:
                    uri = str(tmp / ("s.sqlite" if b == "sqlite" else "s.lance"))
                    r = scale_one(b, uri, n, d, nq, 10_000 if b == "sqlite" else 100_000, b == "lance")
            except Exception as exc:  # noqa: BLE001 - report and go on
                r = {"backend": b, "n": n, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            r["total_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(r), flush=True)
            results.append(r)
    return results


def md_scale(results: list[dict]) -> str:
    lines = ["| back end | vectors | ingest (vectors/s) | exact top-10 median / p95 ms | filtered exact median ms | "
             "index | build s | indexed median / p95 ms | recall@10 vs exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['n']:,} | error: {r['error']} | | | | | | |")
            continue
        ix = r.get("index") or {}
        lines.append(f"| {r['backend']} | {r['n']:,} | {r['ingest_per_s']:,} | {r['exact']['median_ms']} / "
                     f"{r['exact']['p95_ms']} | {r['exact_filtered']['median_ms']} | {ix.get('name', '-')} | "
                     f"{ix.get('build_s', '-')} | "
                     + (f"{ix['median_ms']} / {ix['p95_ms']}" if ix else "-") + f" | {ix.get('recall@10_vs_exact', '-')} |")
    return "\n".join(lines)


def md_recall(out: dict) -> str:
    lines = ["| query -> gallery | queries | R@1 | R@5 | R@10 | chance @1 / @5 / @10 |", "|---|---|---|---|---|---|"]
    for name, s in out["results"].items():
        if not s.get("n"):
            continue
        lines.append(f"| {name} | {s['n']} | {s['R@1']} | {s['R@5']} | {s['R@10']} | "
                     f"{s['chance@1']} / {s['chance@5']} / {s['chance@10']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["recall", "organ", "scale", "lance-sweep"], required=True)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--db", default=str(CACHE / "bench_covid.db"))
    ap.add_argument("--regions", default="lungs")
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--backends", default="lance,sqlite,pgvector")
    ap.add_argument("--dim", type=int, default=0, help="vector size (default: the embedder's, 384)")
    ap.add_argument("--queries", type=int, default=50)
    a = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    if a.part == "recall":
        out = part_recall(Path(a.shared), a.db, a.regions)
        out["env"] = env
        (CACHE / "recall.json").write_text(json.dumps(out, indent=1))
        print(md_recall(out))
        print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=1))
    elif a.part == "lance-sweep":
        n = int(a.sizes.split(",")[-1])
        res = lance_sweep(n, a.dim or 384, a.queries, [20, 50, 100], [10, 50])
        (CACHE / f"lance_sweep_{n}.json").write_text(json.dumps({"env": env, "results": res}, indent=1))
    elif a.part == "organ":
        db = a.db if a.db != str(CACHE / "bench_covid.db") else str(CACHE / "bench_vqarad.db")
        out = part_organ(Path(a.shared), db)
        out["env"] = env
        (CACHE / "organ.json").write_text(json.dumps(out, indent=1))
        print(md_recall(out))
        print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=1))
    else:
        d = a.dim
        if not d:
            try:
                from medground.embed import EMBED_DIM as d
            except ImportError:
                d = 384
        res = part_scale([int(s) for s in a.sizes.split(",")], a.backends.split(","), d, a.queries)
        name = CACHE / f"scale_{a.sizes.replace(',', '_')}_{a.backends.replace(',', '_')}.json"
        name.write_text(json.dumps({"env": env, "results": res}, indent=1))
        print(md_scale(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
