"""Helpers for the retrieval tests (imported by name: tests/retrieve is on sys.path via conftest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_pictures(folder: Path, n: int = 4, size: int = 48, seed: int = 0) -> list[Path]:
    """n distinct grey PNG pictures (different textures left and right)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        a = (rng.random((size, size)) * 60).astype(np.uint8)
        yy, xx = np.mgrid[:size, :size]
        a += (((xx * (i + 1) // 8) + yy // (4 + i)) % 2 * 120).astype(np.uint8)
        p = folder / f"case{i}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths
