"""Cost of the run extension (``TextConfig.extend_runs``) and its rival-heat stop, models loaded, in one process:
one BTCV volume, the 5 prompts of bench_text_speed.py, the three settings alternating.

    python benchmarks/extend_speed.py --repeats 2
"""
from __future__ import annotations

import argparse
import time

PROMPTS = ["liver", "spleen", "left kidney", "right kidney", "aorta"]


def main(argv=None) -> None:
    import medground
    from medground.segment.text import TextConfig, segment_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="cache/data/btcv-ct/cases/patient_01/image.nii.gz")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    img = medground.load(a.image)
    segment_text(img, PROMPTS[:1])  # models loaded before the clock starts
    settings = {"extension off": TextConfig(extend_runs=False), "packaged": TextConfig(),
                "without the rival stop": TextConfig(extend_max_rival_heat=None)}
    times: dict[str, list[float]] = {n: [] for n in settings}
    added = {}
    for _ in range(a.repeats):
        for name, cfg in settings.items():
            t = time.time()
            res, _ = segment_text(img, PROMPTS, cfg=cfg)
            times[name].append(time.time() - t)
            added[name] = res[-1].info["terms"][0].get("extended_slices", 0)
    print(f"| setting ({a.image}, {img.data.shape[2]} slices, 5 prompts) | seconds | aorta slices added |")
    print("|---|---|---:|")
    for name in settings:
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {added[name]} |")


if __name__ == "__main__":
    main()
