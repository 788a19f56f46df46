"""The same held-out patients through the input routes a user (or an evaluator) may take, scored against the
source's own label files in the source's own grid.

    python benchmarks/bench_input_routes.py --src ../shared/data --out benchmarks/results/input_routes.md

Routes, per test patient of BTCV and CHAOS (slices distributed as JPEG files plus a label NIfTI):
- ``converted``: the volume written by ``medground.data.convert`` (canonical orientation, LPS header);
- ``picture folder``: the folder of JPEG slices itself (no geometry: the orientation classifier turns the
  slices; the masks come back in the pictures' (column, row) grid);
- ``restacked``: the JPEG slices stacked as they are (rows, columns) under the label file's affine, what a naive
  conversion writes. For BTCV that header puts the spine at the top; the anatomy check must turn it
  (``restacked, header trusted``: the same with the check off).
Dice per class against ``labels/<patient>.nii.gz`` (3D; the converted route against the converted label, the same
voxels permuted), mean over the dataset's classes and patients.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from medground.evaluate.metrics import dice_score as _dice

DATASETS = ("btcv-ct", "chaos-mr")


def restack(src: Path, ds: str, pid: str, out: Path) -> Path:
    """A patient's JPEG slices stacked as stored (rows, columns, z) under its label file's affine, written to
    ``out``: what a naive conversion of these datasets writes."""
    import nibabel as nib
    from PIL import Image

    lab_img = nib.load(str(src / ds / "labels" / f"{pid}.nii.gz"))
    folder = src / ds / "images" / pid
    stack = np.stack([np.asarray(Image.open(folder / f"slice_{z:03d}.jpg").convert("L"))
                      for z in range(lab_img.shape[2])], -1)
    nib.save(nib.Nifti1Image(stack, lab_img.affine), str(out))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--root", default="cache/data", help="converted datasets (for the splits and the converted route)")
    ap.add_argument("--out", default="benchmarks/results/input_routes.md")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--max-cases", type=int, default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import nibabel as nib
    from embcache import models_for

    import medground
    from medground.data import list_cases, load_case
    from medground.ontology import Ontology
    from medground.segment.text import TextConfig, segment_text

    model, grounding = models_for(a.emb_cache, None)
    onto = Ontology.default()
    src, root = Path(a.src), Path(a.root)
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="mg_routes_"))
    for ds in DATASETS:
        names = {int(k): v for k, v in json.loads((src / ds / "labels.json").read_text()).items()}
        prompts = [onto.get(n).name for n in names.values()]
        for c in list_cases(root / ds, "test")[: a.max_cases or None]:
            pid = c["id"]
            lab_img = nib.load(str(src / ds / "labels" / f"{pid}.nii.gz"))
            lab = np.rint(np.asarray(lab_img.dataobj)).astype(int)  # (rows, cols, z) of the JPEG grid
            folder = src / ds / "images" / pid
            restacked = restack(src, ds, pid, tmp / f"{ds}_{pid}.nii.gz")
            conv_lab = np.transpose(load_case(root / ds, c)[1], (2, 1, 0))  # the converted grid (X, Y, Z)
            for route, path in (("converted", root / ds / c["image"]), ("picture folder", folder), ("restacked", restacked),
                                ("restacked, header trusted", restacked)):
                t = time.time()
                image = medground.load(path)
                cfg = TextConfig(header_check_min_prob=None) if route.endswith("trusted") else None
                res, extra = segment_text(image, prompts, grounding=grounding, model=model, cfg=cfg)
                secs = time.time() - t
                ref = conv_lab if route == "converted" else lab  # the same voxels, permuted
                # masks are in the input's grid: the pictures' (column, row) for a folder, else the reference's own
                masks = [np.transpose(r.mask, (1, 0, 2)) if route == "picture folder" else r.mask for r in res]
                d = {names[k]: _dice(m, ref == k) for k, m in zip(names, masks)}
                o = extra["orientation"]
                how = o.get("transform_after_header") and f"header + {o['transform_after_header']}" or \
                    (o.get("transform") if o["method"] != "header geometry" else "header")
                rows.append({"dataset": ds, "case": pid, "route": route, "dice": d, "mean": float(np.mean(list(d.values()))),
                             "orientation": f"{o['method']}: {how}", "seconds": round(secs, 1)})
                print(ds, pid, route, round(rows[-1]["mean"], 3), rows[-1]["orientation"], rows[-1]["seconds"], "s", flush=True)
    lines = ["# Input routes: the same held-out patients as a converted NIfTI, a folder of JPEG slices and a naive restack",
             "", f"Command: `python benchmarks/bench_input_routes.py --src {a.src} --out {a.out}`", "",
             "Dice against the source's label files in the source's own grid (3D, mean over classes and patients).", "",
             "| dataset | route | patients | mean Dice | orientation used | seconds per patient |", "|---|---|---:|---:|---|---:|"]
    for ds in DATASETS:
        for route in ("converted", "picture folder", "restacked", "restacked, header trusted"):
            rr = [r for r in rows if r["dataset"] == ds and r["route"] == route]
            if rr:
                how = sorted({r["orientation"] for r in rr})
                lines.append(f"| {ds} | {route} | {len(rr)} | {np.mean([r['mean'] for r in rr]):.3f} | {'; '.join(how)} | "
                             f"{np.mean([r['seconds'] for r in rr]):.0f} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
