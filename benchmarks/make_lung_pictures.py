"""8-bit pictures of CT slices with lung references, for the lungs-on-CT-pictures benchmark (bench_picture_lungs.py).

    python benchmarks/make_lung_pictures.py --out cache/lungpics

From ../shared/data/totalsegmentator: example_ct.nii.gz (112 slices, 3 mm, neck to pelvis) with the
label map TotalSegmentator's --fast model made of it (example_seg_fast_force_split.nii.gz; lung lobes 10-14), and the
small example (example_ct_sm, 30 slices) with its reference label map (example_seg.nii.gz). Every axial slice and every
4th coronal slice is written as an 8-bit PNG in display orientation (patient's right on the image's left, anterior /
head at the top) through a lung window (-600 / 1500) and a soft-tissue window (40 / 400), with its reference as
`<name>.left.png` / `<name>.right.png` (empty on slices without lung: those are the absent cases)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LEFT, RIGHT = (10, 11), (12, 13, 14)
WINDOWS = {"lung": (-600.0, 1500.0), "soft": (40.0, 400.0)}


def _to_ras(img):
    import nibabel as nib

    return nib.as_closest_canonical(img)


def main(argv=None):
    import nibabel as nib
    from PIL import Image

    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="../shared/data/totalsegmentator")
    ap.add_argument("--out", default="cache/lungpics")
    a = ap.parse_args(argv)
    src, out = Path(a.src), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = {"tsct": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
             "tsctsm": ("example_ct_sm.nii.gz", "example_seg.nii.gz")}
    index = []
    for name, (fi, fl) in pairs.items():
        if not (src / fi).exists() or not (src / fl).exists():
            continue
        ct = np.asarray(_to_ras(nib.load(src / fi)).dataobj, dtype=np.float32)
        lab = np.asarray(_to_ras(nib.load(src / fl)).dataobj)
        # RAS voxel order: i grows to the patient's right, j to anterior, k to the head. Display: the patient's right
        # on the image's left (column 0 = largest i), anterior / head on top.
        views = [("ax", k, ct[:, :, k], lab[:, :, k], "ap") for k in range(ct.shape[2])]
        views += [("cor", j, ct[:, j, :], lab[:, j, :], "si") for j in range(0, ct.shape[1], 4)]
        for view, k, sl, lb, up in views:
            # (X, Y) storage with display rows = Y: flip i (right -> image left) and the second axis (anterior /
            # head -> top); the PNG array is its transpose
            sl, lb = sl[::-1, ::-1], lb[::-1, ::-1]
            for wname, (level, width) in WINDOWS.items():
                g = np.clip((sl - (level - width / 2)) / width, 0, 1)
                stem = f"{name}_{view}{k:03d}_{wname}"
                Image.fromarray((g.T * 255).round().astype(np.uint8)).save(out / f"{stem}.png")
                for side, ids in (("left", LEFT), ("right", RIGHT)):
                    Image.fromarray((np.isin(lb, ids).T * 255).astype(np.uint8)).save(out / f"{stem}.{side}.png")
                index.append({"image": f"{stem}.png", "source": name, "view": view, "slice": int(k), "window": wname,
                              "reference": "TotalSegmentator --fast output" if name == "tsct" else "reference label map",
                              "lung_pixels": int(np.isin(lb, LEFT + RIGHT).sum())})
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(index)} pictures -> {out}")


if __name__ == "__main__":
    main()
