"""The standard on-disk layout of converted datasets (see ``medground/data/README.md``).

::

    <root>/<dataset>/dataset.json           labels -> ontology ids, modality, orientation, licence, citation, cases
    <root>/<dataset>/splits.json            train/val/test case ids, split by patient with a fixed seed
    <root>/<dataset>/cases/<case>/image.nii.gz | image.png
    <root>/<dataset>/cases/<case>/label.nii.gz | label.png     integer label map, same grid as the image
    <root>/<dataset>/cases/<case>/masks/<term_id>.png|.nii.gz   optional full binary masks (overlapping structures)

Every stored image is in canonical display orientation: for 3D volumes ``data[:, :, z].T`` is
axial slice ``z`` in radiological display (rows anterior -> posterior, columns patient right ->
left; volumes with a real geometry get an LPS-ordered affine), for 2D pictures the PNG is shown as is.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

LAYOUT_VERSION = 1
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_SEED = 0


@dataclass
class CaseRecord:
    id: str
    patient: str
    image: str                      # path relative to the dataset root
    label: str
    shape: list[int]
    spacing: list[float] | None = None
    masks: dict[str, str] = field(default_factory=dict)   # term id -> relative path
    labels_present: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "patient": self.patient, "image": self.image, "label": self.label,
             "shape": self.shape, "spacing": self.spacing, "labels_present": self.labels_present}
        if self.masks:
            d["masks"] = self.masks
        if self.meta:
            d["meta"] = self.meta
        return d


# ------------------------------------------------------------------------------------ writing
def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, str(path))


def save_png(path: Path, arr2d: np.ndarray) -> None:
    """Write a [rows, cols] (or [rows, cols, 3]) uint8/uint16 array as PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr2d)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype not in (np.uint8, np.uint16):
        if a.min() < 0 or a.max() > 65535:
            raise ValueError("PNG arrays must fit in uint16")
        a = a.astype(np.uint8 if a.max() < 256 else np.uint16)
    Image.fromarray(a).save(path, optimize=False, compress_level=4)


def label_dtype(max_label: int):
    return np.uint8 if max_label < 256 else np.uint16


class DatasetWriter:
    """Writes cases of one dataset and, on :meth:`finish`, its dataset.json and splits.json."""

    def __init__(self, root: str | Path, info, *, overwrite: bool = True, extra: dict[str, Any] | None = None):
        from medground.data.registry import DatasetInfo, get_dataset

        self.info: DatasetInfo = info if isinstance(info, DatasetInfo) else get_dataset(str(info))
        self.dir = Path(root) / self.info.name
        if self.dir.exists() and overwrite:
            import shutil

            shutil.rmtree(self.dir / "cases", ignore_errors=True)
        (self.dir / "cases").mkdir(parents=True, exist_ok=True)
        self.cases: list[CaseRecord] = []
        self.extra = dict(extra or {})
        self._max_label = max(self.info.labels) if self.info.labels else 1

    def _check_labels(self, label: np.ndarray) -> list[int]:
        present = [int(v) for v in np.unique(label) if v != 0]
        unknown = [v for v in present if v not in self.info.labels]
        if unknown:
            raise ValueError(f"{self.info.name}: label values {unknown} are not in the registry label map")
        return present

    def add_volume(self, case_id: str, patient: str, image: MedImage, label: np.ndarray,
                   masks: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None) -> CaseRecord:
        """Add a 3D case; ``image.data`` / ``label`` must already be in canonical storage order."""
        lab = np.asarray(label)
        if tuple(lab.shape[:3]) != tuple(image.data.shape[:3]):
            raise ValueError(f"{case_id}: label shape {lab.shape} != image shape {image.data.shape}")
        present = self._check_labels(lab)
        cdir = self.dir / "cases" / case_id
        save_nifti(cdir / "image.nii.gz", image.data, image.affine)
        save_nifti(cdir / "label.nii.gz", lab.astype(label_dtype(self._max_label)), image.affine)
        rec_masks = {}
        for tid, m in (masks or {}).items():
            rel = f"cases/{case_id}/masks/{tid}.nii.gz"
            save_nifti(self.dir / rel, np.asarray(m).astype(np.uint8), image.affine)
            rec_masks[tid] = rel
        rec = CaseRecord(id=case_id, patient=patient, image=f"cases/{case_id}/image.nii.gz",
                         label=f"cases/{case_id}/label.nii.gz", shape=[int(s) for s in image.data.shape[:3]],
                         spacing=[round(float(s), 5) for s in image.spacing] if image.has_geometry else None,
                         masks=rec_masks, labels_present=present, meta=dict(meta or {}))
        self.cases.append(rec)
        return rec

    def add_picture(self, case_id: str, patient: str, image2d: np.ndarray, label2d: np.ndarray,
                    masks: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None) -> CaseRecord:
        """Add a 2D case from display-ordered ``[rows, cols(, 3)]`` arrays."""
        img = np.asarray(image2d)
        lab = np.asarray(label2d)
        if img.shape[:2] != lab.shape[:2]:
            raise ValueError(f"{case_id}: label shape {lab.shape} != image shape {img.shape}")
        present = self._check_labels(lab)
        cdir = self.dir / "cases" / case_id
        save_png(cdir / "image.png", img)
        save_png(cdir / "label.png", lab.astype(label_dtype(self._max_label)))
        rec_masks = {}
        for tid, m in (masks or {}).items():
            rel = f"cases/{case_id}/masks/{tid}.png"
            save_png(self.dir / rel, (np.asarray(m) > 0).astype(np.uint8) * 255)
            rec_masks[tid] = rel
        rec = CaseRecord(id=case_id, patient=patient, image=f"cases/{case_id}/image.png",
                         label=f"cases/{case_id}/label.png", shape=[int(img.shape[0]), int(img.shape[1])],
                         masks=rec_masks, labels_present=present, meta=dict(meta or {}))
        self.cases.append(rec)
        return rec

    def finish(self, seed: int = DEFAULT_SEED, fractions: Sequence[float] = SPLIT_FRACTIONS) -> Path:
        info = self.info
        ds = info.to_dict()
        ds["labels"] = {"0": "background", **{str(k): v for k, v in sorted(info.labels.items())}}
        ds.update({
            "layout_version": LAYOUT_VERSION,
            "canonical": True,
            "storage": ("3D volumes: data[:, :, z].T is canonical axial slice z" if info.dims == 3
                        else "2D PNG pictures in display orientation"),
            "num_cases": len(self.cases),
            "num_patients": len({c.patient for c in self.cases}),
            "cases": [c.to_dict() for c in sorted(self.cases, key=lambda c: c.id)],
        })
        ds.update(self.extra)
        write_json(self.dir / "dataset.json", ds)
        write_json(self.dir / "splits.json", make_splits(self.cases, seed=seed, fractions=fractions))
        return self.dir


