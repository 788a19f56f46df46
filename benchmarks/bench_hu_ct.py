"""CT from other sources than the training's: real Hounsfield-unit DICOM series, text vs reference box.

    python benchmarks/bench_hu_ct.py --out benchmarks/results/hu_ct.md

The head's CT training is mostly BTCV, distributed as windowed 8-bit JPEG slices. Here:
- the TotalSegmentator example DICOM series (its ``test`` patient in ``cache/data/totalsegmentator-ct``; 512 x 512 x 20,
  0.98 mm pixels, 2 mm slices, HU, arms down), prompted with the abdominal terms the head was trained on (those the
  reference lacks score 1 when nothing is drawn, else 0), text path and LiteMedSAM given the reference's boxes;
- the dcmqi 3-slice CT series (``../shared/data/ct-3slice``, HU, 0.81 mm pixels) against the dcmqi liver
  segmentation ``liver.dcm`` that pydicom's test data ships (a DICOM SEG on this series).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PROMPTS = ["liver", "spleen", "aorta", "stomach", "pancreas", "inferior vena cava", "gallbladder", "left kidney",
           "right kidney", "esophagus", "heart", "portal vein and splenic vein", "left adrenal gland",
           "right adrenal gland", "colon", "duodenum"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/hu_ct.md")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    import medground
    from medground.evaluate.metrics import dice_score
    from medground.evaluate.runner import evaluate_dataset
    from medground.segment.text import segment_text

    model, grounding = models_for(a.emb_cache, None)
    per = {}
    for mode in ("text", "box"):
        agg = evaluate_dataset(Path(a.root) / "totalsegmentator-ct", "test", PROMPTS, mode, None, log=lambda m: None,
                               model=model, grounding=grounding)
        per[mode] = {k: v["dice"]["mean"] for k, v in agg.summary()["per_class"].items()}
    lines = ["# Real HU CT from other sources (DICOM series)", "",
             f"Command: `python benchmarks/bench_hu_ct.py --root {a.root} --src {a.src}`", "",
             "TotalSegmentator example DICOM series (512 x 512 x 20, HU). Dice per structure (1 = correctly absent).", "",
             "| structure | in reference | text | box from reference |", "|---|---|---:|---:|"]
    from medground.data import list_cases, load_case, read_dataset
    from medground.ontology import Ontology

    root = Path(a.root) / "totalsegmentator-ct"
    case = list_cases(root, "test")[0]
    label = load_case(root, case)[1]
    ids = {v: int(k) for k, v in read_dataset(root)["labels"].items()}
    onto = Ontology.default()
    for p in PROMPTS:
        t, b = per["text"][p], per["box"][p]
        has = any(bool((label == ids[i]).any()) for i in onto.resolve(p).ids if i in ids)
        lines.append(f"| {p} | {'yes' if has else 'no'} | {t:.3f} | {b:.3f} |")
    lines.append(f"| **mean** | | **{np.mean(list(per['text'].values())):.3f}** | "
                 f"**{np.mean(list(per['box'].values())):.3f}** |")
    # the dcmqi liver on the 3-slice series
    import highdicom as hd
    from pydicom.data import get_testdata_file

    ref_img = medground.load(Path(a.src) / "ct-3slice")
    seg = hd.seg.segread(get_testdata_file("liver.dcm"))
    uids = [ds.SOPInstanceUID for ds in ref_img.dicom_datasets]
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                            ignore_spatial_locations=True)
    liver = arr.transpose(2, 1, 0) > 0
    res, extra = segment_text(ref_img, ["liver"], model=model, grounding=grounding)
    d = dice_score(res[0].mask, liver)
    lines += ["", f"dcmqi 3-slice CT series, liver (text) vs the dcmqi liver SEG: Dice **{d:.3f}** "
              f"(orientation: {extra['orientation'].get('anatomy_check', {}).get('result', extra['orientation'])})."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps({"totalsegmentator_dicom": per, "ct3slice_liver": d}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
