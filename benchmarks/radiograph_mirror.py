"""How sure the orientation network must be before a chest radiograph is mirrored (``TextConfig.radiograph_mirror_min_prob``).

    python benchmarks/radiograph_mirror.py --src ../shared/data

Every frontal radiograph of covid-cxr (PA, AP, AP supine) and JSRT, as stored and mirrored left-right: for each
threshold, how many as-stored pictures the network would wrongly mirror (the left lung then drawn over the right) and
how many mirrored copies it would turn back. The network was trained on part of these pictures (their train splits),
so both counts are optimistic; the choice weighs them by how rarely radiographs arrive mirrored.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--out", default="benchmarks/results/radiograph_mirror.md")
    a = ap.parse_args(argv)
    import medground
    from medground.models.grounding import load_grounding
    from medground.models.orientation import NAMES
    from medground.segment.text import _in_plane, _orientation_probs

    net = load_grounding().orientation
    src = Path(a.src)
    with open(src / "covid-cxr" / "metadata.csv") as f:
        covid = sorted({str(src / "covid-cxr" / r["image"]) for r in csv.DictReader(f)
                        if r.get("modality") == "X-ray" and r.get("view") in ("PA", "AP", "AP Supine")})
    sets = {"covid-cxr frontal": covid, "jsrt-cxr": sorted(str(p) for p in (src / "jsrt-cxr" / "images").glob("*.jpg"))}
    k = NAMES.index("flip_lr")
    lines = ["| radiographs | pictures | threshold | as stored, wrongly mirrored | mirrored copies turned back |",
             "|---|---:|---:|---:|---:|"]
    raw = {}
    for name, paths in sets.items():
        stored, flipped = [], []
        for p in paths:
            im = medground.load(p)
            stored.append(_orientation_probs(im, net)[0])
            flipped.append(_orientation_probs(im.with_data(_in_plane(im.data, k)), net)[0])
        S, F = np.array(stored), np.array(flipped)
        raw[name] = {}
        for t in THRESHOLDS:
            wrong = int(((S.argmax(1) == k) & (S[:, k] >= t)).sum())
            back = int(((F.argmax(1) == k) & (F[:, k] >= t)).sum())
            raw[name][str(t)] = {"wrong": wrong, "turned_back": back, "pictures": len(paths)}
            lines.append(f"| {name} | {len(paths)} | {t} | {wrong} | {back} |")
        print("\n".join(lines[-len(THRESHOLDS):]), flush=True)
    Path(a.out).write_text(f"Command: `python benchmarks/radiograph_mirror.py --src {a.src}`\n\n" + "\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