# ------------------------------------------------------------------------------------ splits
def make_splits(cases: Iterable[CaseRecord | dict], seed: int = DEFAULT_SEED,
                fractions: Sequence[float] = SPLIT_FRACTIONS) -> dict[str, Any]:
    """Deterministic train/val/test split by patient (all cases of a patient go to one split).

    Patients are sorted, shuffled with ``random.Random(seed)`` and cut by ``fractions``; with three
    or more patients val and test get at least one each.
    """
    by_patient: dict[str, list[str]] = {}
    for c in cases:
        cid, pat = (c.id, c.patient) if isinstance(c, CaseRecord) else (c["id"], c["patient"])
        by_patient.setdefault(str(pat), []).append(cid)
    patients = sorted(by_patient)
    random.Random(seed).shuffle(patients)
    n = len(patients)
    f_tr, f_va, _ = (list(fractions) + [0, 0, 0])[:3]
    n_val = int(round(n * f_va))
    n_test = n - int(round(n * f_tr)) - n_val
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    n_train = n - n_val - n_test
    groups = {"train": patients[:n_train], "val": patients[n_train:n_train + n_val],
              "test": patients[n_train + n_val:]}
    out: dict[str, Any] = {"seed": seed, "fractions": list(fractions), "by": "patient"}
    for name, pats in groups.items():
        out[name] = sorted(cid for p in pats for cid in by_patient[p])
    out["patients"] = {name: sorted(pats) for name, pats in groups.items()}
    return out


# ------------------------------------------------------------------------------------ reading
def read_dataset(dataset_root: str | Path) -> dict[str, Any]:
    p = Path(dataset_root) / "dataset.json"
    if not p.exists():
        raise MedGroundInputError(f"{dataset_root} is not a medground dataset (no dataset.json)")
    return json.loads(p.read_text(encoding="utf-8"))


def read_splits(dataset_root: str | Path) -> dict[str, Any]:
    p = Path(dataset_root) / "splits.json"
    if not p.exists():
        raise MedGroundInputError(f"{dataset_root} has no splits.json")
    return json.loads(p.read_text(encoding="utf-8"))


def list_cases(dataset_root: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Case records of ``dataset.json`` (only those of ``split`` when given: train, val or test)."""
    ds = read_dataset(dataset_root)
    cases = ds["cases"]
    if split is None or split == "all":
        return cases
    splits = read_splits(dataset_root)
    if split not in ("train", "val", "test"):
        raise MedGroundInputError(f"unknown split {split!r}; use train, val, test or all")
    keep = set(splits[split])
    return [c for c in cases if c["id"] in keep]


def load_case(dataset_root: str | Path, case: str | dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(image, label, masks)`` of one case as canonical display arrays.

    3D: ``image``/``label`` are ``[z, rows, cols]`` (colour: trailing channel); 2D: ``[1, rows, cols]``.
    ``masks`` holds the optional full binary masks by term id (same shape as ``label``).
    """
    root = Path(dataset_root)
    if isinstance(case, str):
        recs = [c for c in read_dataset(root)["cases"] if c["id"] == case]
        if not recs:
            raise MedGroundInputError(f"no case {case!r} in {root}")
        case = recs[0]
    img = _read_any(root / case["image"])
    lab = _read_any(root / case["label"])
    masks = {tid: _read_any(root / rel) > 0 for tid, rel in (case.get("masks") or {}).items()}
    return img, lab, masks


def _read_any(path: Path) -> np.ndarray:
    """Canonical ``[z, rows, cols(, c)]`` array of a stored NIfTI volume or PNG picture."""
    if path.name.endswith((".nii.gz", ".nii")):
        import nibabel as nib

        d = np.asarray(nib.load(str(path)).dataobj)
        if d.ndim == 2:
            d = d[:, :, None]
        order = (2, 1, 0) + tuple(range(3, d.ndim))
        return np.ascontiguousarray(np.transpose(d, order))
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    return a[None]
