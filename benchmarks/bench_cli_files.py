"""The command line on held-out patients exactly as the shared data stores them, scored on the files it writes.

    python benchmarks/bench_cli_files.py --src ../shared/data --out benchmarks/results/cli_files.md

What an evaluator with other patients' images in the same layout does: run ``medground segment <input> --prompt
<class> ... --out DIR`` once per input (BTCV / CHAOS: the folder of JPEG slices; ACDC: the NIfTI; JSRT: the
radiograph; covid-cxr: the radiograph, "lungs" against its lung mask), then read every mask file the run names in
``findings.json`` as it is written (NIfTI through nibabel's array, PNG through PIL) and compare it with the source's
own label file read the same way, without any transpose or resampling. Dice per class (both empty: 1), mean over classes and cases; the exit code and seconds per input
(a fresh process each: model loading included).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

JSRT = {"heart": "heart", "left_lung": "left lung", "right_lung": "right lung", "left_clavicle": "left clavicle",
        "right_clavicle": "right clavicle"}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def _run(inp: Path, prompts: list[str], out: Path) -> tuple[int, float, dict | None, str]:
    cmd = [sys.executable, "-m", "medground", "segment", str(inp), "--out", str(out), "--quiet"]
    for p in prompts:
        cmd += ["--prompt", p]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t
    doc = json.loads((out / "findings.json").read_text()) if r.returncode == 0 else None
    return r.returncode, dt, doc, (r.stderr.strip().splitlines() or [""])[-1] if r.returncode else ""


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) > 0


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return _png(path)
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj) > 0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--root", default="cache/data", help="converted datasets (for the patient-level splits)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--datasets", default="btcv-ct:5,chaos-mr:3,acdc-cmr:10,jsrt-cxr:10,covid-cxr:46")
    ap.add_argument("--out", default="benchmarks/results/cli_files.md")
    a = ap.parse_args(argv)
    import nibabel as nib

    from medground.ontology import Ontology

    onto = Ontology.default()
    src, root = Path(a.src), Path(a.root)
    rows, per_class = [], {}
    for spec in a.datasets.split(","):
        ds, n = spec.split(":")
        cases = json.loads((root / ds / "splits.json").read_text())[a.split][: int(n)]
        if ds == "jsrt-cxr":
            classes = dict(JSRT)
        elif ds == "covid-cxr":  # the whole lung field of each radiograph (metadata.csv names its mask)
            import csv

            with open(src / ds / "metadata.csv", newline="") as fh:
                covid = {Path(r["image"]).stem: r for r in csv.DictReader(fh) if r.get("lung_mask")}
            classes = {"lung_mask": "lungs"}
        else:
            names = json.loads((src / ds / "labels.json").read_text())
            classes = {int(k): onto.get(v).name for k, v in names.items()}
        prompts = list(classes.values())
        for case in cases:
            if ds == "covid-cxr":
                inp = src / ds / covid[case]["image"]
                refs = {"lungs": _png(src / ds / covid[case]["lung_mask"])}
            elif ds == "jsrt-cxr":
                inp = src / ds / "images" / f"{case}.jpg"
                refs = {p: _png(src / ds / "masks" / k / f"{case}.png") for k, p in classes.items()}
            else:
                inp = src / ds / "images" / (case if ds != "acdc-cmr" else f"{case}.nii.gz")
                lab = np.asarray(nib.load(str(src / ds / "labels" / f"{case}.nii.gz")).dataobj)
                refs = {p: lab == k for k, p in classes.items()}
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                rc, dt, doc, err = _run(inp, prompts, out)
                scores = {}
                if doc is not None:
                    for f in doc["findings"]:
                        pred = _read(out / f["mask_file"])
                        ref = refs[f["name"]]
                        if pred.shape != ref.shape:
                            scores[f["name"]] = 0.0
                            err = f"{f['mask_file']}: shape {pred.shape} vs reference {ref.shape}"
                        else:
                            scores[f["name"]] = _dice(pred, ref)
            for p in prompts:
                per_class.setdefault((ds, p), []).append(scores.get(p, 0.0))
            mean = float(np.mean([scores.get(p, 0.0) for p in prompts]))
            rows.append((ds, case, rc, dt, mean, err if rc or err else ""))
            print(f"{ds} {case}: rc {rc}, {dt:.0f} s, mean Dice {mean:.3f} {err}", flush=True)
    lines = ["# The command line on held-out inputs as stored, scored on the files it writes", "",
             f"Command: `python benchmarks/bench_cli_files.py --datasets {a.datasets} --split {a.split}`", "",
             "Inputs exactly as `../shared/data` stores them (BTCV / CHAOS: a folder of JPEG slices; ACDC: NIfTI; "
             "JSRT / covid-cxr: the radiograph). Each mask file named in `findings.json` read as written (NIfTI: nibabel's "
             "array; PNG: PIL) against the source's label file read the same way, no transpose or resampling.", "",
             "| dataset | class | cases | Dice |", "|---|---|---:|---:|"]
    for ds in dict.fromkeys(r[0] for r in rows):
        cls = [(p, v) for (d, p), v in per_class.items() if d == ds]
        for p, v in cls:
            lines.append(f"| {ds} | {p} | {len(v)} | {np.mean(v):.3f} |")
        lines.append(f"| {ds} | **mean** | {len(cls[0][1])} | **{np.mean([np.mean(v) for _, v in cls]):.3f}** |")
    lines += ["", "| dataset | case | exit code | seconds (fresh process) | mean Dice | note |",
              "|---|---|---:|---:|---:|---|"]
    lines += [f"| {d} | {c} | {rc} | {dt:.0f} | {m:.3f} | {e} |" for d, c, rc, dt, m, e in rows]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
