"""VQA-RAD validation of `medground ask` on two splits of trainset.json, written to benchmarks/results/vqa.md.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_vqa.py [--data ../shared/data/vqa-rad] [--seeds 0 1 2]

* split by IMAGE: 20% of the 314 images and all their questions held out; no held-out image is in the
  answer memory, so this measures the image side (heads, segmenter, image-weighted neighbours, priors).
* split by QUESTION: 20% of the questions held out at random; their images (and paraphrases asked about
  them) stay in the memory, which mirrors the official test split (same 315 images, new questions).
Each split is repeated for every seed (different held-out sets); the tables give the mean and the range.
Image features are cached in cache/vqa/ (one TinyViT pass per image); the segmenter answers (presence of
anatomy, cardiothoracic ratio) are cached in cache/vqa/segroute.json by question id.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PUBLISHED = [("MEVF+BAN (Nguyen et al. 2019)", 77.2, 49.2), ("LLaVA-Med (Li et al. 2023)", 84.2, None)]


def segment_factory(use: bool, cached_only: bool = False):
    """segment_fn per record: answers from cache/vqa/segroute.json, computed (and cached) when missing."""
    import medground
    from medground.vqa import segroute

    cache_p = ROOT / "cache" / "vqa" / "segroute.json"
    cache = json.loads(cache_p.read_text()) if cache_p.exists() else {}

    def factory(model, r, d, data_dir):
        if not use:
            return None

        def fn(question, qtype):
            from medground.vqa import _is_chest_xray

            chest = _is_chest_xray(model, {"features": d["features"]}, None)
            p = segroute.plan(question, chest)
            if p is None:
                return None
            k = str(r["qid"])
            if k not in cache and cached_only:
                return None
            if k not in cache:
                img = medground.load(Path(data_dir) / "images" / r["image_name"])
                res = segroute.run(img, p)
                from medground.vqa.text import normalize_answer

                cache[k] = {kk: v for kk, v in (res or {"answer": None}).items() if kk != "mask"}
                # what segmenter_section scores the routes with
                cache[k].update(question=question, gold=normalize_answer(r["answer"]), image=r["image_name"])
                cache_p.write_text(json.dumps(cache, indent=0))
            c = dict(cache[k])
            if not c.get("answer"):
                return None
            if c.get("cardiothoracic_ratio") is not None:  # threshold fit on this split's train questions
                thr = model.state.get("ctr_threshold", segroute.CTR_THRESHOLD)
                big = float(c["cardiothoracic_ratio"]) > thr
                c["answer"] = "yes" if big == p["ask_enlarged"] else "no"
            return {kk: v for kk, v in c.items() if kk in ("answer", "confidence", "route", "region",
                                                           "cardiothoracic_ratio")}
        return fn

    return factory


def ctr_threshold_from_cache(records: list[dict]) -> float:
    """Fit the cardiothoracic-ratio cut on the cached segmenter answers of these (training) questions."""
    from medground.vqa import segroute
    from medground.vqa.text import normalize_answer

    cache_p = ROOT / "cache" / "vqa" / "segroute.json"
    cache = json.loads(cache_p.read_text()) if cache_p.exists() else {}
    rows = []
    for r in records:
        c = cache.get(str(r["qid"]))
        p = segroute.plan(r["question"], True)
        if c and c.get("cardiothoracic_ratio") is not None and p and p["kind"] == "ctr":
            rows.append({"cardiothoracic_ratio": c["cardiothoracic_ratio"], "ask_enlarged": p["ask_enlarged"],
                         "gold": normalize_answer(r["answer"])})
    return segroute.fit_ctr_threshold(rows)


def segmenter_section() -> list[str]:
    """Accuracy of the segmenter routes on every train question they apply to (they are not trained on
    VQA-RAD, except the cardiothoracic-ratio cut, shown both at the textbook 0.5 and fit on all)."""
    from medground.vqa import segroute

    cache_p = ROOT / "cache" / "vqa" / "segroute.json"
    if not cache_p.exists():
        return []
    cache = json.loads(cache_p.read_text())
    ctr, pres, failed = [], [], 0
    for c in cache.values():
        if c.get("cardiothoracic_ratio") is not None:
            p = segroute.plan(c["question"], True)
            ctr.append({"cardiothoracic_ratio": c["cardiothoracic_ratio"], "ask_enlarged": p["ask_enlarged"],
                        "gold": c["gold"], "image": c["image"]})
        elif str(c.get("route", "")).endswith("presence"):
            pres.append(c["answer"] == c["gold"])
        else:
            failed += 1
    if not ctr:
        return []
    fit = segroute.fit_ctr_threshold(ctr)

    def acc(thr):
        return 100 * np.mean([((r["cardiothoracic_ratio"] > thr) == r["ask_enlarged"]) == (r["gold"] == "yes")
                              for r in ctr])
    n_img = len({r["image"] for r in ctr})
    return ["## Segmenter routes on the questions they answered (cache/vqa/segroute.json)", "",
            "| route | questions | images | accuracy % |", "|---|---:|---:|---:|",
            f"| heart size from the cardiothoracic ratio, cut 0.5 (textbook) | {len(ctr)} | {n_img} | {acc(0.5):.1f} |",
            f"| heart size, cut {fit:.3f} fit on these questions (in-sample; the split tables fit it on each "
            f"split's training part) | {len(ctr)} | {n_img} | {acc(fit):.1f} |",
            f"| presence of an organ the grounding head knows | {len(pres)} | – | {100 * np.mean(pres):.1f} |", "",
            f"{failed} questions got no segmenter answer (a heart or lung mask came back empty) and fell through "
            "to the other routes. " + ("Our heart masks run smaller than the radiologist's cardiac silhouette, "
                                       "hence the lower cut." if fit < 0.47 else
                                       "The fitted cut is close to the textbook 0.5: the heart masks are not "
                                       "biased small."), ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "vqa-rad"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-segmenter", action="store_true")
    ap.add_argument("--seg-cached-only", action="store_true", help="use only segmenter answers already cached")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vqa.md"))
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from medground.vqa.cache import build_feature_cache
    from medground.vqa.model import VQAModel
    from medground.vqa.text import TYPE_NAMES, normalize_answer, primary_type
    from medground.vqa.train import CACHE, load_records, question_embeddings, split

    t0 = time.time()
    records = load_records(a.data)
    images = build_feature_cache(Path(a.data) / "images", ROOT / CACHE / "features.npz",
                                 names=sorted({r["image_name"] for r in records}))
    qemb = question_embeddings([r["question"] for r in records], ROOT / CACHE)
    factory = segment_factory(not a.no_segmenter, a.seg_cached_only)
    table: dict = defaultdict(lambda: defaultdict(list))  # split -> key -> [acc per seed]
    counts: dict = defaultdict(dict)
    for how in ("image", "question"):
        for seed in a.seeds:
            tr, va = split(records, how, seed=seed)
            model = VQAModel().fit([records[i] for i in tr], images, qemb[tr])
            model.state["ctr_threshold"] = ctr_threshold_from_cache([records[i] for i in tr])
            res = defaultdict(lambda: [0, 0])
            for i in va:
                r = records[i]
                d = images[r["image_name"]]
                fn = factory(model, r, d, a.data)
                out = model.answer(r["question"], qemb[i], d["features"], key=d["key"], thumb=d["thumb"],
                                   segment_fn=fn)
                ok = normalize_answer(out["answer"]) == normalize_answer(r["answer"])
                kind = "closed" if r["answer_type"] == "CLOSED" else "open"
                qt = TYPE_NAMES[primary_type(r["question_type"])]
                route = out["route"].split(":")[0] + (":" + out["route"].split(":")[1]
                                                      if out["route"].startswith("segmenter") else "")
                for key in (kind, "all", f"{kind} | {qt}", f"{kind} | route {route}"):
                    res[key][0] += ok
                    res[key][1] += 1
            # ablation: the question alone (no image features, no memory, no segmenter)
            for i in va:
                r = records[i]
                out = model.answer(r["question"], qemb[i], None, use_memory=False)
                ok = normalize_answer(out["answer"]) == normalize_answer(r["answer"])
                kind = "closed" if r["answer_type"] == "CLOSED" else "open"
                res[f"noimg:{kind}"][0] += ok
                res[f"noimg:{kind}"][1] += 1
            for key, (c, n) in res.items():
                table[how][key].append(c / n)
                counts[how].setdefault(key, []).append(n)
            print(f"by {how} seed {seed}: closed {res['closed'][0] / res['closed'][1]:.3f} "
                  f"open {res['open'][0] / res['open'][1]:.3f}", flush=True)
    write_md(a, table, counts, time.time() - t0)


def _fmt(v: list[float]) -> str:
    m = 100 * float(np.mean(v))
    if len(v) > 1:
        return f"{m:.1f} ({100 * min(v):.1f}–{100 * max(v):.1f})"
    return f"{m:.1f}"


def write_md(a, table, counts, secs) -> None:
    seeds = " ".join(str(s) for s in a.seeds)
    L = ["# VQA-RAD validation (`medground ask`)", "",
         f"Command: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_vqa.py --seeds {seeds}`"
         f"{' --no-segmenter' if a.no_segmenter else ''} ({secs / 60:.1f} min with cached features).", "",
         "Data: VQA-RAD `trainset.json` (3,064 QA on 314 images). Two validation splits, each held out 20% and "
         f"repeated for seeds {seeds} (mean, and min–max over seeds); the model is refit on the rest each time. "
         "Accuracy is exact match after VQA-RAD normalisation (lower case, punctuation stripped); CLOSED/OPEN "
         "are the dataset's answer types.", "",
         "| | closed % | open % | overall % |", "|---|---:|---:|---:|"]
    for how, label in (("image", "ours, split by image (unseen images: the image side)"),
                       ("question", "ours, split by question (seen images, new questions: like the official test)")):
        t = table[how]
        L.append(f"| {label} | {_fmt(t['closed'])} | {_fmt(t['open'])} | {_fmt(t['all'])} |")
    for how in ("image", "question"):
        t = table[how]
        L.append(f"| ablation, split by {how}: question only (no image, no memory, no segmenter) | "
                 f"{_fmt(t['noimg:closed'])} | {_fmt(t['noimg:open'])} | – |")
    for name, c, o in PUBLISHED:
        L.append(f"| {name}, official test split | {c} | {o if o is not None else '–'} | – |")
    L += ["", "Published figures are on the official test split (451 QA, held out of this repository); ours are "
          "on our validation splits of the train set, so they are not the same measurement. The official test "
          "questions are asked about the same 315 images as the train set: the split by question is the closer "
          "proxy for it. Five hyper-parameters (memory copy threshold 0.8, the yes/no mixing weights, the same-image "
          "vote temperature and gate) were chosen on these same splits, so both rows are somewhat optimistic.", ""]
    for how in ("image", "question"):
        t, n = table[how], counts[how]
        L += [f"## Split by {how}: per question type and per route", "",
              "| answer type | group | n (per seed) | accuracy % |", "|---|---|---:|---:|"]
        keys = sorted(k for k in t if " | " in k and not k.startswith("noimg"))
        for k in keys:
            kind, grp = k.split(" | ")
            L.append(f"| {kind} | {grp} | {int(np.mean(n[k]))} | {_fmt(t[k])} |")
        L.append("")
    L += ["Routes: `memory` copies the answer of a near-identical train question on the same image (the picture "
          "recognised by its pixels or a near-duplicate thumbnail); `memory-vote` mixes close paraphrases on the "
          "same image into the yes/no model; `segmenter:ctr` answers heart-size questions on chest radiographs "
          "from the cardiothoracic ratio of the segmented heart and lungs (enlarged above a cut fit on the training "
          "questions, see below), `segmenter:presence` "
          "answers 'is <organ> visible' from the grounding head; `image-head` answers modality/plane/organ yes/no "
          "questions from linear heads on pooled TinyViT features (labels mined from the train answers); "
          "`question-image-model` is a linear yes/no model on the MiniLM question embedding and the image; "
          "`knn`/`knn-memory`/`image-head+knn` score the open answers of similar train questions by question "
          "similarity × image similarity (× head probability for modality/plane/organ).", ""]
    L += segmenter_section()
    Path(a.out).write_text("\n".join(L))
    summary = {how: {k: round(100 * float(np.mean(table[how][k])), 1) for k in ("closed", "open", "all")}
               for how in ("image", "question")}
    summary["seeds"] = list(a.seeds)
    (ROOT / "cache" / "vqa" / "bench.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
