"""Fit and validate the VQA model on VQA-RAD's train set (``../shared/data/vqa-rad``).

    python -m medground.vqa.train --data ../shared/data/vqa-rad            # both validation splits
    python -m medground.vqa.train --data ../shared/data/vqa-rad --ship     # fit on all, write the weights
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from medground.vqa.text import TYPE_NAMES, normalize_answer, primary_type

CACHE = Path("cache/vqa")


def load_records(data_dir: str | Path) -> list[dict]:
    recs = json.loads((Path(data_dir) / "trainset.json").read_text())
    for r in recs:
        r["answer_type"] = str(r["answer_type"]).strip().upper()
    return recs


def question_embeddings(questions: list[str], cache_dir: Path = CACHE) -> np.ndarray:
    from medground.models.text import text_encoder

    h = hashlib.sha256("\n".join(questions).encode()).hexdigest()[:16]
    p = cache_dir / f"qemb_{h}.npy"
    if p.exists():
        return np.load(p)
    e = text_encoder().encode(list(questions)).numpy().astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(p, e)
    return e


def split(records: list[dict], how: str, frac: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    if how == "image":
        names = sorted({r["image_name"] for r in records})
        val = set(rng.choice(names, size=int(round(frac * len(names))), replace=False).tolist())
        va = [i for i, r in enumerate(records) if r["image_name"] in val]
    else:
        va = sorted(rng.choice(len(records), size=int(round(frac * len(records))), replace=False).tolist())
    vs = set(va)
    return [i for i in range(len(records)) if i not in vs], va


def evaluate(model, records, qemb, images, idx, use_memory=True, segment=None) -> dict:
    """Accuracy (closed / open / per question type / per route) of ``model`` on records[idx]."""
    res = defaultdict(lambda: [0, 0])
    rows = []
    for i in idx:
        r = records[i]
        d = images[r["image_name"]]
        seg_fn = segment(r, d) if segment else None
        out = model.answer(r["question"], qemb[i], d["features"], key=d["key"], thumb=d["thumb"],
                           use_memory=use_memory, segment_fn=seg_fn)
        ok = normalize_answer(out["answer"]) == normalize_answer(r["answer"])
        kind = "closed" if r["answer_type"] == "CLOSED" else "open"
        for key in (kind, "all", f"{kind}:{TYPE_NAMES[primary_type(r['question_type'])]}",
                    f"route:{out['route'].split(':')[0]}", f"{kind}:route:{out['route'].split(':')[0]}"):
            res[key][0] += ok
            res[key][1] += 1
        rows.append({"qid": r.get("qid"), "question": r["question"], "gold": r["answer"], "pred": out["answer"],
                     "route": out["route"], "type": out["question_type"], "ok": bool(ok)})
    acc = {k: {"acc": v[0] / max(v[1], 1), "n": v[1]} for k, v in sorted(res.items())}
    return {"acc": acc, "rows": rows}


def run_splits(data_dir: str | Path, seeds=(0,), verbose=True) -> dict:
    from medground.vqa.cache import build_feature_cache
    from medground.vqa.model import VQAModel

    records = load_records(data_dir)
    images = build_feature_cache(Path(data_dir) / "images", CACHE / "features.npz",
                                 names=sorted({r["image_name"] for r in records}))
    qemb = question_embeddings([r["question"] for r in records])
    out = {}
    for how in ("image", "question"):
        for seed in seeds:
            tr, va = split(records, how, seed=seed)
            model = VQAModel().fit([records[i] for i in tr], images, qemb[tr])
            ev = evaluate(model, records, qemb, images, va)
            out[f"{how}:{seed}"] = ev
            if verbose:
                a = ev["acc"]
                print(f"split by {how} seed {seed}: closed {a['closed']['acc']:.3f} (n={a['closed']['n']}) "
                      f"open {a['open']['acc']:.3f} (n={a['open']['n']})")
    return out


def ctr_threshold(records: list[dict]) -> float:
    """Cardiothoracic-ratio cut fit on the segmenter answers cached in cache/vqa/segroute.json (written by
    benchmarks/bench_vqa.py); 0.5 when none are cached."""
    from medground.vqa import segroute

    p = CACHE / "segroute.json"
    cache = json.loads(p.read_text()) if p.exists() else {}
    rows = []
    for r in records:
        c = cache.get(str(r.get("qid")))
        pl = segroute.plan(r["question"], True)
        if c and c.get("cardiothoracic_ratio") is not None and pl and pl["kind"] == "ctr":
            rows.append({"cardiothoracic_ratio": c["cardiothoracic_ratio"], "ask_enlarged": pl["ask_enlarged"],
                         "gold": normalize_answer(r["answer"])})
    return segroute.fit_ctr_threshold(rows)


def complete_descriptions(images: dict, records: list[dict], image_dir: Path) -> dict:
    """Images without cached TinyViT features still get their identity (pixel key, thumbnail) so the
    memory covers them; their features are the mean of the cached images of the same organ."""
    import medground
    from medground.vqa.features import content_key, picture, thumbnail

    organ = {r["image_name"]: r.get("image_organ") for r in records}
    out = dict(images)
    for n in sorted({r["image_name"] for r in records} - set(images)):
        img = medground.load(Path(image_dir) / n)
        same = [d["features"] for k, d in images.items() if organ.get(k) == organ[n]] or \
            [d["features"] for d in images.values()]
        out[n] = {"key": content_key(img), "thumb": thumbnail(picture(img)),
                  "features": np.mean(same, axis=0).astype(np.float32), "imputed": True}
    return out


def ship(data_dir: str | Path, out: str | Path, cached_only: bool = False) -> Path:
    from medground.vqa.cache import build_feature_cache, load_feature_cache
    from medground.vqa.model import VQAModel

    records = load_records(data_dir)
    if cached_only:
        images = complete_descriptions(load_feature_cache(CACHE / "features.npz"), records,
                                       Path(data_dir) / "images")
    else:
        images = build_feature_cache(Path(data_dir) / "images", CACHE / "features.npz",
                                     names=sorted({r["image_name"] for r in records}))
    qemb = question_embeddings([r["question"] for r in records])
    model = VQAModel().fit(records, images, qemb)
    model.state["ctr_threshold"] = ctr_threshold(records)
    meta = {"data": "VQA-RAD trainset.json (3,064 QA, 314 images), CC0 1.0", "features": "pooled multi-scale "
            "LiteMedSAM TinyViT + cues", "text": "all-MiniLM-L6-v2"}
    model.save(out, meta=meta)
    card = {
        "name": "medground-vqa-v1",
        "architecture": "question-type router (rules + multinomial logistic regression on all-MiniLM-L6-v2 "
                        "question embeddings), image heads (logistic regression on a 64-d PCA of pooled "
                        "multi-scale LiteMedSAM TinyViT features + intensity cues) for modality / plane / organ, "
                        "a linear yes/no model, a train-QA memory (image content hash + 24x24 thumbnail, question "
                        "embeddings, answers) and question x image nearest neighbours for open answers",
        "data": meta["data"], "licence": "VQA-RAD: CC0 1.0; LiteMedSAM and all-MiniLM-L6-v2: Apache-2.0",
        "n_questions": len(records), "n_images": len(model.state["names"]),
        "n_images_features_imputed": sum(1 for d in images.values() if d.get("imputed")),
        "mined_image_labels": model.state["n_head_labels"],
        "ctr_threshold": round(float(model.state["ctr_threshold"]), 4),
        "validation": "benchmarks/results/vqa.md (splits by image and by question of trainset.json)",
    }
    bench = CACHE / "bench.json"
    if bench.exists():
        card["validation_scores"] = json.loads(bench.read_text())
    Path(out).with_name("vqa.card.json").write_text(json.dumps(card, indent=2))
    return Path(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/vqa-rad")
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--out", default="src/medground/models/weights/vqa.pt")
    ap.add_argument("--cached-only", action="store_true", help="do not compute missing image features")
    a = ap.parse_args()
    if a.ship:
        print(ship(a.data, a.out, cached_only=a.cached_only))
    else:
        run_splits(a.data)
