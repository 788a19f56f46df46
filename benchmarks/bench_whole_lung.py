"""The prompt "lungs" on radiographs, segmented as left + right lung (the SCR lung fields the JSRT references draw)
or as the whole lung (behind the heart and the diaphragm domes included, as the covid-cxr references draw it).

    python benchmarks/bench_whole_lung.py --split val --out benchmarks/results/whole_lung_val.md

Each picture is scored against its dataset's reference for both lungs: covid-cxr's lung mask, JSRT's left and
right lung fields united. Dice per picture, mean over pictures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--split", default="val")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    import medground
    from medground.data import list_cases, load_case
    from medground.evaluate.metrics import dice_score
    from medground.segment.text import TextConfig, segment_text

    model, grounding = models_for(a.emb_cache, None)
    rows = []
    for ds in ("covid-cxr", "jsrt-cxr"):
        root = Path(a.root) / ds
        scores = {"parts": [], "whole": []}
        for c in list_cases(root, a.split):
            image = medground.load(root / c["image"])
            _, lab, masks = load_case(root, c)
            ref = masks["lung_left"] | masks["lung_right"] if "lung_left" in masks else lab > 0
            ref = np.transpose(ref, (2, 1, 0))
            for name, whole in (("parts", False), ("whole", True)):
                res, _ = segment_text(image, ["lungs"], grounding=grounding, model=model, cfg=TextConfig(whole=whole))
                m = res[0].mask
                scores[name].append(dice_score(m, ref))
        rows.append(f"| {ds} | {len(scores['parts'])} | {np.mean(scores['parts']):.3f} | {np.mean(scores['whole']):.3f} |")
        print(rows[-1], flush=True)
    lines = [f"# \"lungs\" on radiographs: left + right lung vs the whole lung ({a.split} split)", "",
             f"Command: `python benchmarks/bench_whole_lung.py --split {a.split}" + (f" --out {a.out}`" if a.out else "`"), "",
             "| dataset (reference) | pictures | left + right lung | whole lung (shipped on 2D) |", "|---|---:|---:|---:|"] + rows
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
