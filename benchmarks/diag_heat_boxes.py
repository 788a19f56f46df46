"""How the text path's heat boxes sit against the reference boxes (val BTCV patients), the measurement behind
`TextConfig.box_margin` (benchmarks/README.md, section 4, "Box margins"):

    python benchmarks/diag_heat_boxes.py --emb-cache cache/tune_emb

For every slice where a term is drawn from exactly one heat box and the reference shows it: the box's width and
height over the reference box's, their IoU, and the signed offsets of its sides (slice pixels; positive x0/y0 and
negative x1/y1 = inside the reference). Medians per term. Run with the margin off (`box_margin=0`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TERMS = ("inferior_vena_cava,spleen,stomach,esophagus,pancreas,aorta,kidney_left,gallbladder,liver,"
         "portal_vein_and_splenic_vein")


def main(argv=None):
    import medground
    import medground.segment.text as T
    from medground.data import list_cases, load_case, read_dataset
    from medground.ontology import Ontology

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--split", default="val")
    ap.add_argument("--terms", default=TERMS)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--emb-cache", default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    model, grounding = models_for(a.emb_cache, a.weights)
    root = Path(a.root) / "btcv-ct"
    labels = {int(k): v for k, v in read_dataset(root)["labels"].items() if int(k) != 0}
    terms = a.terms.split(",")
    onto = Ontology.default()
    # record the boxes of each term: heat_boxes is called for a term's slices, then mask_mode(term) closes the term
    rec = {"calls": [], "cur": []}
    heat_boxes, mask_mode, canonicalize = T.heat_boxes, T.mask_mode, T.canonicalize

    def hb(heat, pred, cfg, relative=None, z=None, refine=None, margin=0.0):
        out = heat_boxes(heat, pred, cfg, relative, z, refine, margin)
        rec["cur"].append((z, out[0]))
        return out

    def mm(tid, bundle, cfg):
        rec["calls"].append((tid, rec["cur"]))
        rec["cur"] = []
        return mask_mode(tid, bundle, cfg)

    def can(image, o, cfg):
        rec["canon"] = canonicalize(image, o, cfg)
        return rec["canon"]

    T.heat_boxes, T.mask_mode, T.canonicalize = hb, mm, can
    stats = {t: [] for t in terms}
    for c in list_cases(root, a.split):
        rec["calls"] = []
        image = medground.load(root / c["image"])
        _, label, _ = load_case(root, c)
        T.segment_text(image, [onto.get(t).name for t in terms], model=model, grounding=grounding,
                       cfg=T.TextConfig(slice_sampling="all", box_margin=0))
        if not np.allclose(rec["canon"].image.affine, image.affine):
            raise SystemExit("this diagnostic expects volumes already in canonical orientation (converted BTCV)")
        for tid, calls in rec["calls"]:
            ref = np.transpose(np.isin(label, [k for k, v in labels.items() if v == tid]), (2, 1, 0))
            for z, boxes in calls:
                g = ref[:, :, z]
                if not g.any() or len(boxes) != 1:
                    continue
                xs, ys = np.where(g.any(1))[0], np.where(g.any(0))[0]
                gb, b = (xs[0], ys[0], xs[-1], ys[-1]), boxes[0]
                iw = max(0, min(b[2], gb[2]) - max(b[0], gb[0]) + 1)
                ih = max(0, min(b[3], gb[3]) - max(b[1], gb[1]) + 1)
                area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)  # noqa: E731
                stats[tid].append([(b[2] - b[0] + 1) / (gb[2] - gb[0] + 1), (b[3] - b[1] + 1) / (gb[3] - gb[1] + 1),
                                   iw * ih / (area(b) + area(gb) - iw * ih),
                                   b[0] - gb[0], b[2] - gb[2], b[1] - gb[1], b[3] - gb[3]])
    print("| term | slices | width ratio | height ratio | IoU | x0 | x1 | y0 | y1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t, s in stats.items():
        if not s:
            continue
        m = np.median(np.array(s), axis=0)
        print(f"| {t} | {len(s)} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.1f} | {m[4]:.1f} | {m[5]:.1f} | {m[6]:.1f} |")


if __name__ == "__main__":
    main()
