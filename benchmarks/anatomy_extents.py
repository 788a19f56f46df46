"""Shortest head-to-foot extent (mm) of each labelled structure in the training patients' references.

    python benchmarks/anatomy_extents.py --root cache/data --out src/medground/ontology/data/extents.json

Only complete structures count: a structure whose label touches the first or last slice of its volume is cut
by the field of view and is left out. Only the ``train`` split is read (never val or test), and only volumes
with a trusted slice spacing (CT and MR with geometry; not the ACDC files, whose headers carry no spacing).
With ``TextConfig(min_extent=...)`` (off by default) the text path reports a structure absent when what it drew
spans less than that fraction of this, away from the volume's ends.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATASETS = ("btcv-ct", "chaos-mr", "totalsegmentator-ct", "totalsegmentator-mr")


def main(argv=None):
    from medground.data import list_cases, load_case, read_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--out", default="src/medground/ontology/data/extents.json")
    a = ap.parse_args(argv)
    seen: dict[str, list[float]] = {}
    used = {}
    for ds in a.datasets.split(","):
        root = Path(a.root) / ds
        if not root.exists():
            print(f"{ds}: not found under {a.root}, skipped")
            continue
        meta = read_dataset(root)
        labels = {int(k): v for k, v in meta["labels"].items() if int(k) != 0}
        cases = list_cases(root, "train")
        used[ds] = len(cases)
        for c in cases:
            dz = float(c["spacing"][2]) if c.get("spacing") and len(c["spacing"]) > 2 else 0.0
            if not dz > 0:
                continue
            _, label, masks = load_case(root, c)  # [z, rows, cols]
            Z = label.shape[0]
            present = {labels[k]: label == k for k in np.unique(label) if int(k) in labels}
            present.update({t: m for t, m in masks.items() if m.any()})
            for term, m in present.items():
                zs = np.where(m.any(axis=(1, 2)))[0]
                if zs.size == 0 or zs[0] == 0 or zs[-1] == Z - 1:
                    continue  # cut by the field of view
                seen.setdefault(term, []).append((int(zs[-1]) - int(zs[0]) + 1) * dz)
        print(f"{ds}: {len(cases)} training cases read")
    out = {"source": "shortest complete head-to-foot extent among the training patients' references "
                     "(benchmarks/anatomy_extents.py)",
           "datasets": used,
           "terms": {t: {"min_extent_mm": round(min(v), 1), "median_extent_mm": round(float(np.median(v)), 1),
                         "cases": len(v)} for t, v in sorted(seen.items())}}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    for t, d in out["terms"].items():
        print(f"{t:40s} {d['min_extent_mm']:7.1f} {d['median_extent_mm']:7.1f} {d['cases']:4d}")


if __name__ == "__main__":
    main()
