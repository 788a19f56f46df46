"""Cardiac chambers drawn on the kidneys (``TextConfig.chamber_kidney_check``): how much of each chamber the check
removes on cardiac MR (ACDC val + test: it should remove nothing) and on abdominal MR (CHAOS, every volume: no heart in
view on the slices through the kidneys).

    python benchmarks/chambers_on_kidneys.py --root cache/data --emb-cache cache/tune_emb

The pipeline runs with the check off and with "left kidney" / "right kidney" asked too; per chamber: voxels drawn,
voxels on slices where at least half the chamber lies inside a kidney (what the check removes), and for ACDC the
reference voxels among them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CHAMBERS = {"left ventricle": 3, "right ventricle": 1, "myocardium": 2}  # ACDC label values


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/chambers_on_kidneys.md")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import medground
    from embcache import models_for
    from medground.data import list_cases, load_case
    from medground.segment.text import TextConfig, segment_text

    model, g = models_for(a.emb_cache, None)
    cfg = TextConfig(chamber_kidney_check=False)
    prompts = list(CHAMBERS) + ["left kidney", "right kidney"]
    rows = {}
    for ds, splits in (("acdc-cmr", ("val", "test")), ("chaos-mr", ("train", "val", "test"))):
        root = Path(a.root) / ds
        tot = {t: [0, 0, 0, 0, 0] for t in CHAMBERS}  # drawn, removed, reference lost, volumes drawn, emptied
        n = 0
        for split in splits:
            for c in list_cases(root, split):
                img = medground.load(root / c["image"])
                res, _ = segment_text(img, prompts, model=model, grounding=g, cfg=cfg)
                m = {r.name: r.mask for r in res}
                kid = m["left kidney"] | m["right kidney"]
                lab = None
                if ds == "acdc-cmr":
                    lab = np.transpose(np.asarray(load_case(root, c)[1]), (2, 1, 0))
                for t, v in CHAMBERS.items():
                    ch = m[t]
                    area, inside = ch.sum(axis=(0, 1)), (ch & kid).sum(axis=(0, 1))
                    off = (area > 0) & (inside >= 0.5 * area)
                    drawn, removed = int(ch.sum()), int(area[off].sum())
                    lost = int((ch[:, :, off] & (lab[:, :, off] == v)).sum()) if lab is not None else 0
                    s = tot[t]
                    s[0] += drawn
                    s[1] += removed
                    s[2] += lost
                    s[3] += int(drawn > 0)
                    s[4] += int(drawn > 0 and removed == drawn)
                n += 1
                print(ds, c["id"], flush=True)
        rows[ds] = {"volumes": n, **tot}
    lines = ["| volumes | chamber | voxels drawn | removed by the check | reference voxels removed | volumes drawn / emptied |",
             "|---|---|---:|---:|---:|---|"]
    for ds, r in rows.items():
        for t in CHAMBERS:
            d, rm, lost, nd, emp = r[t]
            lines.append(f"| {ds} ({r['volumes']}) | {t} | {d} | {rm} ({rm / max(1, d):.0%}) | "
                         f"{lost if ds == 'acdc-cmr' else '–'} | {nd} / {emp} |")
    Path(a.out).write_text(f"Command: `python benchmarks/chambers_on_kidneys.py --root {a.root}`\n\n" + "\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
