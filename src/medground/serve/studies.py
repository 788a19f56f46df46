"""Uploaded studies: stored under a random id in the data dir, validated by loading them.

Uploaded files are renamed (``input.<ext>`` for one file, ``series/000001.dcm`` ... for several) so
that no original file name, which may hold a patient's name, is stored or logged.
"""
from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.serve.store import now_iso

log = logging.getLogger("medground.serve")

KNOWN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".dcm", ".dicom", ".ima", ".zip", ".png", ".jpg", ".jpeg",
                  ".bmp", ".tif", ".tiff", ".mha", ".mhd", ".hdr", ".img", ".img.gz")
ID_RE = re.compile(r"^[0-9a-f]{16,64}$")


class UnsupportedType(MedGroundInputError):
    """The upload is not an image type medground reads (HTTP 415)."""


def suffix_of(name: str) -> str:
    n = (name or "").lower()
    for s in sorted(KNOWN_SUFFIXES, key=len, reverse=True):
        if n.endswith(s):
            return s
    suf = Path(n).suffix
    if suf == "" or suf[1:].isdigit():  # DICOM files often have no or a numeric suffix
        return ""
    return suf


def check_type(name: str, head: bytes) -> None:
    """Reject files that are no image medground reads, from their suffix and first bytes."""
    suf = suffix_of(name)
    if suf not in KNOWN_SUFFIXES and suf != "":
        raise UnsupportedType(f"unsupported file type '{suf}': upload DICOM (files or a zip), NIfTI, NRRD or "
                              "PNG/JPG/BMP/TIFF")
    if not head:
        raise MedGroundInputError("an uploaded file is empty (0 bytes)")
    if suf == "" and not (len(head) >= 132 and head[128:132] == b"DICM") and not _plausible_dicom(head):
        if head[:4] in (b"\x89PNG",) or head.startswith((b"\xff\xd8\xff", b"PK\x03\x04", b"NRRD", b"\x1f\x8b")):
            return
        raise UnsupportedType("unsupported file type: a file without a known suffix must be DICOM")


def _plausible_dicom(head: bytes) -> bool:
    # DICOM without preamble starts with a (0008,xxxx) or (0002,xxxx) group tag, little endian
    return len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00")


def new_id() -> str:
    return secrets.token_hex(16)


def study_dir(data_dir: Path, study_id: str) -> Path:
    if not ID_RE.match(study_id or ""):
        raise KeyError(study_id)
    return Path(data_dir) / "studies" / study_id


def study_info(study_id: str, image: MedImage, input_rel: str, n_files: int) -> dict:
    return {
        "study_id": study_id,
        "ndim": int(image.ndim),
        "shape": [int(v) for v in image.shape],
        "channels": int(image.data.shape[3]) if image.data.ndim == 4 else 1,
        "modality": image.modality,
        "spacing": [round(float(v), 6) for v in image.spacing],
        "format": image.source_format,
        "has_geometry": bool(image.has_geometry),
        "files": int(n_files),
        "created": now_iso(),
        "input_path": input_rel,
    }


def public_info(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "input_path"}


def finalize_upload(data_dir: Path, study_id: str, staged: list[tuple[str, Path]]) -> tuple[dict, MedImage]:
    """Move staged uploads (original name, temp path) into the study folder, load and validate them.
    On any failure the study folder is removed and the error raised."""
    import medground

    root = study_dir(data_dir, study_id)
    inp = root / "input"
    inp.mkdir(parents=True, exist_ok=True)
    try:
        if len(staged) == 1:
            name, tmp = staged[0]
            target = inp / f"input{suffix_of(name) or '.dcm'}"
            shutil.move(str(tmp), target)
            load_path = target
        else:
            series = inp / "series"
            series.mkdir()
            for i, (name, tmp) in enumerate(staged, 1):
                suf = suffix_of(name)
                if suf not in ("", ".dcm", ".dicom", ".ima"):
                    raise MedGroundInputError("several files must all be DICOM files of one series (send other "
                                              "formats one per study, or a zip of DICOM)")
                shutil.move(str(tmp), series / f"{i:06d}.dcm")
            load_path = series
        image = medground.load(load_path)
        info = study_info(study_id, image, str(load_path.relative_to(root)), len(staged))
        return info, image
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


class ImageCache:
    """A few recently used studies, loaded (workers and volume export share it)."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[str, MedImage] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, image: MedImage) -> None:
        with self._lock:
            self._items[key] = image
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def load(self, data_dir: Path, info: dict) -> tuple[MedImage, Path]:
        import medground

        sid = info["study_id"]
        path = study_dir(data_dir, sid) / info["input_path"]
        with self._lock:
            img = self._items.get(sid)
            if img is not None:
                self._items.move_to_end(sid)
                return img, path
        img = medground.load(path)
        self.put(sid, img)
        return img, path


def volume_nifti(data_dir: Path, info: dict, cache: ImageCache) -> Path:
    """The study as NIfTI in its own geometry (2D: one slice; colour collapsed to grey); written once."""
    from medground.io import save_nifti

    out = study_dir(data_dir, info["study_id"]) / "volume.nii.gz"
    if out.exists():
        return out
    image, _ = cache.load(data_dir, info)
    data = image.data
    if data.ndim == 4:
        g = image.gray()
        data = np.clip(np.round(g), 0, 255).astype(np.uint8) if image.data.dtype == np.uint8 else g
    tmp = out.with_name(f".volume-{secrets.token_hex(4)}.nii.gz")
    save_nifti(np.ascontiguousarray(data), image.affine, tmp)
    tmp.replace(out)
    return out
