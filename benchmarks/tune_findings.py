"""Per-term inference settings of the findings head on pictures, chosen on validation pictures.

    python benchmarks/tune_findings.py --split val --choose --write <copy of grounding_findings.pt> \
        --variants 'as_is={}' 'heat={"mask_from": "heat"}' 'margin4={"box_margin": 4}' \
        --out benchmarks/results/findings_calibration_val.md

The organ head's settings (mask source, box margin, ...) were chosen per term on validation patients
(tune_textseg.py); the findings head had none, so every finding was drawn by LiteMedSAM inside the heat box.
Here each variant is a set of calibrated keys (``medground.models.grounding.CALIBRATED``), run on top of the
checkpoint's calibration, applied to the picture findings only (polyp, colorectal polyp, skin lesion: terms seen in
colonoscopy and dermoscopy pictures alone; "lesion", shared with CT and MR volumes, only with ``--with-lesion``,
since its setting would hold for the volumes too). Every picture of the chosen split is segmented with
each variant; per term the best mean Dice wins, another than the first only when it beats it by ``--margin``.
Report the choice on the pictures' test split: ``bench_findings.py --split test --weights <the copy>``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from embcache import CachedEncoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# dataset -> the prompts scored on it (each names one term of the findings head, learned from that kind of picture)
PROMPTS = {"endoscopy-kvasir": ["polyp", "colorectal polyp"], "dermoscopy-ph2": ["skin lesion"]}


def main(argv=None) -> None:
    import medground
    from medground.data import list_cases
    from medground.evaluate.metrics import dice_score
    from medground.models import load_model
    from medground.models.grounding import CALIBRATED, FINDINGS_WEIGHTS, load_findings, set_calibration
    from medground.ontology import Ontology
    from medground.segment.text import TextConfig, segment_text
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=str(FINDINGS_WEIGHTS), help="findings head checkpoint to score")
    ap.add_argument("--emb-cache", default="cache/tune_emb")
    ap.add_argument("--variants", nargs="+", default=['as_is={}'],
                    help="name={calibrated keys}; each runs on top of the checkpoint's calibration, the first is the "
                         "reference a choice must beat")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--choose", action="store_true")
    ap.add_argument("--write", default=None,
                    help="with --choose: record the choices in this checkpoint (a copy of --weights)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--with-lesion", action="store_true",
                    help='also score (and with --choose, set) "lesion" on both kinds of picture; the setting then '
                         "applies to CT and MR volumes too: check them with bench_findings.py")
    a = ap.parse_args(argv)
    prompts_of = {d: ps + (["lesion"] if a.with_lesion else []) for d, ps in PROMPTS.items()}
    variants = {}
    for v in a.variants:
        name, _, js = v.partition("=")
        variants[name] = json.loads(js or "{}")
        bad = set(variants[name]) - set(CALIBRATED)
        if bad:
            raise SystemExit(f"variant {name}: {sorted(bad)} are not calibrated keys ({', '.join(CALIBRATED)})")
    onto = Ontology.default()
    term_of = {p: onto.resolve(p).ids[0] for ps in prompts_of.values() for p in ps}
    findings = load_findings(a.weights)
    model = CachedEncoder(load_model("litemedsam"), a.emb_cache)
    dice: dict[str, dict[str, list[float]]] = {}
    n_cases: dict[str, int] = {}
    t0 = time.time()
    for ds, prompts in prompts_of.items():
        root = Path(a.root) / ds
        cases = list_cases(root, a.split)
        n_cases[ds] = len(cases)
        for c in tqdm(cases, desc=f"{ds} {a.split}", file=sys.stderr):
            img = medground.load(root / c["image"])
            lab = medground.load(root / c["label"], check=False).data
            ref = (lab if lab.ndim == 3 else lab[..., 0]) > 0
            for name, over in variants.items():
                cfg = TextConfig(**{k: {term_of[p]: v for p in prompts} for k, v in over.items()})
                res, _ = segment_text(img, prompts, model=model, findings=findings, cfg=cfg)
                for p, r in zip(prompts, res):
                    dice.setdefault(p, {}).setdefault(name, []).append(dice_score(r.mask, ref))
    secs = time.time() - t0
    first = next(iter(variants))
    flags = (" --with-lesion" if a.with_lesion else "") + (" --choose" if a.choose else "")
    lines = [f"Command: `python benchmarks/tune_findings.py --split {a.split} --variants "
             + " ".join(f"'{n}={json.dumps(v)}'" for n, v in variants.items()) + flags + "`", "",
             f"Findings head `{findings.card.get('name', '?')}`; Dice per picture, mean over the `{a.split}` split "
             f"({', '.join(f'{d} {k}' for d, k in n_cases.items())}); "
             f"{secs:.0f} s.", "",
             "| prompt | term | best (by the margin rule) | " + " | ".join(variants) + " |", "|---|---|---|" + "---:|" * len(variants)]
    choice: dict[str, dict] = dict(findings.calibration or {})
    for p, by in dice.items():
        mean = {n: float(np.mean(v)) for n, v in by.items()}
        best = max(mean, key=mean.get)
        if mean[best] < mean[first] + a.margin:
            best = first
        t = term_of[p]
        if a.choose:
            # every variant ran on top of the checkpoint's calibration (keys it does not name: "auto")
            choice[t] = {**choice.get(t, {}), **variants[best]}
        lines.append(f"| {p} | {t} | {best} | " + " | ".join(f"{mean[n]:.3f}" for n in variants) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
        Path(a.out).with_suffix(".json").write_text(json.dumps({"variants": variants, "dice": dice}, indent=1))
    if a.choose and a.write:
        note = (f"best mean Dice per term on the {a.split} pictures of {', '.join(PROMPTS)} "
                f"(benchmarks/tune_findings.py; a setting other than '{first}' only when it beats it by {a.margin})")
        set_calibration(a.write, {t: d for t, d in choice.items() if d}, note)
        print(f"wrote the choices into {a.write}")


if __name__ == "__main__":
    main()
