"""Text-prompted vs box-prompted segmentation on held-out patients of the converted shared datasets.

    python -m medground.data.convert --src ../shared/data --dst cache/data      # once
    python benchmarks/bench_textseg.py --root cache/data --out benchmarks/results/textseg.md

Text mode: the prompt is the structure's name (grounding head -> boxes -> LiteMedSAM). Box mode:
LiteMedSAM given the reference's bounding box on every slice where the reference is present.
3D Dice per volume; slice-level presence on volumes (reported on the slices where the structure is).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medground.evaluate.runner import evaluate_dataset

DEFAULT = "btcv-ct:2,chaos-mr:3,acdc-cmr:4,jsrt-cxr:37,covid-cxr:54"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--datasets", default=DEFAULT, help="name:max_cases,...")
    ap.add_argument("--modes", default="text,box")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default="benchmarks/results/textseg.md")
    ap.add_argument("--weights", default=None, help="grounding checkpoint (default: the packaged one)")
    ap.add_argument("--text-config", default=None, help='TextConfig fields as JSON, e.g. \'{"min_extent": 0.5}\'')
    ap.add_argument("--emb-cache", default=None,
                    help="keep LiteMedSAM embeddings of every slice on disk here (shared with tune_textseg.py)")
    a = ap.parse_args(argv)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for

    model, grounding = models_for(a.emb_cache, a.weights)
    from medground.segment.text import TextConfig

    cfg = TextConfig(**json.loads(a.text_config)) if a.text_config else None
    lines = ["# Text-prompted (grounding) vs box-prompted segmentation, held-out patients", "",
             f"Command: `python benchmarks/bench_textseg.py --root {a.root} --datasets {a.datasets} --modes {a.modes} "
             f"--split {a.split}" + (f" --weights {a.weights}" if a.weights else "")
             + (f" --text-config '{a.text_config}'" if a.text_config else "") + "`",
             f"Split: `{a.split}` of each dataset's patient-level splits (seed 0). Dice is per case (3D for volumes).",
             "", "| dataset | class | cases | Dice text | Dice box |", "|---|---|---:|---:|---:|"]
    raw = {}
    summary_rows = []
    for spec in a.datasets.split(","):
        name, _, n = spec.partition(":")
        res = {}
        for mode in a.modes.split(","):
            t = time.time()
            agg = evaluate_dataset(Path(a.root) / name, a.split, None, mode, int(n) if n else None, log=lambda m: None,
                                   model=model, grounding=grounding, text_config=cfg)
            s = agg.summary()
            res[mode] = {"per_class": {k: v["dice"]["mean"] for k, v in s["per_class"].items()},
                         "overall": s["overall"]["dice"]["mean"], "seconds": round(time.time() - t),
                         "n_cases": len({r["case_id"] for r in agg.rows}),
                         "presence": s["overall"]["presence"], "slice_presence": agg.slice_presence}
            print(name, mode, res[mode]["overall"], res[mode]["seconds"], "s", flush=True)
        raw[name] = res
        classes = sorted(set().union(*[r["per_class"] for r in res.values()]))
        for c in classes:
            vals = [res.get(m, {}).get("per_class", {}).get(c) for m in ("text", "box")]
            lines.append(f"| {name} | {c} | {res[next(iter(res))]['n_cases']} | " +
                         " | ".join("–" if v is None else f"{v:.3f}" for v in vals) + " |")
        ov = [res.get(m, {}).get("overall") for m in ("text", "box")]
        summary_rows.append(f"| {name} | **mean** | {res[next(iter(res))]['n_cases']} | " +
                            " | ".join("–" if v is None else f"**{v:.3f}**" for v in ov) + " |")
    lines += summary_rows
    lines += ["", "Slice-level presence of the text path on volumes (structure reported on a slice vs reference):", "",
              "| dataset | TP | FP | TN | FN | specificity (absent reported absent) | sensitivity |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in raw.items():
        sp = res.get("text", {}).get("slice_presence")
        if sp and sum(sp.values()):
            spec = sp["TN"] / max(1, sp["TN"] + sp["FP"])
            sens = sp["TP"] / max(1, sp["TP"] + sp["FN"])
            lines.append(f"| {name} | {sp['TP']} | {sp['FP']} | {sp['TN']} | {sp['FN']} | {spec:.3f} | {sens:.3f} |")
    lines += ["", "Seconds per dataset and mode: " + ", ".join(f"{n}/{m}: {r['seconds']}" for n, rr in raw.items()
                                                          for m, r in rr.items())]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
