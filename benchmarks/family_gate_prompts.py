"""Abdominal organs asked of held-out chest radiographs, with and without the family gate (``TextConfig.family_gate``).

    python benchmarks/family_gate_prompts.py --root cache/data --emb-cache cache/tune_emb

Counts the prompts (liver, spleen, stomach: learned from CT / MR only) that came back with a mask drawn on the test
radiographs of JSRT and covid-cxr. A chest radiograph shows the upper abdomen, but no model here learned these organs
on radiographs: drawn, they are guesses by position (before the gate: "liver" over the right lung).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROMPTS = ["liver", "spleen", "stomach"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="cache/data")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import medground
    from embcache import models_for
    from medground.data import list_cases
    from medground.segment.text import TextConfig, segment_text

    model, g = models_for(a.emb_cache, None)
    print("| test radiographs | images | prompts | drawn with the gate | drawn without it |")
    print("|---|---:|---:|---:|---:|")
    for ds in ("jsrt-cxr", "covid-cxr"):
        cases = list_cases(Path(a.root) / ds, a.split)
        drawn = {"gate": 0, "off": 0}
        for c in cases:
            im = medground.load(Path(a.root) / ds / c["image"])
            for name, cfg in (("gate", TextConfig()), ("off", TextConfig(family_gate=None))):
                res, _ = segment_text(im, PROMPTS, model=model, grounding=g, cfg=cfg)
                drawn[name] += sum(bool(r.mask.any()) for r in res)
        n = len(cases) * len(PROMPTS)
        print(f"| {ds} | {len(cases)} | {n} | {drawn['gate']} | {drawn['off']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
