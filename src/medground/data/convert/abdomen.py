"""btcv-ct and chaos-mr: stacks of JPEG axial slices with a label volume on the same pixel grid.

Orientation (learnt from the labels, verified on every patient of both sets): the arrays - JPEG
``[row, col]`` and label ``[:, :, z]`` alike - have rows running patient right -> left and columns
posterior -> anterior. :data:`SOURCE_TRANSFORM` = ``rot90`` (numpy ``rot90``, counter-clockwise)
turns them into canonical radiological display (rows anterior -> posterior, columns patient
right -> left). The slice index z runs inferior -> superior (liver centroid above the kidneys'),
so the stored volume is plain LPS. Each case records the anatomical checks of
:func:`medground.data.orient.abdominal_checks` in its meta.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medground.data.convert._common import read_gray, say
from medground.data.layout import DatasetWriter
from medground.data.orient import DIHEDRAL_NAMES, abdominal_checks, dihedral, dihedral_index
from medground.io.image import MedImage

SOURCE_TRANSFORM = "rot90"
CHECK_STRUCTURES = ("liver", "spleen", "kidney_left", "kidney_right", "aorta")


def stack_dihedral(arr_zhw: np.ndarray, k) -> np.ndarray:
    """Apply a dihedral transform to every slice of a ``[z, rows, cols]`` stack."""
    return np.ascontiguousarray(np.moveaxis(dihedral(np.moveaxis(arr_zhw, 0, -1), k), -1, 0))


def _names(src: Path) -> dict[int, str]:
    return {int(k): v for k, v in json.loads((src / "labels.json").read_text()).items()}


def convert_slices_dataset(src: Path, dst: Path, name: str, *, limit: int | None = None,
                           transform: str = SOURCE_TRANSFORM) -> Path:
    import nibabel as nib

    from medground.data.registry import get_dataset
    from medground.ontology import Ontology

    info = get_dataset(name)
    ont = Ontology.default()
    names = _names(src)
    for lab_id, nm in names.items():  # the source's own names must agree with the registry label map
        if info.labels.get(lab_id) not in ont.resolve(nm).ids + [ont.resolve(nm).term.id]:
            raise ValueError(f"{name}: label {lab_id} {nm!r} does not match registry term {info.labels.get(lab_id)!r}")
    ids = {n: i for i, n in names.items() if n in CHECK_STRUCTURES}
    is_ct = "CT" in info.modality
    k = dihedral_index(transform)
    writer = DatasetWriter(dst, info)
    files = sorted((src / "labels").glob("patient_*.nii.gz"))
    if limit:
        files = files[:limit]
    failed = []
    for f in files:
        pid = f.name[: -len(".nii.gz")]
        nimg = nib.load(str(f))
        lab = np.rint(np.asarray(nimg.dataobj)).astype(np.int16)        # [row, col, z] of the JPEG grid
        nz = lab.shape[2]
        img = np.stack([read_gray(src / "images" / pid / f"slice_{z:03d}.jpg") for z in range(nz)])  # [z, row, col]
        lab = np.moveaxis(lab, -1, 0)
        if img.shape != lab.shape:
            raise ValueError(f"{name}/{pid}: images {img.shape} and labels {lab.shape} differ")
        can_img = stack_dihedral(img, k)
        can_lab = stack_dihedral(lab, k)
        # slice order: make z run inferior -> superior (liver above the kidneys)
        zc = {n: np.argwhere(can_lab == i)[:, 0].mean() for n, i in ids.items() if (can_lab == i).any()}
        kid = [zc[n] for n in ("kidney_left", "kidney_right") if n in zc]
        z_flipped = bool("liver" in zc and kid and zc["liver"] < np.mean(kid))
        if z_flipped:
            can_img, can_lab = can_img[::-1], can_lab[::-1]
        checks = abdominal_checks(can_lab, ids, can_img, ct=is_ct)
        if not all(checks.values()):
            failed.append((pid, [c for c, ok in checks.items() if not ok]))
        # spacing: source axis 0 (rows) -> canonical columns, source axis 1 (cols) -> canonical rows
        sp = np.sqrt((nimg.affine[:3, :3] ** 2).sum(axis=0))
        row_sp, col_sp = (sp[0], sp[1]) if DIHEDRAL_NAMES[k] in ("identity", "rot180", "flip_lr", "flip_ud") else (sp[1], sp[0])
        affine = np.diag([-col_sp, -row_sp, sp[2], 1.0])  # LPS: x -> patient left, y -> posterior, z -> superior
        data = np.ascontiguousarray(np.transpose(can_img, (2, 1, 0)))
        label = np.ascontiguousarray(np.transpose(can_lab, (2, 1, 0))).astype(np.uint8)
        image = MedImage(data=data, affine=affine, ndim=3, modality=info.modality[0], source_format="jpg-slices")
        writer.add_volume(pid, pid, image, label, meta={
            "source_transform": DIHEDRAL_NAMES[k], "z_flipped": z_flipped,
            "orientation_checks": checks, "intensity": "uint8, windowed by the source"})
    out = writer.finish()
    if failed:
        say(f"  {name}: orientation checks not all passed for {failed} (recorded in dataset.json)")
    return out


def convert_btcv(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    return [convert_slices_dataset(src_root / "btcv-ct", dst, "btcv-ct", limit=limit)]


def convert_chaos(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    return [convert_slices_dataset(src_root / "chaos-mr", dst, "chaos-mr", limit=limit)]
