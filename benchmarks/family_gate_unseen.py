"""Prompts asked of kinds of image no model here learned them from: breast ultrasound (BUSI) and fundus photographs
(DRIVE), with and without the family gate (``TextConfig.family_gate``).

    python benchmarks/family_gate_unseen.py --busi ../shared/data/ultrasound-busi --drive cache/data/fundus-drive \
        --emb-cache cache/tune_emb

"breast lesion" / "tumour" (the findings head learned lesions and tumours from CT, MR, endoscopy and skin
photographs, no ultrasound) on every BUSI picture, whose labels say benign / malignant (a mass is there) or normal;
"retinal vessels" / "optic disc" (no model was trained on them: the organ head's zero-shot guess) on every DRIVE
fundus photograph, all of which show both. Counts the answers: drawn (present), absent, not assessed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def _count(images, prompts, model, g, cfg) -> dict:
    import medground
    from medground.segment.text import segment_text

    n = {"present": 0, "absent": 0, "not assessed": 0}
    for path in images:
        res, _ = segment_text(medground.load(path), prompts, model=model, grounding=g, cfg=cfg)
        for r in res:
            n["not assessed" if r.info.get("not_assessed") else "present" if r.mask.any() else "absent"] += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busi", default="../shared/data/ultrasound-busi")
    ap.add_argument("--drive", default="cache/data/fundus-drive")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/family_gate_unseen.md")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from embcache import models_for
    from medground.segment.text import TextConfig

    model, g = models_for(a.emb_cache, None)
    busi = Path(a.busi)
    with open(busi / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    key = next(k for k in rows[0] if k != "image" and "file" not in k.lower() and "image" not in k.lower())
    groups = {}
    for r in rows:
        name = r.get("image") or r.get("file") or r[next(iter(r))]
        groups.setdefault(f"BUSI {r[key]}", []).append(busi / "images" / Path(name).name)
    drive = sorted(Path(a.drive).glob("cases/*/image.*"))
    sets = [(k, v, ["breast lesion", "tumour"]) for k, v in sorted(groups.items())]
    sets.append(("DRIVE fundus", drive, ["retinal vessels", "optic disc"]))
    lines = ["| images | pictures | prompts | with the gate: present / absent / not assessed | without it |",
             "|---|---:|---|---|---|"]
    raw = {}
    for name, images, prompts in sets:
        res = {k: _count(images, prompts, model, g, cfg)
               for k, cfg in (("gate", TextConfig()), ("off", TextConfig(family_gate=None)))}
        raw[name] = res
        fmt = lambda n: f"{n['present']} / {n['absent']} / {n['not assessed']}"  # noqa: E731
        lines.append(f"| {name} | {len(images)} | {', '.join(prompts)} | {fmt(res['gate'])} | {fmt(res['off'])} |")
        print(lines[-1], flush=True)
    Path(a.out).write_text("Command: `python benchmarks/family_gate_unseen.py --busi " + a.busi + " --drive " + a.drive
                           + "`\n\n" + "\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
