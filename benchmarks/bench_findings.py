"""Held-out scores of the findings grounding head (lesions, brain tumour, polyps, skin lesions).

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_findings.py [--out benchmarks/results/textseg_findings.md]

For every held-out case of configs/textseg_findings.yaml (the validation cases: never trained on):
* text path: ``segment_text`` with the prompts "lesion", "tumour", "brain tumour", "polyp", "skin lesion"
  (organ head + findings head, as `medground segment --prompt` runs them), Dice of the prompts that
  name the case's finding (3D Dice per volume, 2D per picture); also the organ head alone (the state
  before the findings head: `findings=None`);
* box path: LiteMedSAM given the bounding box of each connected component of the reference on every
  slice where it is present (the upper bound of the grounding step);
* presence: on volumes, per slice (sensitivity on slices with the lesion, specificity on lesion-free
  slices); and the "other domain" prompts (e.g. "polyp" on a CT, "skin lesion" on a colonoscopy frame)
  that must be reported absent (per slice of volumes, per picture).
Slices encoded while building the training cache are reused (cache/grounding_findings/full, keyed by
the exact network input); anything else is encoded by LiteMedSAM.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from embcache import CachedEncoder  # noqa: E402
from medground.evaluate.metrics import dice_score as dice

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["lesion", "tumour", "brain tumour", "polyp", "skin lesion"]
OWN = {"ct-lesions": ["lesion"], "mr-tumour": ["brain tumour", "tumour", "lesion"],
       "endoscopy-kvasir": ["polyp", "lesion"], "dermoscopy-ph2": ["skin lesion", "lesion"]}
OTHER = {"ct-lesions": ["brain tumour", "polyp", "skin lesion"], "mr-tumour": ["polyp", "skin lesion"],
         "endoscopy-kvasir": ["brain tumour", "skin lesion"], "dermoscopy-ph2": ["brain tumour", "polyp"]}


def box_path(pred, ref: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros(ref.shape, bool)
    for z in range(ref.shape[2]):
        lab, n = ndimage.label(ref[:, :, z])
        boxes = []
        for i in range(1, n + 1):
            c = lab == i
            if c.sum() < 5:
                continue
            xs, ys = np.where(c.any(axis=1))[0], np.where(c.any(axis=0))[0]
            boxes.append((xs[0], ys[0], xs[-1], ys[-1]))
        if boxes:
            for r in pred.predict_many(z, boxes=boxes):
                out[:, :, z] |= r.mask
    return out


def main(argv=None) -> None:
    import yaml

    import medground
    from medground.models import load_model
    from medground.models.grounding import FINDINGS_WEIGHTS, load_findings, load_grounding
    from medground.segment.predictor import SlicePredictor
    from medground.segment.text import TextConfig, segment_text
    from medground.train.findings import heldout_cases

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs/textseg_findings.yaml"))
    ap.add_argument("--weights", default=str(FINDINGS_WEIGHTS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/textseg_findings.md"))
    ap.add_argument("--json", default="/tmp/textseg_findings.json")
    ap.add_argument("--split", choices=("val", "test"), default="val",
                    help="test: the pictures' own test split (Kvasir-SEG, PH2) in place of their validation cases")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = yaml.safe_load(Path(a.config).read_text())
    cfg["data_root"] = str((Path(a.config).parent.parent / cfg["data_root"]).resolve()) \
        if not Path(cfg["data_root"]).is_absolute() else cfg["data_root"]
    model = CachedEncoder(load_model("litemedsam"), ROOT / cfg.get("cache_dir", "cache/grounding_findings") / "full",
                          write=False)
    organs = load_grounding()
    findings = load_findings(a.weights)
    cases = heldout_cases(cfg, a.split)
    rows = []
    t0 = time.time()
    from tqdm import tqdm

    for name, droot, case in tqdm(cases, desc="held-out cases", file=sys.stderr):
        img = medground.load(droot / case["image"])
        lab = medground.load(droot / case["label"], check=False).data
        lab = lab if lab.ndim == 3 else lab[..., 0]
        ref = lab > 0
        res, extra = segment_text(img, PROMPTS, model=model, grounding=organs, findings=findings)
        pm = {p: r.mask for p, r in zip(PROMPTS, res)}
        res0, _ = segment_text(img, OWN[name][:1], model=model, grounding=organs, findings=None,
                               cfg=TextConfig(untrained_findings="zero-shot"))  # the organ head's own guess
        pred = SlicePredictor(img, model=model)
        bx = box_path(pred, ref)
        rz = ref.any(axis=(0, 1))
        row = {"dataset": name, "case": case["id"], "ndim": img.ndim, "slices": int(ref.shape[2]),
               "lesion_slices": int(rz.sum()), "orientation": extra["orientation"].get("transform", "header"),
               "dice_text": {p: dice(pm[p], ref) for p in OWN[name]},
               "dice_organ_head_only": dice(res0[0].mask, ref), "dice_box": dice(bx, ref),
               "presence_prob": {p: r.info["presence_probability"] for p, r in zip(PROMPTS, res)}}
        pz = {p: pm[p].any(axis=(0, 1)) for p in PROMPTS}
        row["slice_presence"] = {p: {"TP": int((pz[p] & rz).sum()), "FN": int((~pz[p] & rz).sum()),
                                     "TN": int((~pz[p] & ~rz).sum()), "FP": int((pz[p] & ~rz).sum())}
                                 for p in OWN[name]}
        row["other_absent"] = {p: [int((~pz[p]).sum()), int(pz[p].size)] for p in OTHER[name]}
        rows.append(row)
    secs = time.time() - t0
    Path(a.json).write_text(json.dumps(rows, indent=1))
    write_md(rows, Path(a.out), secs, model, findings, a)
    print(Path(a.out).read_text())


def _rel(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def _command(args, out: Path) -> str:
    """The command line that reproduces this run (options left at their defaults not shown)."""
    from medground.models.grounding import FINDINGS_WEIGHTS

    cmd = "nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/bench_findings.py"
    for key, default in (("config", ROOT / "configs/textseg_findings.yaml"), ("weights", FINDINGS_WEIGHTS)):
        if Path(getattr(args, key)).resolve() != Path(default).resolve():
            cmd += f" --{key} {_rel(getattr(args, key))}"
    if args.split != "val":
        cmd += f" --split {args.split}"
    return cmd + f" --out {_rel(out)}"


def write_md(rows, out: Path, secs: float, model, findings, args) -> None:
    names = list(OWN)
    per = {n: len({r["case"] for r in rows if r["dataset"] == n}) for n in names}
    train = (findings.card.get("datasets") or {})
    trained = ", ".join(f"{n} {train[n].get('train', 0)}" for n in names if n in train)
    L = ["# Text-prompted segmentation of findings (second grounding head)", "",
         f"Command: `{_command(args, out)}` (weights `{findings.card.get('name', '?')}`, trained by "
         "`python -m medground.train.findings --config <its config>`).", "",
         "Held-out cases only (never trained on): " + ", ".join(f"{n} {k}" for n, k in per.items() if k)
         + (" (the pictures: their whole `test` split)" if args.split == "test"
            else " (the pictures: the first of their `val` split)")
         + f". Training slices / pictures of this head (no augmented copies): {trained}. Small data: read "
         "the volumes' figures as such.", "",
         "Dice: 3D per volume (CT, MR), 2D per picture, mean over cases (min-max). "
         "Text = `segment_text` with the prompt (organ + findings heads, as the CLI runs it); "
         "organ head only = the same prompt without the findings head (before this head existed); "
         "box = LiteMedSAM with the reference's component boxes on every slice with the lesion.", "",
         "| dataset | cases | prompt | text Dice | organ head only | box Dice |",
         "| --- | --- | --- | --- | --- | --- |"]

    def fmt(v):
        v = np.asarray(v, float)
        return f"{v.mean():.3f} ({v.min():.2f}-{v.max():.2f})" if v.size > 1 else f"{v.mean():.3f}"

    for n in names:
        rs = [r for r in rows if r["dataset"] == n]
        if not rs:
            continue
        for i, p in enumerate(OWN[n]):
            L.append(f"| {n} | {len(rs)} | {p} | {fmt([r['dice_text'][p] for r in rs])} | "
                     f"{fmt([r['dice_organ_head_only'] for r in rs]) if i == 0 else ''} | "
                     f"{fmt([r['dice_box'] for r in rs]) if i == 0 else ''} |")
    L += ["", "## Presence", "",
          "Volumes, per slice, after the 3D clean-up (the slices `segment` reports the finding on): "
          "sensitivity on slices with the lesion, specificity on lesion-free slices. Pictures: every "
          "held-out picture shows the finding, so only sensitivity applies.", "",
          "| dataset | prompt | slices with lesion found | lesion-free slices reported absent |",
          "| --- | --- | --- | --- |"]
    for n in names:
        rs = [r for r in rows if r["dataset"] == n]
        for p in OWN[n] if rs else []:
            c = {k: sum(r["slice_presence"][p][k] for r in rs) for k in ("TP", "FN", "TN", "FP")}
            sens = f"{c['TP']}/{c['TP'] + c['FN']} ({c['TP'] / max(1, c['TP'] + c['FN']):.2f})"
            spec = f"{c['TN']}/{c['TN'] + c['FP']} ({c['TN'] / max(1, c['TN'] + c['FP']):.2f})" \
                if c["TN"] + c["FP"] else "n/a"
            L.append(f"| {n} | {p} | {sens} | {spec} |")
    L += ["", "Prompts of another domain, which must be reported absent (per slice of volumes, per picture):", "",
          "| dataset | prompt | reported absent |", "| --- | --- | --- |"]
    for n in names:
        rs = [r for r in rows if r["dataset"] == n]
        for p in OTHER[n] if rs else []:
            k = sum(r["other_absent"][p][0] for r in rs)
            t = sum(r["other_absent"][p][1] for r in rs)
            L.append(f"| {n} | {p} | {k}/{t} ({k / max(1, t):.2f}) |")
    L += ["", f"Grid-level validation scores of the head at the end of training (model card): "
          f"{json.dumps({k: round(v, 3) for k, v in findings.card.get('val_scores_grid_level', {}).items() if isinstance(v, float)})}.",
          "", f"Run time {secs:.0f} s on this shared 2-core CPU ({model.hits} slice embeddings reused from the "
          f"training cache, {model.misses} encoded).", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L))


if __name__ == "__main__":
    main()
