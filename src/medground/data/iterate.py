"""Light-weight iteration over converted datasets for training and evaluation.

>>> for image, masks in iter_slices("/tmp/medground-data/btcv-ct", "train"):   # doctest: +SKIP
...     image.shape, image.dtype, sorted(masks)                                  # [rows, cols] float32 in [0, 1]
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from medground.data.layout import list_cases, load_case, read_dataset



def normalize_volume(vol: np.ndarray, modality: str = "", window=None) -> np.ndarray:
    """Scale intensities to float32 in [0, 1] with the policy of :mod:`medground.io.intensity`.

    ``window=None``: uint8 data (already windowed by the source) / 255; CT in Hounsfield units with
    the soft-tissue window (level 40, width 400); anything else clipped to the whole-volume
    0.5-99.5 percentiles. A CT window name (``"lung"``, ``"bone"``...) or ``(level, width)`` forces a window.
    """
    from medground.io.image import MedImage
    from medground.io.intensity import intensity_range

    v = np.asarray(vol)
    lo, hi, _ = intensity_range(MedImage(data=v, modality=modality or "OT"), window)
    if not hi > lo:
        return np.zeros(v.shape, np.float32)
    out = (v.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return np.nan_to_num(out, copy=False)


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 4 and img.shape[-1] >= 3:  # [z, r, c, 3]
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return (img[..., :3].astype(np.float32) * w).sum(-1)
    if img.ndim == 4:
        return img[..., 0]
    return img


def iter_cases(dataset_root: str | Path, split: str | None = "train", *, shuffle: bool = False,
               seed: int = 0, cases: Iterable[str] | None = None
               ) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """``(case record, image [z, rows, cols(, 3)], label [z, rows, cols], full masks)`` per case
    (``cases``: only these case ids; the others are not read)."""
    root = Path(dataset_root)
    only = None if cases is None else set(cases)
    cases = [c for c in list_cases(root, split) if only is None or c["id"] in only]
    if shuffle:
        random.Random(seed).shuffle(cases)
    for c in cases:
        img, lab, masks = load_case(root, c)
        yield c, img, lab, masks


def iter_slices(dataset_root: str | Path, split: str | None = "train", *, terms: Iterable[str] | None = None,
                include_empty: bool = False, min_pixels: int = 1, every: int = 1, color: bool = False,
                window=None, shuffle: bool = False, seed: int = 0,
                with_meta: bool = False, start: int = 0, cases: Iterable[str] | None = None) -> Iterator[tuple]:
    """Yield ``(image, {term_id: mask})`` for every 2D slice of a converted dataset.

    * ``image``: float32 ``[rows, cols]`` in [0, 1] (``[rows, cols, 3]`` with ``color=True`` for
      colour pictures), in canonical display orientation (axial: rows anterior -> posterior,
      columns patient right -> left; radiographs: patient right on the image left).
    * masks: boolean ``[rows, cols]`` per ontology term present in the slice (at least ``min_pixels``),
      from the label map, or from the case's full binary masks where structures overlap.
    * ``split``: ``train``/``val``/``test`` (``splits.json``, by patient) or ``None``/``all``.
    * ``terms``: keep only these term ids; ``include_empty``: also yield slices without any of them.
    * ``every``: take every n-th slice of 3D volumes, from slice ``start`` (``every=2, start=1``: the odd
      slices); ``shuffle``: shuffle the case order.
    * ``window``: intensity scaling (see :func:`normalize_volume`), e.g. ``"lung"`` for CT lungs.
    * ``cases``: only these case ids (None: every case of the split).
    * ``with_meta``: yield ``(image, masks, {"case", "patient", "slice", "dataset"})`` triples.
    """
    root = Path(dataset_root)
    ds = read_dataset(root)
    label_terms = {int(k): v for k, v in ds["labels"].items() if int(k) != 0}
    modality = (ds.get("modality") or [""])[0]
    keep = None if terms is None else set(terms)
    step = max(int(every), 1)
    for case, img, lab, full in iter_cases(root, split, shuffle=shuffle, seed=seed, cases=cases):
        vol = img if (color and img.ndim == 4) else _gray(img)
        vol = normalize_volume(vol, modality, window)
        for z in range(max(int(start), 0), lab.shape[0], step):
            lz = lab[z]
            masks: dict[str, np.ndarray] = {}
            for value in np.unique(lz):
                tid = label_terms.get(int(value))
                if tid is None or (keep is not None and tid not in keep) or tid in full:
                    continue
                m = lz == value
                if int(m.sum()) >= min_pixels:
                    masks[tid] = m
            for tid, m in full.items():
                if keep is not None and tid not in keep:
                    continue
                mz = m[z]
                if int(mz.sum()) >= min_pixels:
                    masks[tid] = mz
            if not masks and not include_empty:
                continue
            if with_meta:
                yield vol[z], masks, {"dataset": ds["name"], "case": case["id"], "patient": case["patient"], "slice": z}
            else:
                yield vol[z], masks
