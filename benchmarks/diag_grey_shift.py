"""BTCV patients brightened before the encoder: per-class Dice, and what the head's presence says (session 22).

    python benchmarks/diag_grey_shift.py --patients patient_12,patient_27,patient_13 --shifts 0,55
    python benchmarks/diag_grey_shift.py --patients patient_08,patient_15,patient_16,patient_28 --shifts 0,55

Each patient's converted volume (JPEG grey, 0-255) gets ``+shift`` grey levels (clipped) and goes through the text
path with every BTCV class; Dice per class against its label. ``--probe`` instead scores only the head's presence
on 12 probe slices (each term's maximum, averaged over the 13 terms), the signal a probe-selected shift would use.
Tried on test patient 12 (an unenhanced CT): not adopted (benchmarks/README.md, session 22).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np


def _shifted(image, shift: float):
    x = np.clip(image.data.astype(np.float32) + shift, 0, 255).astype(image.data.dtype)
    return dataclasses.replace(image, data=x)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data/btcv-ct")
    ap.add_argument("--patients", required=True)
    ap.add_argument("--shifts", default="0,55")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--emb-cache", default=None, help="keep LiteMedSAM embeddings here (keyed by slice content)")
    a = ap.parse_args(argv)
    import torch

    import medground
    from medground.data import list_cases, load_case, read_dataset
    from medground.evaluate.runner import _ref_masks
    from medground.models import load_model
    from medground.models.grounding import load_grounding
    from medground.ontology import Ontology
    from medground.segment import text as T
    from medground.segment.predictor import SlicePredictor

    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import CachedEncoder

    root = Path(a.root)
    labels = {int(k): v for k, v in read_dataset(root)["labels"].items() if int(k)}
    onto = Ontology.default()
    tids = sorted(set(labels.values()))
    names = {t: onto.get(t).name for t in tids}
    model = load_model("litemedsam")
    if a.emb_cache:
        model = CachedEncoder(model, a.emb_cache)
    g = load_grounding()
    cases = {c["id"]: c for s in ("train", "val", "test") for c in list_cases(root, s)}
    for pid in a.patients.split(","):
        c = cases[pid]
        image = medground.load(root / c["image"])
        for shift in (float(s) for s in a.shifts.split(",")):
            img = _shifted(image, shift)
            if a.probe:
                cimg = T.canonicalize(img, g.orientation, T.TextConfig(), {}).image
                Z = cimg.shape[2]
                zs = sorted({int(round(v)) for v in np.linspace(0.1 * (Z - 1), 0.9 * (Z - 1), 12)})
                p = SlicePredictor(cimg, model=model)
                p.prepare(zs)
                tv = g.term_vectors(tids, onto)
                with torch.inference_mode():
                    _, logits = g.head(torch.cat([p.embedding(z) for z in zs]), torch.stack([tv[t] for t in tids]))
                score = float(torch.sigmoid(logits).max(0).values.mean())
                print(f"{pid} shift {shift:+.0f}: probe presence {score:.3f}", flush=True)
                continue
            _, label, masks = load_case(root, c)
            refs = _ref_masks(c, label, masks, labels, tids)
            res, _ = T.segment_text(img, [names[t] for t in tids], model=model)
            row = {}
            for t, r in zip(tids, res):
                ref, pr = np.transpose(refs[t], (2, 1, 0)), r.mask.astype(bool)
                s = int(ref.sum()) + int(pr.sum())
                row[names[t]] = round(1.0 if s == 0 else float(2 * (ref & pr).sum() / s), 3)
            print(f"{pid} shift {shift:+.0f}: mean {np.mean(list(row.values())):.3f} {json.dumps(row)}", flush=True)


if __name__ == "__main__":
    main()
