"""Out of dataset check of ``TextConfig.extend_runs`` on TotalSegmentator's example MR (never trained on): the
terms the package extends, asked together, with the extension off and as packaged, Dice against its reference
(``config_outside.py`` with these variants).

    python benchmarks/extend_outside.py --out benchmarks/results/extend_mr_outside.md
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import config_outside  # noqa: E402

PROMPTS = ["aorta", "esophagus", "inferior vena cava", "left adrenal gland"]


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    config_outside.main(["--image", "example_mr_sm.nii.gz", "--seg", "example_seg_mr.nii.gz", "--labels", "total_mr",
                         "--prompts", *PROMPTS, "--variant", 'off={"extend_runs": false}', "--variant", "packaged={}",
                         *args])


if __name__ == "__main__":
    main()
