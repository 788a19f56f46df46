"""Embedding cache for training the grounding head.

Every training slice (a canonical picture with its masks) is passed once through the frozen
LiteMedSAM image encoder; the embedding, average-pooled to the head's grid (G x G), is stored in a
float16 memory-mapped array with one row per slice, and each present structure's mask is stored as
the fraction of each grid cell it covers (uint8, 0..255). The 64 x 64 orientation thumbnail of the
picture is kept too (for the orientation classifier).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from medground.segment.predictor import MODEL_SIZE, model_hw, picture_tensor

THUMB = 64


@dataclass
class Sample:
    picture: np.ndarray  # (rows, cols) or (rows, cols, 3) float32 in [0, 1], canonical orientation
    masks: dict[str, np.ndarray]  # term id -> bool (rows, cols); only structures present on this slice
    labelled: tuple[str, ...]  # every term this dataset labels (absent ones are true negatives)
    dataset: str
    case: str
    index: int
    modality: str
    split: str = "train"
    aug: int = 0


def mask_to_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    """A (rows, cols) mask -> covered fraction of each grid cell of the padded 256 frame (uint8)."""
    hw = model_hw(mask.shape)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False)
    frame = torch.zeros((1, 1, MODEL_SIZE, MODEL_SIZE))
    frame[:, :, : hw[0], : hw[1]] = t
    g = F.adaptive_avg_pool2d(frame, grid)[0, 0].numpy()
    return np.round(np.clip(g, 0, 1) * 255).astype(np.uint8)


def thumbnail(picture: np.ndarray, size: int = THUMB) -> np.ndarray:
    """A picture (rows, cols[, 3]) -> (size, size) uint8 grey thumbnail (64 x 64 by default), min-max scaled and
    resized without padding (so that rotating the picture rotates the thumbnail)."""
    g = picture.mean(axis=2) if picture.ndim == 3 else picture
    t = torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32))[None, None]
    lo, hi = float(t.min()), float(t.max())
    t = (t - lo) / max(hi - lo, 1e-8)
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0, 0]
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def build_cache(samples: Iterable[Sample], out_dir: str | Path, encoder, grid: int = 32, batch: int = 8,
                capacity: int = 20000, progress: bool = True) -> Path:
    """Encode ``samples`` with ``encoder`` (callable (B,3,256,256) -> (B,256,64,64)) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = {"emb": np.lib.format.open_memmap(out / "emb.npy", mode="w+", dtype=np.float16,
                                              shape=(capacity, 256, grid, grid))}
    thumbs = np.zeros((capacity, THUMB, THUMB), dtype=np.uint8)
    rows: list[dict] = []
    tmasks: list[np.ndarray] = []
    tindex: list[tuple[int, str]] = []
    pend: list[tuple[Sample, torch.Tensor]] = []
    it: Iterator = iter(samples)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="encoding training slices", unit="slice")

    def flush():
        if not pend:
            return
        x = torch.cat([p[1] for p in pend])
        with torch.inference_mode():
            e = encoder(x)
            e = F.adaptive_avg_pool2d(e.float(), grid)
        for (s, xi), ei in zip(pend, e):
            n = len(rows)
            if n >= capacity:
                raise RuntimeError(f"cache capacity {capacity} exceeded")
            store["emb"][n] = ei.numpy().astype(np.float16)
            thumbs[n] = thumbnail(s.picture)
            rows.append({"dataset": s.dataset, "case": s.case, "index": s.index, "modality": s.modality,
                         "split": s.split, "aug": s.aug, "labelled": list(s.labelled),
                         "hw": list(s.picture.shape[:2])})
            for term, m in s.masks.items():
                if m.any():
                    tmasks.append(mask_to_grid(m, grid))
                    tindex.append((n, term))
        if bar is not None:
            bar.update(len(pend))
        pend.clear()

    for s in it:
        pend.append((s, picture_tensor(s.picture)))
        if len(pend) >= batch:
            flush()
    flush()
    if bar is not None:
        bar.close()
    n = len(rows)
    store.pop("emb").flush()  # release the memmap before rewriting the file
    # shrink the memmap to the rows written
    full = np.load(out / "emb.npy", mmap_mode="r")
    np.save(out / "emb_tmp.npy", full[:n])
    del full
    (out / "emb_tmp.npy").replace(out / "emb.npy")
    np.save(out / "thumbs.npy", thumbs[:n])
    np.save(out / "tmasks.npy", np.stack(tmasks) if tmasks else np.zeros((0, grid, grid), np.uint8))
    terms = sorted({t for _, t in tindex} | {t for r in rows for t in r["labelled"]})
    tid = {t: i for i, t in enumerate(terms)}
    np.save(out / "tindex.npy", np.array([(i, tid[t]) for i, t in tindex], dtype=np.int64).reshape(-1, 2))
    (out / "meta.json").write_text(json.dumps({"grid": grid, "terms": terms, "rows": rows}))
    return out


class EmbeddingCache:
    """Read side of :func:`build_cache`."""

    def __init__(self, path: str | Path, in_memory: bool = True):
        p = Path(path)
        meta = json.loads((p / "meta.json").read_text())
        self.grid = meta["grid"]
        self.terms: list[str] = meta["terms"]
        self.rows: list[dict] = meta["rows"]
        self.emb = np.load(p / "emb.npy", mmap_mode=None if in_memory else "r")
        self.thumbs = np.load(p / "thumbs.npy")
        self.tmasks = np.load(p / "tmasks.npy")
        self.tindex = np.load(p / "tindex.npy")
        self._index_rows()

    def _index_rows(self) -> None:
        """``by_row``: row -> [(term index, structure mask index), ...], from ``tindex``."""
        self.by_row: dict[int, list[tuple[int, int]]] = {}
        for k, (r, t) in enumerate(self.tindex):
            self.by_row.setdefault(int(r), []).append((int(t), k))

    @classmethod
    def concat(cls, caches: list["EmbeddingCache"]) -> "EmbeddingCache":
        """One cache holding the rows of several (same grid); term ids are re-indexed to the union."""
        if len(caches) == 1:
            return caches[0]
        grids = {c.grid for c in caches}
        if len(grids) != 1:
            raise ValueError(f"caches with different grids: {sorted(grids)}")
        out = cls.__new__(cls)
        out.grid = caches[0].grid
        out.terms = sorted({t for c in caches for t in c.terms})
        tid = {t: i for i, t in enumerate(out.terms)}
        out.rows, idx, offset = [], [], 0
        for c in caches:
            out.rows.extend(c.rows)
            remap = np.array([tid[t] for t in c.terms], dtype=np.int64)
            ti = c.tindex.copy()
            if len(ti):
                ti[:, 0] += offset
                ti[:, 1] = remap[ti[:, 1]]
            idx.append(ti.reshape(-1, 2))
            offset += len(c.rows)
        out.emb = np.concatenate([c.emb for c in caches])
        out.thumbs = np.concatenate([c.thumbs for c in caches])
        out.tmasks = np.concatenate([c.tmasks for c in caches])
        out.tindex = np.concatenate(idx)
        out._index_rows()
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, split: str) -> np.ndarray:
        return np.array([i for i, r in enumerate(self.rows) if r["split"] == split], dtype=np.int64)
