"""The anatomy check on header volumes (``TextConfig.header_check_*``): how strongly the orientation classifier
agrees with correctly oriented headers, and how strongly it objects to wrong ones.

    python benchmarks/bench_header_check.py --out benchmarks/results/header_check.md

Correct headers: every case of every converted 3D dataset in ``--root`` (canonical volumes under an LPS header)
and the real NIfTI / DICOM volumes of ``--src`` (TotalSegmentator CT and MR, the dcmqi 3-slice CT series, the
brain scans, the tumour MRIs). Wrong headers: the BTCV test patients' JPEG slices stacked as stored under their label
file's affine (that puts the spine at the top; CHAOS's, stacked the same way, happen to be right) and three real HU
CT volumes whose slices were flipped upside down under their own header. Per volume: the probability of the pair
(header's own view, its left-right mirror) and of the likeliest other pair; the header is overruled when the first
is <= ``--max-identity`` and the second >= ``--min-prob`` (the shipped defaults).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def pair_probs(image, orient_net, max_identity: float, min_prob: float):
    """(p of the header's own view with its mirror, p of the likeliest other pair, its name, overruled?) after the
    header's reorientation, by the rule ``segment_text`` applies."""
    from medground.models.orientation import NAMES
    from medground.segment.text import _orientation_probs, canonicalize, header_contradiction

    hc = canonicalize(image, None)  # the header's reorientation only
    probs, _ = _orientation_probs(hc.image, orient_net)
    pair, k, overrules = header_contradiction(probs, max_identity, min_prob)
    return float(pair[0]), float(pair[k]), NAMES[k], overrules


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--out", default="benchmarks/results/header_check.md")
    ap.add_argument("--max-identity", type=float, default=None, help="default: TextConfig's")
    ap.add_argument("--min-prob", type=float, default=None, help="default: TextConfig's")
    a = ap.parse_args(argv)
    import nibabel as nib

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_input_routes import restack

    import medground
    from medground.data import list_cases
    from medground.models.grounding import load_grounding
    from medground.segment.text import TextConfig, canonicalize, orientation_unknown

    cfg = TextConfig()
    max_id = cfg.header_check_max_identity if a.max_identity is None else a.max_identity
    min_p = cfg.header_check_min_prob if a.min_prob is None else a.min_prob
    net = load_grounding().orientation
    src, root = Path(a.src), Path(a.root)
    rows = []

    def add(group, name, path, correct):
        try:
            image = medground.load(path)
        except Exception as e:  # noqa: BLE001 - a file this build cannot read is listed, not fatal
            print("skip", name, e)
            return
        if image.ndim != 3 or not image.has_geometry or orientation_unknown(image):
            return  # the header check applies to volumes with an oriented header only
        own, other, which, over = pair_probs(image, net, max_id, min_p)
        rows.append({"group": group, "name": name, "correct_header": correct, "own": own, "other": other,
                     "other_view": which, "overruled": bool(over)})
        print(group, name, f"{own:.3f} {other:.3f} {which}", "OVERRULED" if over else "", flush=True)

    for ds in sorted(p for p in root.iterdir() if (p / "dataset.json").exists()):
        for c in list_cases(ds, None):
            f = ds / c["image"]
            if f.name.endswith((".nii.gz", ".nii")):
                add(f"converted {ds.name}", c["id"], f, True)
    ts = src / "totalsegmentator"
    for f in (ts / "example_ct.nii.gz", ts / "example_ct_sm.nii.gz", ts / "example_mr_sm.nii.gz",
              ts / "example_ct_dicom", src / "ct-3slice"):
        add("shared data (real headers)", f.name, f, True)
    for f in sorted((src / "brain-atlases").glob("*.nii.gz")) + sorted((src / "mr-tumour").glob("*image*.nrrd")):
        add("shared data (real headers)", f.name, f, True)
    tmp = Path(tempfile.mkdtemp(prefix="mg_hdr_"))
    for ds in ("btcv-ct", "chaos-mr"):
        for c in list_cases(root / ds, "test"):
            p = restack(src, ds, c["id"], tmp / f"{ds}_{c['id']}.nii.gz")
            # CHAOS's label affine happens to be right for its slices (the converted route agrees): a correct header
            add(f"restacked {ds}", c["id"], p, ds != "btcv-ct")
    # real HU CT whose slices were flipped upside down (rows reversed) but kept their header: a wrong header
    for f in (ts / "example_ct.nii.gz", ts / "example_ct_dicom", src / "ct-3slice"):
        try:
            c = canonicalize(medground.load(f), None).image  # LPS volume, header correct
        except Exception as e:  # noqa: BLE001
            print("skip", f, e)
            continue
        p = tmp / f"flipped_{f.name.replace('.nii.gz', '')}.nii.gz"
        nib.save(nib.Nifti1Image(np.ascontiguousarray(c.data[:, ::-1]), c.affine), str(p))
        add("real HU CT, slices flipped upside down", f.name, p, False)
    ok = [r for r in rows if r["correct_header"]]
    bad = [r for r in rows if not r["correct_header"]]
    lines = ["# Anatomy check on header volumes", "",
             f"Command: `python benchmarks/bench_header_check.py --src {a.src} --root {a.root}`", "",
             f"Overruled when p(header's view + its mirror) <= {max_id} and p(another pair) >= {min_p}.", "",
             "| volumes | header | n | overruled | p(header's view) min / median | p(other pair) max / median |",
             "|---|---|---:|---:|---|---|"]
    for g in sorted({r["group"] for r in rows}):
        for correct in (True, False):
            rr = [r for r in rows if r["group"] == g and r["correct_header"] == correct]
            if rr:
                own = [r["own"] for r in rr]
                oth = [r["other"] for r in rr]
                lines.append(f"| {g} | {'correct' if correct else 'wrong'} | {len(rr)} | {sum(r['overruled'] for r in rr)} | "
                             f"{min(own):.3f} / {np.median(own):.3f} | {max(oth):.3f} / {np.median(oth):.3f} |")
    lines += ["", f"Correct headers overruled: {sum(r['overruled'] for r in ok)} of {len(ok)}; "
              f"wrong headers caught: {sum(r['overruled'] for r in bad)} of {len(bad)}.", "",
              "Closest calls among correct headers (lowest p of the header's view):", ""]
    for r in sorted(ok, key=lambda r: r["own"])[:8]:
        lines.append(f"- {r['group']} / {r['name']}: {r['own']:.3f} vs {r['other_view']} {r['other']:.3f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
