"""Lungs on 8-bit pictures of CT slices (PNG / JPEG, window unknown): the picture air rule
(`medground.segment.air.picture_lung_masks`) and the text route that uses it (`segment_text`, as `medground segment`
runs it on a picture classified CT).

    python benchmarks/make_lung_pictures.py --out cache/lungpics      # TotalSegmentator CT slices as pictures
    python benchmarks/bench_picture_lungs.py --pictures cache/lungpics --out benchmarks/results/picture_lungs.md

Sets: (1) TotalSegmentator's example CT through a lung and a soft-tissue window, axial and coronal, against the lung
lobes of its label maps (example_ct: TotalSegmentator --fast's own output, example_ct_sm: its reference); slices
without lung are the absent cases; (2) lung-free pictures: the lower half of every BTCV patient's JPEG slices (every
3rd) and the DeepLesion CT sub-volumes' slices (abdomen and pelvis; ../shared/data/ct-lesions); (3) the 60 CT rows
of covid-chestxray-dataset (JPEG figures of chest CT, axial and coronal; no lung masks for them, so only "both lungs
found"), also through the text route."""
from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np


def main(argv=None):
    import nibabel as nib
    from PIL import Image

    from medground.evaluate.metrics import dice_score as _dice
    from medground.segment.air import picture_lung_masks

    ap = argparse.ArgumentParser()
    ap.add_argument("--pictures", default="cache/lungpics")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--btcv", default="cache/data/btcv-ct")
    ap.add_argument("--route", action="store_true", help="also run segment_text on the covid CT figures")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    lines = ["Command: `python benchmarks/make_lung_pictures.py --out cache/lungpics && python "
             "benchmarks/bench_picture_lungs.py --pictures cache/lungpics" + (" --route" if a.route else "")
             + (f" --out {a.out}`" if a.out else "`"), ""]
    pics = Path(a.pictures)
    idx = json.loads((pics / "index.json").read_text())
    groups: dict = {}
    for x in idx:
        st = x["image"][:-4]
        g = np.asarray(Image.open(pics / x["image"]), dtype=np.float32).T / 255
        L = np.asarray(Image.open(pics / f"{st}.left.png")).T > 0
        R = np.asarray(Image.open(pics / f"{st}.right.png")).T > 0
        m, info = picture_lung_masks(g)
        r = groups.setdefault((x["source"], x["view"], x["window"]), {"read": 0, "n": 0, "pos": [], "l": [], "r": [],
                                                                       "neg": 0, "fp": 0})
        r["n"] += 1
        r["read"] += m is not None
        if m is None:
            m = {k: np.zeros(g.shape, bool) for k in ("lung", "lung_left", "lung_right")}
        if x["lung_pixels"] > 0:
            r["pos"].append(_dice(m["lung"], L | R))
            r["l"].append(_dice(m["lung_left"], L))
            r["r"].append(_dice(m["lung_right"], R))
        else:
            r["neg"] += 1
            r["fp"] += bool(m["lung"].any())
    lines += ["### TotalSegmentator's example CT as pictures (Dice per picture with lung, mean; absent = lung-free pictures)",
              "", "| CT | view | window | pictures | read (lung window) | with lung | Dice lungs | left | right | "
              "lung found on | lung-free reported absent |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (src, view, win), r in sorted(groups.items()):
        mean = (lambda v: f"{np.mean(v):.3f}" if v else "–")
        lines.append(f"| {src} | {view} | {win} | {r['n']} | {r['read']} | {len(r['pos'])} | {mean(r['pos'])} | "
                     f"{mean(r['l'])} | {mean(r['r'])} | {sum(d > 0 for d in r['pos'])}/{len(r['pos'])} | "
                     f"{r['neg'] - r['fp']}/{r['neg']} |")
    # lung-free pictures
    neg = Counter()
    for c in sorted(Path(a.btcv).glob("cases/*")):
        vol = np.asarray(nib.load(c / "image.nii.gz").dataobj)
        for z in range(0, vol.shape[2] // 2, 3):  # data[:, :, z] is the slice in (X, Y) storage; z grows to the head
            m, _ = picture_lung_masks(vol[:, :, z].astype(np.float32) / 255)
            neg["btcv", "n"] += 1
            neg["btcv", "fp"] += bool(m is not None and m["lung"].any())
    for f in sorted((Path(a.shared) / "ct-lesions").glob("*.npz")):
        vol = np.load(f)["imgs"]
        for z in range(vol.shape[0]):
            m, _ = picture_lung_masks(vol[z].T.astype(np.float32) / 255)
            neg["lesions", "n"] += 1
            neg["lesions", "fp"] += bool(m is not None and m["lung"].any())
    lines += ["", "### Lung-free pictures", "", "| pictures | n | lungs reported absent |", "|---|---:|---:|",
              f"| BTCV JPEG slices, lower half of each of the 30 patients (every 3rd) | {neg['btcv', 'n']} | "
              f"{neg['btcv', 'n'] - neg['btcv', 'fp']}/{neg['btcv', 'n']} |",
              f"| DeepLesion CT sub-volume slices (abdomen / pelvis, ct-lesions) | {neg['lesions', 'n']} | "
              f"{neg['lesions', 'n'] - neg['lesions', 'fp']}/{neg['lesions', 'n']} |"]
    # covid CT figures
    root = Path(a.shared) / "covid-cxr"
    rows = [r for r in csv.DictReader(open(root / "metadata.csv")) if r["modality"] == "CT"]
    rule, route, secs = Counter(), Counter(), []
    for r in rows:
        g = np.asarray(Image.open(root / r["image"]).convert("L"), dtype=np.float32).T / 255
        m, _ = picture_lung_masks(g)
        rule[r["view"], "n"] += 1
        rule[r["view"], "read"] += m is not None
        rule[r["view"], "both"] += bool(m is not None and m["lung_left"].any() and m["lung_right"].any())
        if a.route:
            import medground
            from medground.segment.text import segment_text

            img = medground.load(root / r["image"])
            t = time.time()
            res, extra = segment_text(img, ["lungs", "left lung", "right lung"])
            secs.append(time.time() - t)
            by = {x.name: x for x in res}
            route[r["view"], "n"] += 1
            route[r["view"], "air"] += "lungs_by_air" in extra and extra["lungs_by_air"].get("lung_window", False)
            route[r["view"], "both"] += bool(by["left lung"].mask.any() and by["right lung"].mask.any()
                                            and "lungs_by_air" in extra)
    lines += ["", "### covid-chestxray-dataset CT figures (JPEG; no lung masks: both lungs found or not)", "",
              "| view | figures | read (lung window) | both lungs found (rule) |"
              + (" text route: air rule used | text route: both lungs |" if a.route else ""),
              "|---|---:|---:|---:|" + ("---:|---:|" if a.route else "")]
    for v in ("Axial", "Coronal"):
        lines.append(f"| {v} | {rule[v, 'n']} | {rule[v, 'read']} | {rule[v, 'both']} |"
                     + (f" {route[v, 'air']} | {route[v, 'both']} |" if a.route else ""))
    if secs:
        lines += ["", f"Text route time per figure (classifier, orientation, rule; models loaded): median "
                      f"{np.median(secs):.2f} s, max {max(secs):.2f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
