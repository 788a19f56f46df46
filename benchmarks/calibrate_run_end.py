"""Per-term trimming of a structure's weak end slices (calibration key ``run_end_presence``), chosen on val.

    python benchmarks/tune_textseg.py --split val --datasets acdc-cmr:8 --emb-cache cache/tune_emb \\
        --variants 'base={"run_end_presence":null}' 're5={"run_end_presence":0.5}' 're7={"run_end_presence":0.7}' \\
                   're8={"run_end_presence":0.8}' 're9={"run_end_presence":0.9}' 're95={"run_end_presence":0.95}' \\
        --out benchmarks/results/run_end_val.md
    python benchmarks/calibrate_run_end.py benchmarks/results/run_end_val.json --dataset acdc-cmr \\
        --write src/medground/models/weights/grounding.pt

Rule (fixed before the test split was run): the first variant is the base (no trimming); a value is eligible when
the dataset's mean val Dice is at least the base's - 0.005 and its slice sensitivity at least the base's - 0.03;
among those the one with the highest slice specificity wins (ties: higher sensitivity, then the smaller value), and
only if it raises specificity over the base. The winner is recorded for every class the dataset scored, on top of
the checkpoint's other calibration.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def rates(sp: dict) -> tuple[float, float]:
    return sp["TN"] / max(1, sp["TN"] + sp["FP"]), sp["TP"] / max(1, sp["TP"] + sp["FN"])


def choose(results: dict, variants: dict, dice_tol=0.005, sens_tol=0.03):
    names = list(variants)
    base = names[0]
    b_spec, b_sens = rates(results[base]["slice_presence"])
    b_dice = results[base]["mean"]
    best, key = None, None
    for n in names[1:]:
        r = results[n]
        spec, sens = rates(r["slice_presence"])
        if r["mean"] < b_dice - dice_tol or sens < b_sens - sens_tol or spec <= b_spec:
            continue
        k = (spec, sens, -float(variants[n]["run_end_presence"]))
        if key is None or k > key:
            best, key = n, k
    return best


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("json", help="the .json tune_textseg.py --out wrote")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--write", default=None, help="checkpoint to record the choice in")
    a = ap.parse_args(argv)
    doc = json.loads(Path(a.json).read_text())
    variants, results = doc["variants"], doc["results"][a.dataset]
    for n, r in results.items():
        spec, sens = rates(r["slice_presence"])
        print(f"{n}: Dice {r['mean']:.3f}, slice specificity {spec:.3f}, sensitivity {sens:.3f}")
    best = choose(results, variants)
    if best is None:
        print("no value qualifies: nothing recorded")
        return
    value = float(variants[best]["run_end_presence"])
    print(f"chosen: {best} (run_end_presence {value})")
    if a.write:
        from medground.models.grounding import load_grounding, set_calibration
        from medground.ontology import Ontology

        onto = Ontology.default()
        ckpt = load_grounding(a.write)
        table = {t: dict(v) for t, v in (ckpt.calibration or {}).items()}
        for cls in results[best]["per_class"]:
            for t in onto.resolve(cls).ids:
                table.setdefault(t, {"mask_from": "decoder", "presence_threshold": 0.5})["run_end_presence"] = value
        note = (f"{ckpt.card.get('calibration_chosen', '')}; then run_end_presence {value} for the classes of "
                f"{a.dataset} (benchmarks/calibrate_run_end.py on {doc.get('split', 'val')}: highest slice "
                "specificity with Dice within 0.005 and slice sensitivity within 0.03 of no trimming)")
        set_calibration(a.write, table, note)
        print(f"wrote into {a.write}")


if __name__ == "__main__":
    main()
