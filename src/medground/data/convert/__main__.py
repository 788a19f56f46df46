"""``python -m medground.data.convert --src ../shared/data --dst DIR [--datasets a,b] [--limit N]``"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from medground.data.convert import CONVERTERS, convert
    from medground.io.image import MedGroundInputError

    p = argparse.ArgumentParser(prog="python -m medground.data.convert",
                                description="Convert the labelled sets of ../shared/data to the medground layout.")
    p.add_argument("--src", default="../shared/data", help="folder holding the source sets (default ../shared/data)")
    p.add_argument("--dst", required=True, help="output root (do not point it inside the repository)")
    p.add_argument("--datasets", default="", help=f"comma-separated source folders; default all of: {', '.join(CONVERTERS)}")
    p.add_argument("--limit", type=int, default=None, help="only the first N patients/images of each set")
    p.add_argument("--atlas-threshold", type=float, default=0.5, help="probability needed for a brain atlas label")
    a = p.parse_args(argv)
    names = [n for n in a.datasets.split(",") if n.strip()] or None
    try:
        convert(a.src, a.dst, datasets=names, limit=a.limit, threshold=a.atlas_threshold)
    except MedGroundInputError as exc:
        print(f"medground: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
