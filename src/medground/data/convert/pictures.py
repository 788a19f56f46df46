"""endoscopy-kvasir, dermoscopy-ph2 and fundus-drive: colour pictures with one binary mask each."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medground.data.convert._common import read_mask, read_rgb, safe_id
from medground.data.layout import DatasetWriter

PH2_DIAGNOSIS = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}


def _pictures(src: Path, dst: Path, name: str, limit: int | None, meta_of=None) -> Path:
    from medground.data.registry import get_dataset

    info = get_dataset(name)
    (value,) = info.labels  # one foreground label
    writer = DatasetWriter(dst, info)
    images = sorted(p for p in (src / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".bmp"))
    if limit:
        images = images[:limit]
    for p in images:
        mp = src / "masks" / f"{p.stem}.png"
        if not mp.exists():
            continue
        img = read_rgb(p)
        m = read_mask(mp)
        if m.shape != img.shape[:2]:
            raise ValueError(f"{name}/{p.stem}: mask {m.shape} != image {img.shape[:2]}")
        cid = safe_id(p.stem)
        meta = {"source_transform": "identity"}
        if meta_of:
            meta.update(meta_of(p.stem))
        writer.add_picture(cid, cid, img, (m * value).astype(np.uint8), meta=meta)
    return writer.finish()


def convert_kvasir(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    return [_pictures(src_root / "endoscopy-kvasir", dst, "endoscopy-kvasir", limit)]


def convert_ph2(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    src = src_root / "dermoscopy-ph2"
    diag = {}
    csv_path = src / "PH2_dataset.csv"
    if csv_path.exists():
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            for r in csv.DictReader(f):
                diag[r["Name"].strip()] = PH2_DIAGNOSIS.get(str(r.get("Clinical Diagnosis", "")).strip(), "")

    def meta_of(stem: str) -> dict:
        return {"diagnosis": diag[stem]} if diag.get(stem) else {}

    return [_pictures(src, dst, "dermoscopy-ph2", limit, meta_of)]


def convert_drive(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    def meta_of(stem: str) -> dict:
        return {"source_split": "test" if stem.endswith("_test") else "training"}

    return [_pictures(src_root / "fundus-drive", dst, "fundus-drive", limit, meta_of)]
