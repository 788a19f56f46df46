"""Compare inference settings of the text path on held-out patients, encoding every slice only once.

    python benchmarks/tune_textseg.py --datasets jsrt-cxr:20,btcv-ct:2 --split val \
        --variants 'base={}' 'gated={"mask_from": "gated"}'

Each variant is a set of :class:`medground.segment.text.TextConfig` fields. Choose settings on the `val`
split and report them on `test` (bench_textseg.py --split test), so that the reported figure was not
tuned on. LiteMedSAM embeddings are kept on disk (``--emb-cache``) keyed by the slice's pixels.
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


def main(argv=None):
    from medground.evaluate.runner import evaluate_dataset
    from medground.models import load_model
    from medground.models.grounding import load_grounding
    from medground.segment.text import TextConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--datasets", default="jsrt-cxr:20,chaos-mr:3,acdc-cmr:4,btcv-ct:2")
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None, help="grounding checkpoint (default: the packaged one)")
    ap.add_argument("--emb-cache", default="cache/tune_emb")
    ap.add_argument("--variants", nargs="+", default=['base={}'])
    ap.add_argument("--out", default=None, help="write the table (Markdown) and raw numbers (.json) here")
    ap.add_argument("--choose", action="store_true",
                    help="per class, pick the variant with the best mean Dice (another than the first only when "
                         "it beats the first by --margin); its mask_from / presence_threshold become the term's "
                         "calibration")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--write", default=None, help="with --choose: record the choices in this checkpoint")
    ap.add_argument("--keep", action="store_true",
                    help="with --choose: start each term's setting from the checkpoint's calibration (a variant "
                         "then changes only the keys it names) instead of decoder / 0.5")
    ap.add_argument("--merge", action="store_true",
                    help="with --write: keep the checkpoint's calibration of the terms these runs did not score")
    ap.add_argument("--from-json", default=None,
                    help="skip the runs: take variants and results from a .json this script wrote (with --choose)")
    a = ap.parse_args(argv)
    variants = {}
    for v in a.variants:
        name, _, js = v.partition("=")
        variants[name] = json.loads(js or "{}")
    rows, raw = [], {}
    if a.from_json:
        prev = json.loads(Path(a.from_json).read_text())
        variants, raw = prev["variants"], prev["results"]
        a.datasets = prev.get("datasets", a.datasets)
        a.split = prev.get("split", a.split)
    else:
        model = CachedEncoder(load_model("litemedsam"), a.emb_cache)
        grounding = load_grounding(a.weights) if a.weights else None
    for spec in ([] if a.from_json else a.datasets.split(",")):
        ds, _, n = spec.partition(":")
        for name, over in variants.items():
            t = time.time()
            agg = evaluate_dataset(Path(a.root) / ds, a.split, None, "text", int(n) if n else None,
                                   grounding=grounding, model=model, text_config=TextConfig(**over),
                                   log=lambda m: None)
            s = agg.summary()
            per = {k: round(v["dice"]["mean"], 3) for k, v in s["per_class"].items()}
            raw.setdefault(ds, {})[name] = {"mean": s["overall"]["dice"]["mean"], "per_class": per,
                                            "slice_presence": agg.slice_presence}
            sp = agg.slice_presence
            spec = f"{sp['TN'] / max(1, sp['TN'] + sp['FP']):.3f} / {sp['TP'] / max(1, sp['TP'] + sp['FN']):.3f}" \
                if sum(sp.values()) else "–"
            rows.append(f"| {ds} | {name} | {s['overall']['dice']['mean']:.3f} | {spec} | "
                        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items())) + " |")
            print(rows[-1], f"[{time.time() - t:.0f}s]", flush=True)
    table = ["| dataset | variant | mean Dice | slice presence spec / sens | per class |", "|---|---|---:|---|---|"] + rows
    if rows:
        print("\n".join(table))
    if a.choose:
        from medground.models.grounding import CALIBRATED, set_calibration
        from medground.ontology import Ontology

        onto = Ontology.default()
        first = next(iter(variants))
        choice: dict[str, dict] = {}
        scores: dict[str, dict[str, list]] = {}
        for ds, per_var in raw.items():
            for name, r in per_var.items():
                for cls, d in r["per_class"].items():
                    scores.setdefault(cls, {}).setdefault(name, []).append(d)
        current = {}  # the checkpoint's calibration, for --keep and --merge
        if a.keep or a.merge:
            from medground.models.grounding import load_grounding

            ckpt = load_grounding(a.write or a.weights)
            current = dict(ckpt.calibration or {})
        lines = ["| class | chosen | " + " | ".join(variants) + " |", "|---|---|" + "---:|" * len(variants)]
        # a class naming one term ("left lung") decides that term over a class naming several ("lung" = both
        # lungs), whatever the order of the names
        for cls, by in sorted(scores.items(), key=lambda kv: (-len(onto.resolve(kv[0]).ids), kv[0])):
            mean = {n: float(np.mean(v)) for n, v in by.items()}
            best = max(mean, key=mean.get)
            if mean[best] < mean[first] + a.margin:
                best = first
            for t in onto.resolve(cls).ids:
                setting = {"mask_from": "decoder", "presence_threshold": 0.5}
                if a.keep:
                    setting.update(current.get(t, {}))
                setting.update({k: v for k, v in variants[best].items() if k in CALIBRATED})
                choice[t] = setting
            lines.append(f"| {cls} | {best} | " + " | ".join(f"{mean.get(n, float('nan')):.3f}" for n in variants) + " |")
        print("\n".join(lines))
        if a.out:
            Path(a.out).with_name(Path(a.out).stem + "_choice.md").write_text("\n".join(lines) + "\n")
        if a.write:
            note = (f"best mean validation Dice per class on the {a.split} split of {a.datasets} "
                    f"(benchmarks/tune_textseg.py; a setting other than '{first}' only when it beats it by {a.margin})")
            if a.merge:
                choice = {**current, **choice}
                note = f"{ckpt.card.get('calibration_chosen', '')}; then for {', '.join(sorted(scores))}: {note}"
            set_calibration(a.write, choice, note)
            print(f"wrote the choices into {a.write}")
    if a.out and rows:
        Path(a.out).write_text("\n".join(table) + "\n")
        Path(a.out).with_suffix(".json").write_text(json.dumps({"variants": variants, "results": raw,
                                                                "datasets": a.datasets, "split": a.split}, indent=1))


if __name__ == "__main__":
    main()
