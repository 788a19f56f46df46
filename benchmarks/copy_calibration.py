"""Copy one grounding checkpoint's per-term calibration into another (the starting point of a calibration pass
whose ``tune_textseg.py --keep`` then changes only the keys a variant names).

    python benchmarks/copy_calibration.py FROM TO "why (recorded as the card's calibration_chosen)"
"""
from __future__ import annotations

import sys


def main(argv=None):
    from medground.models.grounding import load_grounding, set_calibration

    src, dst, note = (argv if argv is not None else sys.argv[1:])
    set_calibration(dst, load_grounding(src).calibration, note)


if __name__ == "__main__":
    main()
