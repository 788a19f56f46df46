"""Out of dataset check of text-path inference settings on TotalSegmentator's example CT or MR: prompts asked
together under each variant (``TextConfig`` fields as JSON; the key ``grounding`` names an organ head checkpoint,
"" = the packaged one), Dice and voxels per prompt against the example's reference label map.

    python benchmarks/config_outside.py --variant 'off={"keep_stacked": null}' --variant 'packaged={}' \
        --out benchmarks/results/stacked_ct_outside.md
    python benchmarks/config_outside.py --image example_mr_sm.nii.gz --seg example_seg_mr.nii.gz --labels total_mr \
        --prompts aorta esophagus ... --variant ...

The example CT was among the organ head's training volumes (15 slices; its model card); the example MR never was.
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
    ap.add_argument("--image", default="example_ct_sm.nii.gz")
    ap.add_argument("--seg", default="example_seg.nii.gz")
    ap.add_argument("--labels", default="total", help="the label table of labels.json for --seg")
    ap.add_argument("--prompts", nargs="+", default=BTCV)
    ap.add_argument("--variant", action="append", required=True, help="name=<TextConfig fields as JSON, and 'grounding': a head checkpoint>")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    root = Path(a.shared) / "totalsegmentator"
    img = medground.load(root / a.image)
    ref = np.asarray(nib.load(str(root / a.seg)).dataobj)
    label = ts_labels(root, a.prompts, a.labels)
    variants = {n: json.loads(js or "{}") for n, _, js in (v.partition("=") for v in a.variant)}
    rows = {}
    for name, over in variants.items():
        head = over.pop("grounding", "")
        res, _ = segment_text(img, a.prompts, grounding=load_grounding(head) if head else None, cfg=TextConfig(**over))
        rows[name] = [(dice_score(r.mask, ref == label[p]), int(r.mask.sum())) for r, p in zip(res, a.prompts)]
        print(name, rows[name], flush=True)
    args = sys.argv[1:] if argv is None else list(argv)
    names = list(variants)
    lines = [f"Command: `python benchmarks/config_outside.py {shlex.join(args)}`", "",
             "| class | reference voxels | " + " | ".join(f"Dice {n}" for n in names) + " | "
             + " | ".join(f"voxels {n}" for n in names) + " |", "|---|---:|" + "---:|" * (2 * len(names))]
    for i, p in enumerate(a.prompts):
        lines.append(f"| {p} | {int((ref == label[p]).sum())} | " + " | ".join(f"{rows[n][i][0]:.3f}" for n in names)
                     + " | " + " | ".join(str(rows[n][i][1]) for n in names) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{np.mean([d for d, _ in rows[n]]):.3f}**" for n in names)
                 + " |" + " |" * len(names))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
