"""Brain structures by atlas registration: accuracy under known deformations, and speed.

The subject is a *different* brain template than the one registered (the Julich-Brain ICBM 2009c
template, not the CIT168 T1w template the atlas was drawn on; both in MNI152 2009c space), deformed by
a known random transform (affine: rotations up to 12 degrees, per-axis scale 0.88-1.15, translation
up to 15 mm; plus a smooth non-linear displacement up to ~3 mm), resampled onto a new grid (spacing
and axis order/flips vary: 1 mm isotropic to 0.9 x 0.9 x 3 mm slices, RAS or LPS), with a smooth
bias field, a gamma change and noise. The reference is the CIT168 label map carried through the same
transform. Each case runs ``segment_atlas`` (what ``medground segment --prompt "left putamen"`` runs);
"without registration" scores the atlas labels placed by the headers alone (as if the scan were
already in MNI space), to show what registration buys.

    python benchmarks/bench_atlas.py --cases 6 --out benchmarks/results/atlas.md

Not measured here: other people's brains against expert labels (there are none in ../shared/data);
the deformations are synthetic and the subject is a template (no skull, no lesions).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def random_case(sub, sub_aff, lab, lab_aff, rng, spacing, flip):
    import SimpleITK as sitk

    from medground.segment.atlas import _to_sitk

    ref_img = _to_sitk(sub, sub_aff)
    ref_lab = _to_sitk(lab.astype(np.uint16), lab_aff, np.uint16)
    # the output grid: the subject's bounding box (+10 mm), new spacing, RAS or LPS axis order
    shape0 = np.array(sub.shape)
    corners = np.array([[i, j, k, 1] for i in (0, shape0[0] - 1) for j in (0, shape0[1] - 1) for k in (0, shape0[2] - 1)])
    w = (sub_aff @ corners.T).T[:, :3]
    lo, hi = w.min(0) - 10, w.max(0) + 10
    sp = np.asarray(spacing, float)
    n = np.ceil((hi - lo) / sp).astype(int) + 1
    d = np.diag([-1.0, -1.0, 1.0]) if flip else np.eye(3)  # LPS or RAS voxel axes
    origin = np.where(np.diag(d) < 0, hi, lo)
    aff = np.eye(4)
    aff[:3, :3] = d * sp
    aff[:3, 3] = origin
    out = _to_sitk(np.zeros(tuple(n), np.float32), aff)
    # known transform: output point -> subject point
    ang = np.radians(rng.uniform(-12, 12, 3))
    scale = rng.uniform(0.88, 1.15, 3)
    centre = (lo + hi) / 2
    a = sitk.AffineTransform(3)
    rot = sitk.Euler3DTransform(centre.tolist(), *ang.tolist())
    m = np.asarray(rot.GetMatrix()).reshape(3, 3) @ np.diag(scale)
    a.SetMatrix(m.flatten().tolist())
    a.SetCenter(centre.tolist())
    a.SetTranslation(rng.uniform(-15, 15, 3).tolist())
    # smooth displacement field on a coarse grid (~3 mm at most)
    coarse = _to_sitk(np.zeros((12, 12, 12), np.float32), np.diag([*(np.ptp(w, 0) + 20) / 11, 1]) @
                      np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    coarse.SetOrigin(lo.tolist())
    coarse.SetDirection(np.eye(3).flatten().tolist())
    disp = rng.normal(0, 1.2, (12, 12, 12, 3))
    from scipy import ndimage

    disp = np.stack([ndimage.gaussian_filter(disp[..., i], 1.2) for i in range(3)], -1)
    disp *= 3.0 / max(np.abs(disp).max(), 1e-6)
    field = sitk.GetImageFromArray(np.ascontiguousarray(disp.transpose(2, 1, 0, 3)), isVector=True)
    field.CopyInformation(coarse)
    field = sitk.Resample(field, out, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    dft = sitk.DisplacementFieldTransform(field)
    tx = sitk.CompositeTransform([a, dft])
    img = sitk.GetArrayFromImage(sitk.Resample(ref_img, out, tx, sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
    lab_out = sitk.GetArrayFromImage(sitk.Resample(ref_lab, out, tx, sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0)
    brain_out = sitk.GetArrayFromImage(sitk.Resample(_to_sitk((sub > 0).astype(np.uint8), sub_aff, np.uint8), out, tx,
                                                     sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0) > 0
    # intensity: smooth bias field, gamma, noise
    z = np.linspace(-1, 1, img.shape[2])[None, None, :]
    x = np.linspace(-1, 1, img.shape[0])[:, None, None]
    bias = 1 + 0.2 * rng.uniform(-1, 1) * x + 0.2 * rng.uniform(-1, 1) * z
    v = np.clip(img / max(img.max(), 1e-6), 0, 1) ** rng.uniform(0.8, 1.25) * bias
    v = v + rng.normal(0, 0.03, v.shape) * (v > 0.02)
    return (np.clip(v, 0, None) * 1000).astype(np.float32), lab_out.astype(np.uint16), aff, brain_out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bspline", action="store_true", help="add the coarse B-spline stage (AtlasConfig.bspline)")
    ap.add_argument("--out", default="benchmarks/results/atlas.md")
    args = ap.parse_args(argv)

    import SimpleITK as sitk

    from medground.data.registry import get_dataset
    from medground.evaluate.metrics import compute_metrics
    from medground.io.image import MedImage
    from medground.segment import atlas as A

    root = A.find_atlas_root()
    _, cit_lab, _, cit_laff = A._load_atlas(root, "brain-cit168")
    jul, _, jul_aff, _ = A._load_atlas(root, "brain-julich")
    # CIT168 labels on the Julich template's grid through world coordinates (same MNI space)
    ref = A._to_sitk(np.zeros(jul.shape, np.uint8), jul_aff, np.uint8)
    lab = sitk.GetArrayFromImage(sitk.Resample(A._to_sitk(cit_lab, cit_laff, np.uint16), ref, sitk.Transform(),
                                               sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0)
    names = {v: t for v, t in get_dataset("brain-cit168").labels.items() if int(v)}
    grids = [((1.0, 1.0, 1.0), False), ((0.9, 0.9, 1.2), True), ((1.2, 1.2, 2.0), False), ((0.8, 0.8, 3.0), True)]
    rng = np.random.default_rng(args.seed)
    rows, times, brain_rows = [], [], []
    for k in range(args.cases):
        spacing, flip = grids[k % len(grids)]
        img, ref_lab, aff, ref_brain = random_case(jul, jul_aff, lab, jul_aff, rng, spacing, flip)
        image = MedImage.from_array(img, aff, modality="MR")
        t0 = time.time()
        res = A.segment_atlas(image, list(names.values()) + ["brain"], A.AtlasConfig(bspline=args.bspline))
        mb = compute_metrics(res.masks["brain"], ref_brain, spacing=spacing)
        brain_rows.append({"case": k, "dice": mb["dice"], "hd95": mb["hd95"]})
        times.append(time.time() - t0)
        # without registration: the atlas labels placed by world coordinates alone
        grid = A._to_sitk(np.zeros(img.shape, np.uint8), aff, np.uint8)
        naive = sitk.GetArrayFromImage(sitk.Resample(A._to_sitk(cit_lab, cit_laff, np.uint16), grid, sitk.Transform(),
                                                     sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0)
        for v, t in names.items():
            r = ref_lab == v
            if not r.any():
                continue
            m = compute_metrics(res.masks[t], r, spacing=spacing)
            m0 = compute_metrics(naive == v, r, spacing=spacing)
            rows.append({"case": k, "term": t, "dice": m["dice"], "hd95": m["hd95"], "dice_noreg": m0["dice"],
                         "ref_ml": float(r.sum() * np.prod(spacing) / 1000)})
        print(f"case {k}: spacing {spacing} {'LPS' if flip else 'RAS'}: mean Dice "
              f"{np.mean([r['dice'] for r in rows if r['case'] == k]):.3f} (no registration "
              f"{np.mean([r['dice_noreg'] for r in rows if r['case'] == k]):.3f}) [{times[-1]:.1f}s] {res.info['brain_check']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "brain": brain_rows, "seconds": times}, indent=1))
    by = {}
    for r in rows:
        by.setdefault(r["term"], []).append(r)
    lines = ["| structure | cases | mean volume (mL) | Dice (registration) | HD95 mm | Dice (header only, no registration) |",
             "|---|---:|---:|---:|---:|---:|"]
    for t, rs in sorted(by.items(), key=lambda kv: -np.mean([r["ref_ml"] for r in kv[1]])):
        hd = [r["hd95"] for r in rs if r["hd95"] is not None and np.isfinite(r["hd95"])]
        lines.append(f"| {t} | {len(rs)} | {np.mean([r['ref_ml'] for r in rs]):.2f} | {np.mean([r['dice'] for r in rs]):.3f} | "
                     f"{np.mean(hd) if hd else float('nan'):.1f} | {np.mean([r['dice_noreg'] for r in rs]):.3f} |")
    big = [r for r in rows if r["ref_ml"] >= 1.0]
    lines.append(f"| **mean, all** | {args.cases} | | **{np.mean([r['dice'] for r in rows]):.3f}** | | "
                 f"{np.mean([r['dice_noreg'] for r in rows]):.3f} |")
    lines.append(f"| **mean, structures >= 1 mL** | {args.cases} | | **{np.mean([r['dice'] for r in big]):.3f}** | | "
                 f"{np.mean([r['dice_noreg'] for r in big]):.3f} |")
    lines.append("")
    lines.append(f"Term \"brain\" (the CIT168 template's brain mask carried over) against the subject template's own "
                 f"brain mask (Julich-Brain ICBM 2009c, > 0): Dice {np.mean([r['dice'] for r in brain_rows]):.3f}, "
                 f"HD95 {np.mean([r['hd95'] for r in brain_rows]):.1f} mm (mean of {len(brain_rows)} cases).")
    lines.append("")
    lines.append(f"Registration + label transfer per case: {np.mean(times):.1f} s mean ({min(times):.1f}-{max(times):.1f} s), "
                 f"2 CPU cores.")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
