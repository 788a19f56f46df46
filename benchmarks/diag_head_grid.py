"""Grid-level validation Dice per term of one or more grounding heads, on an embedding cache's `val` rows.

    python benchmarks/diag_head_grid.py --cache cache/grounding64 cache/grounding_v4/grounding.pt cache/grounding_v5/grounding.pt

The heat map thresholded at 0.5 on the head's grid against the reference's covered fraction > 0.5, on every val slice
that shows the term (as `medground.train.grounding.evaluate_head`, but per term): what the head itself localises,
before boxes, the decoder and the calibration. Also the median presence probability on those slices.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main(argv=None):
    from medground.evaluate.metrics import dice_score
    from medground.models.grounding import load_head
    from medground.train.cache import EmbeddingCache

    ap = argparse.ArgumentParser()
    ap.add_argument("heads", nargs="+", help="grounding checkpoints")
    ap.add_argument("--cache", default="cache/grounding64", help="embedding cache with val rows")
    ap.add_argument("--out", default=None, help="append the Markdown table to this file")
    a = ap.parse_args(argv)
    c = EmbeddingCache(a.cache, in_memory=False)
    rows = c.select("val")
    tid = {t: i for i, t in enumerate(c.terms)}
    dice: dict[str, dict[str, list]] = {}
    pres: dict[str, dict[str, list]] = {}
    for path in a.heads:
        head, obj = load_head(path)
        temb = obj["term_emb"].float()
        tix = {t: i for i, t in enumerate(obj["term_ids"])}
        for i in range(0, len(rows), 32):
            rs = rows[i: i + 32]
            with torch.inference_mode():
                feats = head.image_features(torch.from_numpy(c.emb[rs].astype(np.float32)))
            for b, r in enumerate(rs):
                present = {t: k for t, k in c.by_row.get(int(r), [])}
                lab = [t for t in c.rows[int(r)]["labelled"] if t in tix and tid[t] in present]
                if not lab:
                    continue
                with torch.inference_mode():
                    heat, p = head(None, temb, torch.tensor([(b, tix[t]) for t in lab]), features=feats)
                for j, t in enumerate(lab):
                    ref = c.tmasks[present[tid[t]]] / 255.0 > 0.5
                    if ref.sum() < 1:
                        continue
                    hm = (torch.sigmoid(heat[j]) > 0.5).numpy()
                    dice.setdefault(t, {}).setdefault(path, []).append(dice_score(hm, ref))
                    pres.setdefault(t, {}).setdefault(path, []).append(float(torch.sigmoid(p[j])))
    names = [Path(p).parent.name + "/" + Path(p).name for p in a.heads]
    lines = ["| term | slices | " + " | ".join(f"{n} grid Dice / presence" for n in names) + " |",
             "|---|---:|" + "---|" * len(names)]
    for t in sorted(dice):
        n = len(next(iter(dice[t].values())))
        lines.append(f"| {t} | {n} | " + " | ".join(
            f"{np.mean(dice[t].get(p, [np.nan])):.3f} / {np.median(pres[t].get(p, [np.nan])):.2f}" for p in a.heads) + " |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(f"\nGrid level (`python benchmarks/diag_head_grid.py --cache {a.cache} {' '.join(a.heads)}`): heat > 0.5 on "
                     "the 64 grid vs the reference's covered fraction > 0.5, mean over the val slices showing the term; "
                     "median presence probability on those slices.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
