"""Out of dataset check of the abdominal CT sources: TotalSegmentator's example CT (another scanner than BTCV, on
which the CT refinement network was trained), the 13 BTCV classes prompted at once, Dice per class against the
example's reference label map, for one or more (organ head, refinement network) pairs (``config_outside.py`` with
those as variants).

    python benchmarks/refine_ct_outside.py --pair "previous=<grounding.pt>,<refine_ct.pt>" --pair "packaged=," \
        --out benchmarks/results/refine_ct_outside.md

An empty path is the packaged file. The example CT was among the organ head's training volumes (15 slices; its model
card), not the refinement network's: read the rows as a check that the network transfers, not as a held-out score.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import config_outside  # noqa: E402


def main(argv=None) -> None:
    """``--pair name=<grounding.pt>,<refine_ct.pt>`` (repeated) and ``--out``, run as ``config_outside.py`` variants."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--pair", action="append", required=True, help="name=<grounding.pt>,<refine_ct.pt> ('' = packaged)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    args = ["--shared", a.shared] + (["--out", a.out] if a.out else [])
    for spec in a.pair:
        name, paths = spec.split("=", 1)
        gw, rw = (paths.split(",") + [""])[:2]
        args += ["--variant", f"{name}={json.dumps({'grounding': gw, 'refine_weights': rw or None})}"]
    config_outside.main(args)


if __name__ == "__main__":
    main()
