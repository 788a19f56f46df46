"""Volumes with a real geometry: TotalSegmentator examples, DeepLesion sub-volumes, pyradiomics MRIs.

All go through :func:`medground.data.orient.to_canonical_volume`: a permutation/flip of the voxel
axes chosen from the affine (no resampling), so the stored volume is LPS-ordered and
``data[:, :, z].T`` is the radiological axial display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medground.data.convert._common import canonical_pair, load_nifti, lps_affine, resample_nearest, say
from medground.data.layout import DatasetWriter
from medground.io.image import MedImage
from medground.io.readers import load_npz


def _read_dicom_series(folder: Path) -> MedImage:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    if not files:
        raise ValueError(f"no DICOM series in {folder}")
    reader.SetFileNames(files)
    im = reader.Execute()
    data = np.transpose(sitk.GetArrayFromImage(im), (2, 1, 0))
    affine = lps_affine(np.array(im.GetDirection()).reshape(3, 3), im.GetSpacing(), im.GetOrigin())
    return MedImage(data=data, affine=affine, ndim=3, modality="CT", source_path=str(folder), source_format="dicom-series")


def convert_totalsegmentator(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    from medground.data.registry import get_dataset

    src = src_root / "totalsegmentator"
    outs = []
    ct_cases = [("example_ct_sm", "ts_example_ct", lambda: load_nifti(src / "example_ct_sm.nii.gz", "CT"),
                 src / "example_seg.nii.gz"),
                ("example_ct_dicom", "ts_example_ct_dicom", lambda: _read_dicom_series(src / "example_ct_dicom"),
                 src / "example_seg_dicom.nii.gz")]
    mr_cases = [("example_mr_sm", "ts_example_mr", lambda: load_nifti(src / "example_mr_sm.nii.gz", "MR"),
                 src / "example_seg_mr.nii.gz")]
    for name, cases in (("totalsegmentator-ct", ct_cases), ("totalsegmentator-mr", mr_cases)):
        info = get_dataset(name)
        writer = DatasetWriter(dst, info)
        for cid, pid, loader, seg_path in cases[: limit or None]:
            if not seg_path.exists():
                continue
            try:
                image = loader()
            except Exception as exc:  # noqa: BLE001 - e.g. a DICOM reader problem: skip the case, say why
                say(f"  {name}/{cid}: skipped ({exc})")
                continue
            seg = load_nifti(seg_path)
            lab = np.rint(np.asarray(seg.data)).astype(np.uint8)
            if image.shape != seg.shape or not np.allclose(image.affine, seg.affine, atol=1e-2):
                # the same voxel grid stored in another axis order (e.g. y flipped by a NIfTI converter)
                m = np.linalg.inv(seg.affine) @ image.affine
                if not (np.allclose(m[:3, :3], np.rint(m[:3, :3]), atol=1e-3)
                        and np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=1e-2)
                        and sorted(seg.shape) == sorted(image.shape)):
                    say(f"  {name}/{cid}: skipped (label grid differs from the image)")
                    continue
                lab = resample_nearest(lab, seg.affine, image.shape, image.affine)
            if np.issubdtype(image.data.dtype, np.floating) and np.allclose(image.data, np.rint(image.data)):
                image.data = image.data.astype(np.int16)
            can, can_lab, tr = canonical_pair(image, lab)
            writer.add_volume(cid, pid, can, can_lab, meta={
                "source_orientation": "".join(__import__("nibabel").aff2axcodes(image.affine)),
                "source_transform": tr.to_dict(), "intensity": "Hounsfield units" if image.modality == "CT" else "raw MR"})
        outs.append(writer.finish())
    return outs


def convert_ct_lesions(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    from medground.data.registry import get_dataset

    src = src_root / "ct-lesions"
    info = get_dataset("ct-lesions")
    writer = DatasetWriter(dst, info)
    files = sorted(src.glob("*.npz"))
    if limit:
        files = files[:limit]
    for f in files:
        image = load_npz(f)  # imgs [z, y, x] -> [x, y, z], affine from spacing / origin / direction
        image.modality = "CT"
        with np.load(f) as z:
            lab = (np.transpose(z["gts"], (2, 1, 0)) > 0).astype(np.uint8)
        can, can_lab, tr = canonical_pair(image, lab)
        parts = f.stem.split("_")
        pid = f"deeplesion_{parts[2]}" if len(parts) > 2 else f.stem
        writer.add_volume(f.stem, pid, can, can_lab, meta={
            "source_transform": tr.to_dict(), "intensity": "uint8, windowed by the source"})
    return [writer.finish()]


def _read_nrrd(path: Path) -> MedImage:
    import nrrd

    data, hdr = nrrd.read(str(path))
    space = str(hdr.get("space", "left-posterior-superior")).lower()
    dirs = np.asarray(hdr["space directions"], dtype=float)   # one row per axis
    origin = np.asarray(hdr.get("space origin", [0, 0, 0]), dtype=float)
    a = np.eye(4)
    a[:3, :3] = dirs.T
    a[:3, 3] = origin
    if space in ("left-posterior-superior", "lps"):
        a = np.diag([-1.0, -1.0, 1.0, 1.0]) @ a
    elif space not in ("right-anterior-superior", "ras"):
        raise ValueError(f"{path.name}: unsupported NRRD space {space!r}")
    return MedImage(data=data, affine=a, ndim=3, modality="MR", source_path=str(path), source_format="nrrd")


def convert_mr_tumour(src_root: Path, dst: Path, limit: int | None = None, **_) -> list[Path]:
    from medground.data.registry import get_dataset

    src = src_root / "mr-tumour"
    info = get_dataset("mr-tumour")
    writer = DatasetWriter(dst, info)
    cases = [("brain1", info.label_of("brain_tumor")), ("brain2", info.label_of("brain_tumor")),
             ("breast1", info.label_of("breast_lesion"))]
    for cid, value in cases[: limit or None]:
        image = _read_nrrd(src / f"{cid}_image.nrrd")
        lab_img = _read_nrrd(src / f"{cid}_label.nrrd")
        if image.shape != lab_img.shape:
            raise ValueError(f"mr-tumour/{cid}: label grid differs from the image")
        lab = (np.asarray(lab_img.data) > 0).astype(np.uint8) * value
        can, can_lab, tr = canonical_pair(image, lab)
        writer.add_volume(cid, cid, can, can_lab, meta={
            "source_transform": tr.to_dict(), "sequence": "T1 post-contrast" if cid.startswith("brain") else "breast MRI",
            "intensity": "raw MR"})
    return [writer.finish()]
