"""The image classifier's "head" probability on the val and test images of each dataset: how far the head-region gate
(TextConfig.head_region_gate, 0.9) stays from the images the Dice tables are measured on.

    python benchmarks/head_region_probs.py [--root cache/data] [--max-cases 40] [--files a.nii.gz ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

DATASETS = ["btcv-ct", "chaos-mr", "acdc-cmr", "jsrt-cxr", "covid-cxr", "totalsegmentator-ct", "ct-lesions", "mr-tumour"]


def main(argv=None):
    import medground
    from medground.classify import classify
    from medground.data import list_cases

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--max-cases", type=int, default=40, help="per split")
    ap.add_argument("--gate", type=float, default=0.9)
    ap.add_argument("--files", nargs="*", default=[], help="single images to list as well (e.g. brain scans)")
    a = ap.parse_args(argv)
    print(f"| dataset | images (val + test) | max head probability | at or above {a.gate} |\n|---|---:|---:|---:|")
    for ds in DATASETS:
        probs = []
        for split in ("val", "test"):
            try:
                cases = list_cases(Path(a.root) / ds, split)[: a.max_cases]
            except Exception:  # dataset not converted, or no such split
                continue
            for c in cases:
                r = classify(medground.load(Path(a.root) / ds / c["image"]))
                probs.append(r["probabilities"]["body_region"]["head"])
        if probs:
            print(f"| {ds} | {len(probs)} | {max(probs):.3f} | {sum(p >= a.gate for p in probs)} |", flush=True)
    for f in a.files:
        p = classify(medground.load(f))["probabilities"]["body_region"]["head"]
        print(f"| {Path(f).name} | 1 | {p:.3f} | {int(p >= a.gate)} |", flush=True)


if __name__ == "__main__":
    main()
