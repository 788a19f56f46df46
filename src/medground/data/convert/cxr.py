"""jsrt-cxr (five SCR masks -> one label map) and covid-cxr (lung masks), plus acdc-cmr."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medground.data.convert._common import read_gray, read_mask, safe_id, say
from medground.data.layout import DatasetWriter
from medground.data.orient import label_centroids

# JSRT/SCR mask folder -> ontology term; order = precedence when masks overlap (later wins):
# lungs first, then the heart over the lungs, then the clavicles over both.
JSRT_MASKS = (("right_lung", "lung_right"), ("left_lung", "lung_left"), ("heart", "heart"),
              ("right_clavicle", "clavicle_right"), ("left_clavicle", "clavicle_left"))


def convert_jsrt(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    from medground.data.registry import get_dataset

    src = src_root / "jsrt-cxr"
    info = get_dataset("jsrt-cxr")
    lab_of = {t: info.label_of(t) for _, t in JSRT_MASKS}
    writer = DatasetWriter(dst, info)
    ids = sorted(p.stem for p in (src / "images").glob("*.jpg"))
    if limit:
        ids = ids[:limit]
    bad = []
    for cid in ids:
        img = read_gray(src / "images" / f"{cid}.jpg")
        label = np.zeros(img.shape, np.uint8)
        masks = {}
        for folder, tid in JSRT_MASKS:
            m = read_mask(src / "masks" / folder / f"{cid}.png")
            if m.shape != img.shape:
                raise ValueError(f"jsrt-cxr/{cid}: mask {folder} shape {m.shape} != image {img.shape}")
            label[m] = lab_of[tid]
            masks[tid] = m
        c = label_centroids(np.stack([np.where(masks["lung_right"], 1, 0) + np.where(masks["lung_left"], 2, 0)]),
                            {"lung_right": 1, "lung_left": 2})
        ok = bool(c["lung_right"][1] < c["lung_left"][1])
        if not ok:
            bad.append(cid)
        writer.add_picture(cid, cid, img, label, masks=masks, meta={
            "view": "PA", "nodule": cid.startswith("JPCLN"), "source_transform": "identity",
            "orientation_checks": {"right_lung_on_image_left": ok}})
    if bad:
        say(f"  jsrt-cxr: right lung not on the image left in {bad}")
    return [writer.finish()]


FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP Erect")


def convert_covid(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    from medground.data.registry import get_dataset

    src = src_root / "covid-cxr"
    info = get_dataset("covid-cxr")
    writer = DatasetWriter(dst, info)
    with open(src / "metadata.csv", encoding="utf-8", errors="replace", newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if r.get("lung_mask") and r.get("modality") == "X-ray" and r.get("view") in FRONTAL_VIEWS]
    rows.sort(key=lambda r: r["image"])
    if limit:
        # keep whole patients so that split tests see several patients
        keep, pats = [], []
        for r in rows:
            if r["patientid"] not in pats:
                if len(pats) >= limit:
                    continue
                pats.append(r["patientid"])
            keep.append(r)
        rows = keep
    seen = set()
    for r in rows:
        img = read_gray(src / r["image"])
        m = read_mask(src / r["lung_mask"])
        if m.shape != img.shape:
            raise ValueError(f"covid-cxr: mask {r['lung_mask']} shape {m.shape} != image {img.shape}")
        cid = safe_id(Path(r["image"]).stem)
        while cid in seen:
            cid += "_b"
        seen.add(cid)
        meta = {k: r.get(k, "") for k in ("view", "finding", "license", "doi", "url", "mask_source")}
        meta["source_file"] = r["image"]
        meta["source_transform"] = "identity"
        writer.add_picture(cid, f"patient_{r['patientid']}", img, m.astype(np.uint8), meta=meta)
    return [writer.finish()]


def convert_acdc(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    import nibabel as nib

    from medground.data.registry import get_dataset
    from medground.io.image import MedImage

    src = src_root / "acdc-cmr"
    info = get_dataset("acdc-cmr")
    writer = DatasetWriter(dst, info)
    files = sorted((src / "images").glob("patient*_frame*.nii.gz"))
    patients = sorted({f.name.split("_")[0] for f in files})
    if limit:
        patients = patients[:limit]
        files = [f for f in files if f.name.split("_")[0] in patients]
    bad = []
    for f in files:
        cid = f.name[: -len(".nii.gz")]
        pid, frame = cid.split("_")
        img = np.asarray(nib.load(str(f)).dataobj)
        lab = np.rint(np.asarray(nib.load(str(src / "labels" / f.name)).dataobj)).astype(np.uint8)
        # display of slice z is data[:, :, z].T: check the RV lies left of the LV
        disp = np.transpose(lab, (2, 1, 0))
        c = label_centroids(disp, {"rv": 1, "lv": 3})
        ok = bool("rv" in c and "lv" in c and c["rv"][1] < c["lv"][1])
        if not ok:
            bad.append(cid)
        image = MedImage(data=img, affine=np.eye(4), ndim=3, modality="MR", has_geometry=False, source_format="nifti")
        writer.add_volume(cid, pid, image, lab, meta={
            "phase": "ED" if frame == "frame01" else "ES", "source_transform": "identity",
            "orientation_checks": {"rv_left_of_lv": ok}, "intensity": "uint8, normalised by the source"})
    if bad:
        say(f"  acdc-cmr: RV not left of LV in {bad}")
    return [writer.finish()]
