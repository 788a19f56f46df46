"""Writing segmentation results: mask files, a label map, DICOM SEG, findings.json and overlays."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from medground.io.image import MedImage

FINDINGS_VERSION = "1.0"


def safe_name(name: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower().replace(" ", "-")).strip("-.")
    return s or "mask"


def describe_mask(mask: np.ndarray, image: MedImage) -> dict[str, Any]:
    """Geometry of a mask in the input's own grid: voxel box, world box, centroid, size."""
    from medground import measure

    m = np.asarray(mask, dtype=bool)
    n = int(m.sum())
    d: dict[str, Any] = {"present": n > 0, "voxel_count": n}
    if n == 0:
        d.update(bbox_voxel=None, bbox_world_mm=None, centroid_voxel=None, centroid_world_mm=None)
    else:
        bb = measure.bbox(m, image)
        c = measure.centroid(m, image)
        lo, hi = bb["min"], bb["max"]
        if image.ndim == 2:
            d["bbox_pixel"] = [int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])]
            d["centroid_pixel"] = [round(float(v), 2) for v in c["voxel"][:2]]
        d["bbox_voxel"] = [int(v) for v in lo] + [int(v) for v in hi]
        d["centroid_voxel"] = [round(float(v), 2) for v in c["voxel"]]
        if image.has_geometry:
            d["bbox_world_mm"] = {"min": [round(float(v), 2) for v in bb["world_min_mm"]],
                                  "max": [round(float(v), 2) for v in bb["world_max_mm"]], "frame": "RAS"}
            d["centroid_world_mm"] = [round(float(v), 2) for v in c["world_mm"]]
        else:
            d["bbox_world_mm"] = None
            d["centroid_world_mm"] = None
    if image.ndim == 2:
        d["area_px"] = n
        d["area_mm2"] = round(measure.area_mm2(m, image), 3) if image.has_geometry else None
    else:
        d["volume_ml"] = round(measure.volume_ml(m, image), 4) if image.has_geometry else None
        d["volume_voxels"] = n
    return d


def input_summary(image: MedImage, path: str | None = None) -> dict[str, Any]:
    s = {
        "file": Path(path).name if path else None,
        "format": image.source_format,
        "ndim": image.ndim,
        "shape": list(image.shape) if image.ndim == 3 else list(image.shape[:2]),
        "modality": image.modality,
        "has_geometry": image.has_geometry,
        "spacing_mm": [round(float(v), 6) for v in image.spacing],
        "affine_ras": np.round(image.affine, 6).tolist(),
    }
    from medground.io.image import orientation_unknown
    from medground.io.writers import picture_stack

    if picture_stack(image):
        s["mask_nifti_layout"] = ("rows, columns, slices: a mask NIfTI's data[:, :, z] is the array of input picture z "
                                  "(its affine swaps the first two axes, so world positions match the input); "
                                  "voxel and pixel coordinates in this file stay (column, row, slice), as in the "
                                  "pictures and the overlays")
    if image.ndim == 3 and orientation_unknown(image):
        s["geometry_note"] = ("the header carries no orientation (an identity affine, or no qform / sform): voxel "
                              "size and patient sides are unknown; mm, mL and world coordinates assume 1 mm voxels")
    return s


def write_results(image: MedImage, results: list, out_dir: str | Path, input_path: str | None = None,
                  overlay: bool = True, dicom_seg: bool | None = None, extra: dict | None = None) -> dict:
    """Write every result's mask, a combined label map, DICOM SEG (DICOM input), overlays and
    ``findings.json``; return the findings dictionary.

    Each result needs ``.mask`` (X, Y, Z bool), ``.name``, ``.prompt`` (dict) and ``.confidence``;
    optional ``.info`` (dict) is merged into its finding.
    """
    from medground.io import save_mask

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = ".png" if image.ndim == 2 else ".nii.gz"
    findings = []
    used: set[str] = set()
    label_map = np.zeros(image.shape, dtype=np.uint8 if len(results) < 255 else np.uint16)
    for i, r in enumerate(results, 1):
        base = safe_name(r.name)
        stem, k = base, 2
        while stem in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem)
        mask_file = f"{stem}{ext}"
        save_mask(r.mask.astype(np.uint8), image, out / mask_file)
        label_map[r.mask & (label_map == 0)] = i
        f = {"id": i, "name": r.name, "prompt": r.prompt, "mask_file": mask_file,
             "confidence": round(float(r.confidence), 4), "label_value": i}
        slice_dir = _write_slice_pictures(r.mask, image, out / stem)
        if slice_dir:
            f["mask_slices_dir"] = slice_dir
        f.update(getattr(r, "info", None) or {})
        f.update(describe_mask(r.mask, image))
        findings.append(f)
    doc: dict[str, Any] = {"medground_version": _version(), "findings_version": FINDINGS_VERSION,
                           "input": input_summary(image, input_path), "findings": findings}
    if results:
        lm_file = f"labels{ext}"
        save_mask(label_map, image, out / lm_file)
        doc["label_map"] = {"file": lm_file, "labels": {str(f["label_value"]): f["name"] for f in findings}}
    if dicom_seg is None:
        dicom_seg = image.dicom_datasets is not None
    if dicom_seg and results:
        from medground.io import write_dicom_seg

        write_dicom_seg({f["name"]: r.mask for f, r in zip(findings, results)}, image, out / "segmentation.dcm")
        doc["dicom_seg"] = "segmentation.dcm"
    if overlay and results:
        from medground.viz.overlay import render_overlay

        ov = []
        for f, r in zip(findings, results):
            if f["present"]:
                p = render_overlay(image, {f["name"]: r.mask}, out / f"overlay_{Path(f['mask_file']).name.split('.')[0]}.png",
                                   title=f["name"])
                f["overlay"] = p.name
                ov.append(p.name)
        present = {f["name"]: r.mask for f, r in zip(findings, results) if f["present"]}
        if len(present) > 1:
            render_overlay(image, present, out / "overlay_all.png")
            ov.append("overlay_all.png")
        doc["overlays"] = ov
    if extra:
        doc.update(extra)
    (out / "findings.json").write_text(json.dumps(doc, indent=2))
    return doc


def _write_slice_pictures(mask: np.ndarray, image: MedImage, folder: Path) -> str | None:
    """For a volume read from a folder of pictures: the mask again as one PNG per input slice, named as that slice
    (``<stem>/<slice file name>.png``), each exactly the size of its picture (rows and columns as in the picture, like
    the NIfTI's ``data[:, :, z]``: see :func:`medground.io.save_mask`). None for any other input."""
    from medground.io.writers import picture_stack

    names = image.meta.get("slice_names")
    if not picture_stack(image) or len(names) != mask.shape[2]:
        return None
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for z, name in enumerate(names):
        pic = np.ascontiguousarray(mask[:, :, z].T, dtype=np.uint8) * np.uint8(255)
        Image.fromarray(pic).save(folder / f"{Path(name).stem}.png")
    return folder.name + "/"


def _version() -> str:
    from medground import __version__

    return __version__
