"""Out of dataset check of the abdominal CT sources: TotalSegmentator's example CT (another scanner than BTCV, on
which the CT refinement network was trained), the 13 BTCV classes prompted at once, Dice per class against the
example's reference label map, for one or more (organ head, refinement network) pairs.

    python benchmarks/refine_ct_outside.py --pair "previous=<grounding.pt>,<refine_ct.pt>" --pair "packaged=," \
        --out benchmarks/results/refine_ct_outside.md

An empty path is the packaged file. The example CT was among the organ head's training volumes (15 slices; its model
card), not the refinement network's: read the rows as a check that the network transfers, not as a held-out score.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

BTCV = ["spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
        "inferior vena cava", "portal vein and splenic vein", "pancreas", "right adrenal gland", "left adrenal gland"]


def ts_labels(root: Path, prompts: list[str] = BTCV, table: str = "total") -> dict[str, int]:
    """Prompt -> the example's label value in ``table`` of its labels.json ("total": the CT's, "total_mr": the MR's),
    through the ontology id (TotalSegmentator's class names are its ids)."""
    from medground.ontology import resolve

    value = {name: int(k) for k, name in json.loads((root / "labels.json").read_text())[table].items()}
    return {p: value[resolve(p).terms[0].id] for p in prompts}


def main(argv=None) -> None:
    import nibabel as nib

    import medground
    from medground.evaluate.metrics import dice_score
    from medground.models.grounding import load_grounding
    from medground.segment.text import TextConfig, segment_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--pair", action="append", required=True, help="name=<grounding.pt>,<refine_ct.pt> ('' = packaged)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    root = Path(a.shared) / "totalsegmentator"
    ct = medground.load(root / "example_ct_sm.nii.gz")
    ref = np.asarray(nib.load(str(root / "example_seg.nii.gz")).dataobj)
    label = ts_labels(root)
    rows = {}
    for spec in a.pair:
        name, paths = spec.split("=", 1)
        gw, rw = (paths.split(",") + [""])[:2]
        res, _ = segment_text(ct, BTCV, grounding=load_grounding(gw) if gw else None,
                              cfg=TextConfig(refine_weights=rw or None))
        rows[name] = {p: dice_score(r.mask, ref == label[p]) for p, r in zip(BTCV, res)}
        print(name, round(float(np.mean(list(rows[name].values()))), 3), flush=True)
    names = list(rows)
    args = sys.argv[1:] if argv is None else list(argv)
    lines = [f"Command: `python benchmarks/refine_ct_outside.py {shlex.join(args)}`", "",
             "| class | reference voxels | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for p in BTCV:
        lines.append(f"| {p} | {int((ref == label[p]).sum())} | " + " | ".join(f"{rows[n][p]:.3f}" for n in names) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{np.mean(list(rows[n].values())):.3f}**" for n in names) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
