"""Wall time of the whole `medground segment` command with text prompts (issue 3's speed targets).

    python benchmarks/bench_text_speed.py --root cache/data --out benchmarks/results/text_speed.md

* 3D: a 512 x 512 x 100 CT made from a BTCV *test* volume (patient_01) resampled to that grid over the
  same physical extent (0.633 x 0.633 x 4.2 mm), 5 prompts, once per ``--slices`` mode; the table gives
  the slices the encoder saw and how far the adaptive masks are from the every-slice masks (Dice).
* 2D: a JSRT radiograph (512 x 512 PNG export), 5 prompts.

Each run is a fresh process (imports, model loading and writing the outputs included), as a user runs it.
Run on an otherwise idle machine; the ONNX encoder export is made once before timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS_3D = ["liver", "spleen", "left kidney", "right kidney", "aorta"]
PROMPTS_2D = ["left lung", "right lung", "heart", "left clavicle", "right clavicle"]


def make_ct512(root: Path, dst: Path) -> Path:
    import nibabel as nib
    from scipy import ndimage

    src = nib.load(root / "btcv-ct" / "cases" / "patient_01" / "image.nii.gz")
    data = np.asarray(src.dataobj, dtype=np.float32)
    target = (512, 512, 100)
    factors = [t / s for t, s in zip(target, data.shape)]
    out = ndimage.zoom(data, factors, order=1)
    aff = src.affine.copy()
    aff[:3, :3] = aff[:3, :3] @ np.diag([1 / f for f in factors])
    nib.save(nib.Nifti1Image(out.astype(np.int16), aff), dst)
    return dst


def run_cli(image: Path, prompts: list[str], out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "medground", "segment", str(image), "--out", str(out), "--quiet", "--no-overlay"]
    for p in prompts:
        cmd += ["--prompt", p]
    t = time.perf_counter()
    subprocess.run(cmd + extra, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def in_process(image: Path, prompts: list[str], out: Path, repeats: int) -> list[float]:
    """Seconds per image once the models are loaded (as in `medground serve` or a batch run): reading the
    file, segmenting, writing masks, findings.json and overlays."""
    import medground
    from medground.segment.outputs import write_results
    from medground.segment.text import segment_text

    segment_text(medground.load(image), prompts[:1])  # load the models
    times = []
    for r in range(repeats + 1):
        t = time.perf_counter()
        img = medground.load(image)
        res, extra = segment_text(img, prompts)
        write_results(img, res, out / str(r), input_path=str(image), overlay=True, dicom_seg=None, extra=extra)
        times.append(time.perf_counter() - t)
    return times[1:]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--out", default="benchmarks/results/text_speed.md")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    root = Path(a.root)
    work = Path(tempfile.mkdtemp(prefix="mg-speed-"))
    try:
        ct = make_ct512(root, work / "ct512.nii.gz")
        cxr = sorted((root / "jsrt-cxr" / "cases").glob("*/image.png"))[0]
        run_cli(cxr, PROMPTS_2D[:1], work / "warm", [])  # ONNX export and caches, not timed
        rows = []
        masks = {}
        for mode in ("adaptive", "all"):
            times = []
            for r in range(a.repeats):
                o = work / f"ct_{mode}_{r}"
                times.append(run_cli(ct, PROMPTS_3D, o, ["--slices", mode]))
            doc = json.loads((o / "findings.json").read_text())
            masks[mode] = o
            rows.append(("512x512x100 CT", mode, len(PROMPTS_3D), doc["slice_sampling"]["slices_encoded"], times))
        import nibabel as nib

        agree = {}
        for f in sorted(masks["all"].glob("*.nii.gz")):
            if f.name.startswith("labels"):
                continue
            x = np.asarray(nib.load(f).dataobj) > 0
            y = np.asarray(nib.load(masks["adaptive"] / f.name).dataobj) > 0
            agree[f.name.replace(".nii.gz", "")] = round(float(2 * (x & y).sum() / max(1, x.sum() + y.sum())), 4)
        times = [run_cli(cxr, PROMPTS_2D, work / f"cxr_{r}", []) for r in range(a.repeats)]
        rows.append(("JSRT radiograph 512x512 (PNG), whole command", "-", len(PROMPTS_2D), 1, times))
        rows.append(("JSRT radiograph 512x512 (PNG), models loaded", "-", len(PROMPTS_2D), 1,
                     in_process(cxr, PROMPTS_2D, work / "cxr_in", a.repeats)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["# Text-prompted segmentation: wall time of the whole command", "",
             f"Command: `python benchmarks/bench_text_speed.py --root {a.root}` "
             f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads default).", "",
             "Each time is one fresh `medground segment ... --quiet --no-overlay` process (imports, model loading, "
             "encoding, decoding, writing NIfTI/JSON), except the 'models loaded' row: one image after another in "
             "one process (reading, segmenting, writing masks, findings.json and overlays), as `medground serve` "
             "or a --boxes batch runs.", "",
             "| input | --slices | prompts | slices encoded | seconds (each run) | best |", "|---|---|---:|---:|---|---:|"]
    for name, mode, n, enc, ts in rows:
        lines.append(f"| {name} | {mode} | {n} | {enc} | {', '.join(f'{t:.1f}' for t in ts)} | {min(ts):.1f} |")
    lines += ["", "Adaptive vs every-slice masks on the CT (Dice between the two outputs): "
              + ", ".join(f"{k} {v:.3f}" for k, v in agree.items()), ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
