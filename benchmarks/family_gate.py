"""How the family gate of the text route takes 2D pictures (``TextConfig.family_gate``).

An organ-head term learned from radiographs only (the lungs of JSRT / covid-cxr) is not drawn on CT / MR, one
learned from CT / MR only (liver, kidneys...) is not drawn on a radiograph, and no organ is drawn on ultrasound,
endoscopy or photographs (the head learned none there). A 2D picture without a DICOM modality is put in a kind
(family) by the image classifier (e.g. probability of X-ray + mammogram, or of CT + MRI + PET). A picture put in a
wrong family loses the terms it should have (a CT slice taken for a radiograph: its abdominal organs), so this
script counts, per source, the pictures put in their own family and in any other, at each probability threshold.

    python benchmarks/family_gate.py --src ../shared/data --root cache/data --out benchmarks/results/family_gate.md

Sources: every JPEG slice of btcv-ct and chaos-mr as the shared data stores them; every axial slice of the
converted acdc-cmr, ct-lesions and TotalSegmentator CT / MR volumes written as 8-bit PNG (1st-99th percentile
window); every radiograph of jsrt-cxr and covid-cxr (covid-cxr's CT pictures counted as CT) and every
mini-MIAS mammogram. The shipped classifier was trained on a subset of these pictures (its model card lists
how many per source); the leave-datasets-out figures are in benchmarks/results/classify.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (0.6, 0.7, 0.75, 0.8)


def _volume_pictures(root: Path, ds: str, tmp: Path, every: int = 1):
    import nibabel as nib
    from PIL import Image

    for case in sorted((root / ds / "cases").glob("*")):
        f = case / "image.nii.gz"
        if not f.exists():
            continue
        a = np.asarray(nib.load(str(f)).dataobj, dtype=np.float32)
        if a.ndim == 4:
            a = a[..., 0]
        lo, hi = np.percentile(a, [1, 99])
        for z in range(0, a.shape[2], every):
            s = np.clip((a[:, :, z] - lo) / max(hi - lo, 1e-6), 0, 1)
            p = tmp / f"{ds}_{case.name}_{z}.png"
            Image.fromarray((s.T * 255).astype(np.uint8)).save(p)
            yield p


def sources(src: Path, root: Path, tmp: Path):
    """(source, truth class 'radiograph' | 'section', path) of every picture."""
    for ds in ("btcv-ct", "chaos-mr"):
        for p in sorted((src / ds / "images").glob("patient_*/*.jpg")):
            yield ds, "section", p
    for ds in ("acdc-cmr", "ct-lesions", "totalsegmentator-ct", "totalsegmentator-mr"):
        for p in _volume_pictures(root, ds, tmp):
            yield ds, "section", p
    for p in sorted((src / "jsrt-cxr" / "images").glob("*.jpg")):
        yield "jsrt-cxr", "radiograph", p
    with open(src / "covid-cxr" / "metadata.csv", encoding="latin-1") as fh:
        for r in csv.DictReader(fh):
            p = src / "covid-cxr" / r["image"]
            if p.exists():
                kind = "radiograph" if r["modality"].strip().upper() in ("X-RAY", "XRAY", "CR", "DX") else "section"
                yield ("covid-cxr" if kind == "radiograph" else "covid-cxr (CT)"), kind, p
    for p in sorted((src / "mammography-mias" / "images").glob("*.jpg")):
        yield "mammography-mias", "radiograph", p
    for ds, fam in (("ultrasound-busi", "ultrasound"), ("endoscopy-kvasir", "endoscopy"),
                    ("dermoscopy-ph2", "photograph"), ("fundus-drive", "photograph")):
        for p in sorted((src / ds / "images").glob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                yield ds, fam, p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--out", default="benchmarks/results/family_gate.md")
    a = ap.parse_args(argv)
    from medground.io import MedGroundInputError, load
    from medground.segment.text import image_family

    src, root = Path(a.src), Path(a.root)
    if not src.exists():
        print(f"no data at {src}", file=sys.stderr)
        return 1
    t0 = time.time()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as td:
        for ds, kind, p in sources(src, root, Path(td)):
            try:
                im = load(str(p))
            except MedGroundInputError:  # a blank slice: refused before any model runs
                continue
            fam, pr = image_family(im, {})
            r = rows.setdefault(ds, {"kind": kind, "n": 0, "fam": [], "probs": []})
            r["n"] += 1
            r["fam"].append(fam)
            r["probs"].append(pr)
    lines = ["# Family gate: radiograph or cross-sectional, for 2D pictures", "",
             f"Command: `python benchmarks/family_gate.py --src {a.src} --root {a.root} --out {a.out}` "
             f"({time.time() - t0:.0f} s)", "",
             "Share of pictures put in each family with at least each probability (the gate acts there; shipped "
             "threshold 0.75). Right: the picture's own family; wrong: any other (what silences terms it should "
             "have).", "",
             "| source | family | pictures | " + " | ".join(f"right >= {t}" for t in THRESHOLDS) + " | "
             + " | ".join(f"wrong >= {t}" for t in THRESHOLDS) + " |",
             "|---|---|---:|" + "---:|" * (2 * len(THRESHOLDS))]
    out = {}
    for ds, r in rows.items():
        pr = np.array(r["probs"])
        fam = np.array([f or "" for f in r["fam"]])
        want = "cross-sectional" if r["kind"] == "section" else r["kind"]
        right = [float(((fam == want) & (pr >= t)).mean()) for t in THRESHOLDS]
        wrong = [float(((fam != want) & (fam != "") & (pr >= t)).mean()) for t in THRESHOLDS]
        lines.append(f"| {ds} | {want} | {r['n']} | " + " | ".join(f"{100 * f:.1f}%" for f in right) + " | "
                     + " | ".join(f"{100 * f:.1f}%" for f in wrong) + " |")
        out[ds] = {"family": want, "n": r["n"], "right": dict(zip(map(str, THRESHOLDS), right)),
                   "wrong": dict(zip(map(str, THRESHOLDS), wrong))}
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
