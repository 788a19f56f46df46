"""MR grey-scale check (``TextConfig.contrast_check``): text-prompted Dice with the check off and on.

    python benchmarks/bench_contrast.py --emb-cache cache/tune_emb --out benchmarks/results/contrast.md

Cases: the CHAOS (T2-SPIR abdomen) and ACDC (cine heart) val + test volumes as acquired — the check must leave
them alone — and the same volumes with their grey values inverted inside the body (a synthetic opposite
contrast: fat bright, fluid dark, as on T1) — the check should find the inverse and undo it; and the one real
T1-weighted abdomen with a reference at hand, TotalSegmentator's MR example (never trained on), with the organs
the head knows. Dice per structure in 3D, mean per group; which grey scale each run used.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def dataset_cases(root: Path, name: str, splits):
    """(case id, image, {prompt: reference (X, Y, Z) bool}) for the val/test cases of a converted dataset."""
    import medground
    from medground.data import list_cases, load_case, read_dataset
    from medground.evaluate.runner import _ref_masks
    from medground.ontology import Ontology

    droot = root / name
    ds = read_dataset(droot)
    labels = {int(k): v for k, v in ds["labels"].items() if int(k) != 0}
    onto = Ontology.default()
    prompts = {onto.get(t).name: t for t in sorted(set(labels.values()))}
    for split in splits:
        for c in list_cases(droot, split):
            image = medground.load(droot / c["image"])
            _, label, masks = load_case(droot, c)
            refs = _ref_masks(c, label, masks, labels, list(prompts.values()))
            yield c["id"], image, {p: np.transpose(refs[t], (2, 1, 0)) for p, t in prompts.items()
                                   if refs.get(t) is not None}


def ts_mr_case(shared: Path):
    """TotalSegmentator's MR example with the abdominal organs of its reference that the organ head knows."""
    import nibabel as nib

    import medground

    f = shared / "totalsegmentator" / "example_mr_sm.nii.gz"
    seg = shared / "totalsegmentator" / "example_seg_mr.nii.gz"
    if not f.exists() or not seg.exists():
        return None
    image = medground.load(f)
    ref = np.asarray(nib.load(str(seg)).dataobj).astype(int)  # same grid as the image (x, y, z)
    labels = {"spleen": 1, "right kidney": 2, "left kidney": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
              "pancreas": 7, "esophagus": 12, "aorta": 23, "inferior vena cava": 24}
    return "ts_example_mr", image, {p: ref == v for p, v in labels.items() if (ref == v).any()}


def run(image, refs, cfg, model):
    from medground.segment.text import segment_text

    prompts = list(refs)
    res, extra = segment_text(image, prompts, model=model, cfg=cfg)
    scores = {p: dice(r.mask.astype(bool), refs[p]) for p, r in zip(prompts, res)}
    c = extra.get("contrast") or {}
    return scores, c.get("used", "not checked"), c.get("organ_presence")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--datasets", default="chaos-mr,acdc-cmr")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--out", default="benchmarks/results/contrast.md")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    from medground.segment.contrast import invert_within_body
    from medground.segment.text import TextConfig

    model, _ = models_for(a.emb_cache, None)
    t0 = time.time()
    groups: dict[str, list] = {}
    cases = []
    for name in a.datasets.split(","):
        for cid, image, refs in dataset_cases(Path(a.root), name, a.splits.split(",")):
            cases.append((f"{name} as acquired", cid, image, refs))
            cases.append((f"{name} inverted inside the body", cid, invert_within_body(image), refs))
    ts = ts_mr_case(Path(a.shared))
    if ts:
        cases.append(("TotalSegmentator MR example (T1, real)", ts[0], ts[1], ts[2]))
    rows = []
    for group, cid, image, refs in cases:
        rec = {"group": group, "case": cid}
        for mode in ("off", "auto"):
            scores, used, seen = run(image, refs, TextConfig(contrast_check=mode), model)
            rec[mode] = {"dice": scores, "mean": float(np.mean(list(scores.values()))), "used": used, "seen": seen}
        rows.append(rec)
        groups.setdefault(group, []).append(rec)
        print(group, cid, f"off {rec['off']['mean']:.3f} auto {rec['auto']['mean']:.3f}", rec["auto"]["used"],
              rec["auto"]["seen"], flush=True)
    lines = ["# MR grey-scale check: text-prompted Dice with `contrast_check` off and on", "",
             f"Command: `python benchmarks/bench_contrast.py --root {a.root} --datasets {a.datasets} --splits {a.splits}`"
             f" ({time.time() - t0:.0f} s)", "",
             "| cases | n | Dice, check off | Dice, check on (default) | inverse used |", "|---|---:|---:|---:|---:|"]
    for group, recs in groups.items():
        off = np.mean([r["off"]["mean"] for r in recs])
        on = np.mean([r["auto"]["mean"] for r in recs])
        inv = sum(r["auto"]["used"] == "inverted" for r in recs)
        lines.append(f"| {group} | {len(recs)} | {off:.3f} | {on:.3f} | {inv}/{len(recs)} |")
    if ts:
        rec = groups["TotalSegmentator MR example (T1, real)"][0]
        lines += ["", "TotalSegmentator MR example, per structure:", "", "| structure | check off | check on |",
                  "|---|---:|---:|"]
        for p in rec["off"]["dice"]:
            lines.append(f"| {p} | {rec['off']['dice'][p]:.3f} | {rec['auto']['dice'][p]:.3f} |")
    lines += ["", "Organ presence seen by the check (mean over its probe slices and the asked terms), as acquired / "
              "inverted, per case:", "", "| cases | case | as acquired | inverted | used |", "|---|---|---:|---:|---|"]
    for r in rows:
        s = r["auto"]["seen"] or {}
        lines.append(f"| {r['group']} | {r['case']} | {s.get('as acquired', '–')} | {s.get('inverted', '–')} | "
                     f"{r['auto']['used']} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
