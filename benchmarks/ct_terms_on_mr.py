"""Organs the organ head learned from CT only (and the MR-learned ones beside them) on TotalSegmentator's example MR:
do they carry over to MR? The family gate treats CT and MR as one kind of image; this is what that rests on.

    python benchmarks/ct_terms_on_mr.py --root cache/data
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="cache/data")
    a = ap.parse_args(argv)
    import nibabel as nib

    import medground
    from medground.evaluate.metrics import dice_score
    from medground.ontology import Ontology
    from medground.segment.text import segment_text
    from medground.segment.vocab import taught_modalities

    onto = Ontology.default()
    droot = Path(a.root) / "totalsegmentator-mr"
    labels = json.loads((droot / "dataset.json").read_text())["labels"]
    case = droot / "cases" / "example_mr_sm"
    ref_all = np.asarray(nib.load(str(case / "label.nii.gz")).dataobj)
    taught = taught_modalities("grounding")
    vals = [int(v) for v, t in labels.items() if int(v) and t in taught and (ref_all == int(v)).any()]
    names = [onto.get(labels[str(v)]).name for v in vals]
    res, extra = segment_text(medground.load(case / "image.nii.gz"), names)
    print(f"grey scale used: {extra.get('contrast', {}).get('used', 'as acquired')}")
    print("| structure | learned from | reference voxels | Dice |")
    print("|---|---|---:|---:|")
    for v, n, r in zip(vals, names, res):
        ref = ref_all == v
        d = dice_score(r.mask, ref)
        print(f"| {n} | {', '.join(sorted(taught[labels[str(v)]]))} | {int(ref.sum())} | {d:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
