"""3D propagation of a single-slice box prompt: 3D Dice against the reference, per organ.

The box is taken from the reference mask on the slice where the organ is largest; the engine then
propagates through the volume. Run on volumes in the standard layout (python -m medground.data.convert).

    python benchmarks/bench_propagation.py --root /tmp/mgdata --dataset btcv-ct --cases 3 [--split val]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import medground
from medground.data import list_cases, read_dataset
from medground.segment.engine import PropagationConfig, segment_prompt
from medground.segment.predictor import SlicePredictor
from medground.segment.prompts import Prompt
from medground.evaluate.metrics import dice_score as dice


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--dataset", default="btcv-ct")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--organs", default="liver,spleen,kidney_left,kidney_right,aorta,pancreas,gallbladder,stomach")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import nibabel as nib

    root = f"{a.root}/{a.dataset}"
    names = {int(k): v for k, v in read_dataset(root)["labels"].items()}
    cases = list_cases(root, split=a.split)[: a.cases]
    organs = a.organs.split(",")
    rows = []
    for c in cases:
        case = c["id"]
        image = medground.load(f"{root}/{c['image']}")
        label = np.asarray(nib.load(f"{root}/{c['label']}").dataobj)
        pred = SlicePredictor(image)
        for organ in organs:
            ids = [int(k) for k, v in names.items() if v == organ]
            if not ids:
                continue
            m = np.isin(label, ids)
            if m.sum() == 0:
                continue
            area = m.sum(axis=(0, 1))
            z = int(np.argmax(area))
            xs = np.where(m[:, :, z].any(axis=1))[0]
            ys = np.where(m[:, :, z].any(axis=0))[0]
            t = time.time()
            r = segment_prompt(pred, Prompt("box", (xs[0], ys[0], xs[-1], ys[-1]), z=z), PropagationConfig())
            rows.append({"case": case, "organ": organ, "dice3d": dice(r.mask, m),
                         "ref_slices": int((area > 0).sum()), "pred_slices": len(r.slices),
                         "seconds": time.time() - t})
            print(rows[-1], flush=True)
    by = {}
    for r in rows:
        by.setdefault(r["organ"], []).append(r["dice3d"])
    print("| organ | mean 3D Dice | n |\n|---|---|---|")
    for o, v in by.items():
        print(f"| {o} | {np.mean(v):.3f} | {len(v)} |")
    print(f"| **all** | {np.mean([r['dice3d'] for r in rows]):.3f} | {len(rows)} |")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
