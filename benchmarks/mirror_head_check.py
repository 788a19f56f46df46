"""Can the organ head tell a slice from its left-right mirror? (the 2D orientation check's open problem)

    python benchmarks/mirror_head_check.py --split val --datasets btcv-ct,chaos-mr,ct-lesions --emb-cache cache/tune_emb

Every 2nd labelled slice of each case, canonical and mirrored (columns reversed), goes through LiteMedSAM and the organ
head with 13 terms; three scores of anatomical plausibility are compared between the two: the summed presence,
a side score (presence x which side of the picture the term's heat lies on, + for the patient's right-sided
structures on the picture's left, - for left-sided ones), and both. "canonical wins" = the share of slices whose
canonical picture scores higher: 0.5 is a coin. Writes ``--out`` (.json with every slice's outputs).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

SIDE = {"liver": 1, "gallbladder": 1, "inferior_vena_cava": 1, "kidney_right": 1, "lung_right": 1,
        "spleen": -1, "stomach": -1, "kidney_left": -1, "aorta": -1, "heart": -1, "lung_left": -1}
TERMS = ["liver", "spleen", "stomach", "gallbladder", "aorta", "inferior_vena_cava", "kidney_left", "kidney_right",
         "heart", "esophagus", "pancreas", "lung_left", "lung_right"]


def main(argv=None):
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--split", default="val")
    ap.add_argument("--datasets", default="btcv-ct,chaos-mr,ct-lesions")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/mirror_head_check.json")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import CachedEncoder

    import medground
    from medground.data import list_cases, load_case
    from medground.io.image import MedImage
    from medground.models import load_model
    from medground.models.grounding import load_grounding
    from medground.ontology import Ontology
    from medground.segment.predictor import SlicePredictor

    model = load_model("litemedsam")
    if a.emb_cache:
        model = CachedEncoder(model, a.emb_cache)
    g = load_grounding()
    vec = g.term_vectors(TERMS, Ontology.default())
    temb = torch.stack([vec[t] for t in TERMS])
    sg = np.array([SIDE.get(t, 0) for t in TERMS])
    rows = []
    for ds in a.datasets.split(","):
        root = Path(a.root) / ds
        for c in list_cases(root, a.split):
            im = medground.load(root / c["image"])
            lab = np.asarray(load_case(root, c)[1])  # (Z, Y, X)
            for z in np.where(lab.any(axis=(1, 2)))[0][::2]:
                sl = im.data[:, :, z]
                rec = {"ds": ds, "case": c["id"], "z": int(z)}
                for name, arr in (("canon", sl), ("mirror", sl[::-1])):
                    m = MedImage(np.ascontiguousarray(arr)[:, :, None], np.eye(4), 2, im.modality, False)
                    with torch.inference_mode():
                        heat, logits = g.head(SlicePredictor(m, model=model).embedding(0), temb)
                    h = torch.sigmoid(heat[0]).numpy()  # (T, G, G): picture rows, columns
                    G = h.shape[-1]
                    cx = [float((hh.sum(0) * np.arange(G)).sum() / max(hh.sum(), 1e-6)) / G for hh in h]
                    rec[name] = {"p": torch.sigmoid(logits)[0].numpy().round(3).tolist(), "cx": np.round(cx, 3).tolist()}
                rows.append(rec)
            print(ds, c["id"], flush=True)
    pres = lambda r: float(np.sum(r["p"]))  # noqa: E731
    side = lambda r: float((np.array(r["p"]) * sg * (0.5 - np.array(r["cx"]))).sum())  # noqa: E731
    lines = [f"| dataset ({a.split}) | slices | canonical wins: presence | side | presence + 4 x side |",
             "|---|---:|---:|---:|---:|"]
    for ds in a.datasets.split(","):
        rr = [r for r in rows if r["ds"] == ds]
        if not rr:
            continue
        wins = [np.mean([f(r["canon"]) > f(r["mirror"]) for r in rr])
                for f in (pres, side, lambda r: pres(r) + 4 * side(r))]
        lines.append(f"| {ds} | {len(rr)} | " + " | ".join(f"{w:.3f}" for w in wins) + " |")
    print("\n".join(lines))
    Path(a.out).write_text(json.dumps({"terms": TERMS, "rows": rows, "table": lines}, indent=0))


if __name__ == "__main__":
    main()
