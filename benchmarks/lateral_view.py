"""The lateral-view check of the text path (``TextConfig.lateral_check``) on every chest radiograph at hand.

    python benchmarks/lateral_view.py --src ../shared/data --emb-cache cache/tune_emb

covid-cxr's metadata gives each radiograph's view (PA, AP, AP supine, L); JSRT's are all PA. Each picture is asked
"left lung" and "right lung": counted is how often the check calls the picture a lateral view (both sides then "not
assessed"). On a lateral view the two lungs overlap and no model here learned to tell them apart there: before the
check, "left lung" on a lateral radiograph was a strip in front of the heart and "right lung" the rest of the lung field.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--emb-cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/lateral_view.md")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import medground
    from embcache import models_for
    from medground.segment.text import segment_text

    model, g = models_for(a.emb_cache, None)
    src = Path(a.src)
    groups: dict[str, list[Path]] = {}
    with open(src / "covid-cxr" / "metadata.csv") as f:
        for r in csv.DictReader(f):
            if r.get("modality") == "X-ray" and r.get("view") in ("PA", "AP", "AP Supine", "L") and r.get("image"):
                groups.setdefault("covid-cxr " + ("lateral" if r["view"] == "L" else "frontal"), []).append(
                    src / "covid-cxr" / r["image"])
    groups["jsrt-cxr frontal (PA)"] = sorted((src / "jsrt-cxr" / "images").glob("*.jpg"))
    lines = ["| radiographs | pictures | called lateral (left / right lung not assessed) |", "|---|---:|---:|"]
    raw = {}
    for name, paths in sorted(groups.items()):
        paths = sorted(set(paths))
        n = 0
        flagged = []
        for p in paths:
            _, extra = segment_text(medground.load(p), ["left lung", "right lung"], model=model, grounding=g)
            if (extra.get("view_check") or {}).get("lateral"):
                n += 1
                flagged.append(p.name)
        raw[name] = {"pictures": len(paths), "lateral": n, "flagged": flagged}
        lines.append(f"| {name} | {len(paths)} | {n} ({n / max(1, len(paths)):.0%}) |")
        print(lines[-1], flush=True)
    Path(a.out).write_text(f"Command: `python benchmarks/lateral_view.py --src {a.src}`\n\n" + "\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
