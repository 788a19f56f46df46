"""Two 3D clean-up rules for abdominal CT, scored on the masks `segment_text` draws (session 25; neither adopted).

    python benchmarks/btcv_post_rules.py --emb-cache cache/tune_emb --out benchmarks/results/btcv_post_rules.md

The 13 BTCV organs are prompted at once on each val / test patient (the packaged heads and settings), then:
* ``overlap``: a voxel two organs both claim goes to the one it lies deeper inside (3D distance to the mask's
  edge, in mm); the ``oracle`` row gives it to the organ the reference says (the most any such rule could gain);
* ``caps``: an organ's end pieces of at most 3 slices whose mask does not overlap the neighbouring slice's
  (intersection below 0.2 of the smaller area) are dropped. The references are checked for such jumps too (all
  splits: how often would the rule cut a real organ?).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from embcache import CachedEncoder  # noqa: E402


def chains(m: np.ndarray, min_overlap: float = 0.2) -> list[list[int]]:
    """Runs of consecutive slices (last axis) whose masks overlap by >= ``min_overlap`` of the smaller one."""
    out: list[list[int]] = []
    for z in np.nonzero(m.any(axis=(0, 1)))[0]:
        if out and z == out[-1][-1] + 1:
            a, b = m[:, :, z - 1], m[:, :, z]
            if (a & b).sum() >= min_overlap * min(a.sum(), b.sum()):
                out[-1].append(int(z))
                continue
        out.append([int(z)])
    return out


def drop_caps(m: np.ndarray, max_slices: int = 3) -> np.ndarray:
    ch, m = chains(m), m.copy()
    while len(ch) > 1:
        ends = [i for i in (0, len(ch) - 1) if len(ch[i]) <= max_slices]
        if not ends:
            break
        i = min(ends, key=lambda k: len(ch[k]))
        m[:, :, ch.pop(i)] = False
    return m


def by_depth(masks: dict[str, np.ndarray], spacing) -> dict[str, np.ndarray]:
    from scipy import ndimage

    names = list(masks)
    claims = sum(masks[n].astype(np.int16) for n in names) > 1
    if not claims.any():
        return masks
    depth = np.stack([np.where(masks[n], ndimage.distance_transform_edt(masks[n], sampling=spacing), -1.0)
                      if masks[n].any() else np.full(claims.shape, -1.0) for n in names])
    win = depth.argmax(0)
    return {n: masks[n] & ~(claims & (win != i)) for i, n in enumerate(names)}


def main(argv=None) -> None:
    import medground
    import nibabel as nib

    from medground.data import list_cases, read_dataset
    from medground.evaluate.metrics import dice_score
    from medground.models import load_model
    from medground.ontology import Ontology
    from medground.segment.text import segment_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="cache/data/btcv-ct")
    ap.add_argument("--emb-cache", default="cache/tune_emb")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    root = Path(a.root)
    ds = read_dataset(root)
    onto = Ontology.default()
    labels = {int(k): onto.get(v).name for k, v in ds["labels"].items() if int(k)}
    model = CachedEncoder(load_model("litemedsam"), a.emb_cache)
    rows, jumps = [], {n: 0 for n in labels.values()}
    for c in list_cases(root):
        lab = np.asarray(nib.load(root / c["label"]).dataobj)  # the image's own array order
        for k, n in labels.items():
            ch = chains(lab == k)
            jumps[n] += sum(len(x) <= 3 for x in (ch[0], ch[-1])) if len(ch) > 1 else 0
    for split in ("val", "test"):
        for c in list_cases(root, split):
            image = medground.load(root / c["image"])
            lab = np.asarray(nib.load(root / c["label"]).dataobj)
            res, _ = segment_text(image, list(labels.values()), model=model)
            pred = {n: r.mask for n, r in zip(labels.values(), res)}
            refs = {n: lab == k for k, n in labels.items()}
            sp = tuple(float(s) for s in image.spacing)
            variants = {"packaged": pred, "overlap": by_depth(pred, sp),
                        "oracle": {n: pred[n] & ~((sum(pred[o].astype(np.int16) for o in pred) > 1) & ~refs[n])
                                   for n in pred},
                        "caps": {n: drop_caps(m) for n, m in pred.items()}}
            rows.append((split, c["id"], {v: float(np.mean([dice_score(p[n], refs[n]) for n in labels.values()]))
                                          for v, p in variants.items()}))
            print(rows[-1], flush=True)
    names = ["packaged", "overlap", "oracle", "caps"]
    L = [f"Command: `python benchmarks/btcv_post_rules.py --emb-cache {a.emb_cache}`", "",
         "BTCV 13-organ mean Dice per patient (all organs prompted at once), then the mean over the split.", "",
         "| split | patient | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for split, cid, d in rows:
        L.append(f"| {split} | {cid} | " + " | ".join(f"{d[v]:.3f}" for v in names) + " |")
    for split in ("val", "test"):
        ds_ = [d for s, _, d in rows if s == split]
        L.append(f"| {split} | **mean** | " + " | ".join(f"**{np.mean([d[v] for d in ds_]):.3f}**" for v in names) + " |")
    L += ["", "End pieces of <= 3 slices jumping in-plane from the rest, in the references of all "
          f"{len(list_cases(root))} patients: " + ", ".join(f"{n} {j}" for n, j in jumps.items()) + "."]
    text = "\n".join(L) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
