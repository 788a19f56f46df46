"""Per-image VQA feature cache (``cache/vqa/features.npz``), keyed by file name, resumable."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def build_feature_cache(image_dir: str | Path, cache_file: str | Path, names: list[str] | None = None,
                        progress: bool = True) -> dict:
    """Describe every image of ``image_dir`` (or ``names``) once; saved every 10 images so an
    interrupted run resumes. Returns {name: {"key", "thumb", "features", "shape"}}."""
    import torch
    from tqdm import tqdm

    import medground
    from medground.vqa.features import FEATURE_VERSION, describe

    torch.set_num_threads(max(1, torch.get_num_threads()))
    image_dir, cache_file = Path(image_dir), Path(cache_file)
    names = sorted(names or [p.name for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg")])
    done = load_feature_cache(cache_file)
    todo = [n for n in names if n not in done]
    for i, n in enumerate(tqdm(todo, desc="vqa features", disable=not progress)):
        img = medground.load(image_dir / n)
        done[n] = describe(img)
        if (i + 1) % 10 == 0 or i + 1 == len(todo):
            _save(done, cache_file, FEATURE_VERSION)
    return {n: done[n] for n in names}


def load_feature_cache(cache_file: str | Path) -> dict:
    from medground.vqa.features import FEATURE_VERSION

    p = Path(cache_file)
    if not p.exists():
        return {}
    z = np.load(p, allow_pickle=False)
    if str(z["version"]) != FEATURE_VERSION:
        return {}
    out = {}
    for i, n in enumerate(z["names"]):
        out[str(n)] = {"key": str(z["keys"][i]), "thumb": z["thumbs"][i], "features": z["features"][i],
                       "cues": z["features"][i][-24:], "shape": tuple(int(s) for s in z["shapes"][i])}
    return out


def _save(done: dict, cache_file: Path, version: str) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(done)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, version=np.array(version), names=np.array(names),
             keys=np.array([done[n]["key"] for n in names]),
             thumbs=np.stack([done[n]["thumb"] for n in names]),
             features=np.stack([done[n]["features"] for n in names]),
             shapes=np.array([done[n]["shape"] for n in names]))
    tmp.replace(cache_file)
