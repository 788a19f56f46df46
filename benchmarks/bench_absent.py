"""Structures that cannot be in the image must be reported absent: organ prompts on scans of another body region.

    python benchmarks/bench_absent.py --root cache/data --atlases ../shared/data/brain-atlases \
        --out benchmarks/results/absent.md

Each group pairs held-out cases (the `test` split of a converted dataset, or files never trained on) with prompts
for structures outside their field of view (kidneys on a chest radiograph or a brain MR, the clavicles on an abdominal CT...).
A (case, prompt) counts as reported absent when ``findings.json`` would say ``present: false`` (an empty mask).
The slice column counts, on volumes, the slices where a mask was drawn anyway.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

KIDNEYS_ETC = ["left kidney", "right kidney", "pancreas", "urinary bladder", "left adrenal gland"]
GROUPS = [
    # (name, source, prompts): source "dataset:<name>" = its test split, or a list of files under --atlases / --root
    ("chest radiographs (JSRT)", "dataset:jsrt-cxr", KIDNEYS_ETC),
    ("chest radiographs (covid-cxr)", "dataset:covid-cxr", KIDNEYS_ETC),
    ("cardiac MR short axis (ACDC)", "dataset:acdc-cmr", KIDNEYS_ETC + ["left clavicle"]),
    ("abdominal MR (CHAOS)", "dataset:chaos-mr", ["left clavicle", "right clavicle", "urinary bladder"]),
    ("abdominal CT (BTCV)", "dataset:btcv-ct", ["left clavicle", "right clavicle"]),
    ("brain MR / head CT", "files:atlases:MR_Gd.nii.gz,chris_t1.nii.gz,CT_AVM.nii.gz",
     ["liver", "spleen", "left kidney", "right kidney", "heart", "lungs", "stomach", "pancreas", "urinary bladder"]),
    ("brain MR with tumour (mr-tumour test patient)", "dataset:mr-tumour:brain",
     ["liver", "spleen", "left kidney", "right kidney", "heart", "lungs", "stomach", "pancreas", "urinary bladder"]),
]


def _cases(source: str, root: Path, atlases: Path, split: str, max_cases: int | None):
    from medground.data import list_cases

    kind, _, rest = source.partition(":")
    if kind == "dataset":
        name, _, prefix = rest.partition(":")
        ds = root / name
        if not ds.exists():
            return []
        cases = list_cases(ds, split)
        if prefix:
            cases = [c for c in cases if c["id"].startswith(prefix)]
        return [(c["id"], ds / c["image"]) for c in cases[: max_cases or None]]
    where, _, names = rest.partition(":")
    base = atlases if where == "atlases" else root
    return [(n, base / n) for n in names.split(",") if (base / n).exists()]


def main(argv=None):
    import numpy as np

    import medground
    from medground.segment.text import TextConfig, segment_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--atlases", default="../shared/data/brain-atlases")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--weights", default=None, help="grounding checkpoint (default: the packaged one)")
    ap.add_argument("--emb-cache", default=None, help="memoise LiteMedSAM embeddings here (benchmarks/embcache.py)")
    ap.add_argument("--out", default="benchmarks/results/absent.md")
    ap.add_argument("--text-config", default=None, help='TextConfig fields as JSON, e.g. \'{"min_extent": 0.5}\'')
    ap.add_argument("--only", default=None, help="run only the groups whose name contains this text (e.g. 'brain')")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    model, grounding = models_for(a.emb_cache, a.weights)
    cfg = TextConfig(**json.loads(a.text_config)) if a.text_config else None
    rows, raw = [], {}
    tot = [0, 0]
    for name, source, prompts in GROUPS:
        if a.only and a.only not in name:
            continue
        cases = _cases(source, Path(a.root), Path(a.atlases), a.split, a.max_cases)
        if not cases:
            print(f"{name}: no data, skipped", flush=True)
            continue
        t = time.time()
        n = absent = 0
        slices = slices_total = 0
        misses = []
        for cid, path in cases:
            img = medground.load(path)
            results, _ = segment_text(img, prompts, model=model, grounding=grounding, cfg=cfg)
            for p, r in zip(prompts, results):
                n += 1
                if not r.info["present"]:
                    absent += 1
                else:
                    misses.append(f"{cid}: {p} (p={r.info['presence_probability']:.2f})")
                if img.ndim == 3:
                    slices += int(np.any(r.mask, axis=(0, 1)).sum())
                    slices_total += r.mask.shape[2]
        tot[0] += absent
        tot[1] += n
        sl = f"{slices} of {slices_total}" if slices_total else "–"
        rows.append(f"| {name} | {len(cases)} | {', '.join(prompts)} | {absent}/{n} ({absent / n:.1%}) | {sl} | "
                    + ("; ".join(misses[:6]) + (" ..." if len(misses) > 6 else "") if misses else "–") + " |")
        raw[name] = {"cases": len(cases), "prompts": prompts, "absent": absent, "n": n, "slices_drawn": slices,
                     "slices": slices_total, "misses": misses, "seconds": round(time.time() - t)}
        print(rows[-1], f"[{time.time() - t:.0f}s]", flush=True)
    lines = ["# Prompts for structures outside the field of view: reported absent?", "",
             f"Command: `python benchmarks/bench_absent.py --root {a.root} --atlases {a.atlases} --split {a.split}"
             + (f" --weights {a.weights}" if a.weights else "")
             + (f" --text-config '{a.text_config}'" if a.text_config else "")
             + (f" --only '{a.only}'" if a.only else "") + "`", "",
             "| cases | n | prompts (each must be absent) | reported absent | slices drawn on anyway | reported present |",
             "|---|---:|---|---:|---:|---|"] + rows
    if tot[1]:
        lines += ["", f"All: {tot[0]}/{tot[1]} ({tot[0] / tot[1]:.1%}) reported absent."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
