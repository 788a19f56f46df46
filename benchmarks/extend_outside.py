"""Out of dataset check of ``TextConfig.extend_runs`` on TotalSegmentator's example MR (never trained on): the
terms the package extends, asked together, with the extension off and as packaged, Dice against its reference.

    python benchmarks/extend_outside.py --out benchmarks/results/extend_mr_outside.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from refine_ct_outside import ts_labels  # noqa: E402

PROMPTS = ["aorta", "esophagus", "inferior vena cava", "left adrenal gland"]


def main(argv=None) -> None:
    import nibabel as nib

    import medground
    from medground.evaluate.metrics import dice_score
    from medground.segment.text import TextConfig, segment_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--image", default="example_mr_sm.nii.gz")
    ap.add_argument("--seg", default="example_seg_mr.nii.gz")
    ap.add_argument("--labels", default="total_mr", help="the label table of labels.json for --seg")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    root = Path(a.shared) / "totalsegmentator"
    img = medground.load(root / a.image)
    ref = np.asarray(nib.load(str(root / a.seg)).dataobj)
    label = ts_labels(root, PROMPTS, a.labels)
    rows = {}
    for name, cfg in (("off", TextConfig(extend_runs=False)), ("packaged", TextConfig())):
        res, _ = segment_text(img, PROMPTS, cfg=cfg)
        rows[name] = [(dice_score(r.mask, ref == label[p]), int(r.mask.sum())) for r, p in zip(res, PROMPTS)]
        print(name, rows[name], flush=True)
    args = sys.argv[1:] if argv is None else list(argv)
    lines = [f"Command: `python benchmarks/extend_outside.py {shlex.join(args)}`", "",
             "| class | reference voxels | Dice off | Dice packaged | voxels off | voxels packaged |",
             "|---|---:|---:|---:|---:|---:|"]
    for i, p in enumerate(PROMPTS):
        lines.append(f"| {p} | {int((ref == label[p]).sum())} | {rows['off'][i][0]:.3f} | {rows['packaged'][i][0]:.3f} "
                     f"| {rows['off'][i][1]} | {rows['packaged'][i][1]} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
