"""DICOM reading: single files (2D slices, radiographs, multi-frame), series folders and zips.

Geometry is computed in DICOM's LPS patient frame and converted to RAS:
``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``. Voxel ``x`` is the DICOM column, ``y`` the row,
``z`` the slice (sorted by position along the slice normal).

Only safe fields go to ``MedImage.meta``; the headers themselves (without pixel data) are kept in
``MedImage.dicom_datasets`` (sorted like ``z``) for writing DICOM SEG/SR that reference them.
"""
from __future__ import annotations

import io
import logging
import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_affine(direction, spacing, origin) -> np.ndarray:
    """RAS affine from an ITK-style geometry (direction 3x3 with axis vectors as columns, spacing, origin; LPS), as
    SimpleITK and the .npz archives of MedSAM/MedSAM2 give it."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)[None, :]
    a[:3, 3] = np.asarray(origin, dtype=float)
    return LPS_TO_RAS @ a

# Modalities of DICOM objects that are not images to look at.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "DOC", "FID", "RWV"}
# Projection radiography: no patient-frame position; spacing from (Imager)PixelSpacing.
PROJECTION_MODALITIES = {"CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG", "DF", "DS", "XC"}

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


# --------------------------------------------------------------------------- small helpers
def _name(src: Any) -> str:
    if isinstance(src, (str, Path)):
        return Path(src).name or str(src)
    return str(getattr(src, "name", "DICOM data"))


def _floats(value, n: int | None = None) -> list[float] | None:
    """A DICOM (multi-)value as a list of finite floats (optionally of length n), else None."""
    if value is None or isinstance(value, bytes):
        return None
    items = [value] if isinstance(value, (str, int, float)) else value
    try:
        vals = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    if (n is not None and len(vals) != n) or not all(math.isfinite(v) for v in vals):
        return None
    return vals


def _first_float(value) -> float | None:
    vals = _floats(value)
    return vals[0] if vals else None


def _get(ds, keyword, default=None):
    try:
        v = ds.get(keyword, default)
    except Exception:  # malformed element values
        return default
    return default if v is None or v == "" else v


def _fg_item(ds, frame: int | None, seq: str):
    """Item of a functional-group macro (per-frame first, then shared), or None."""
    groups = []
    if frame is not None:
        pf = _get(ds, "PerFrameFunctionalGroupsSequence")
        if pf is not None and frame < len(pf):
            groups.append(pf[frame])
    shared = _get(ds, "SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for g in groups:
        s = _get(g, seq)
        if s:
            return s[0]
    return None


def _is_dicom_bytes(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _read_dataset(src, *, stop_before_pixels: bool):
    """Read a DICOM dataset from a path or bytes; ``MedGroundInputError`` when it is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = _name(src)
    fobj = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(fobj, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            if isinstance(fobj, io.BytesIO):
                fobj.seek(0)
            try:
                ds = pydicom.dcmread(fobj, stop_before_pixels=stop_before_pixels, force=True)
            except Exception as exc:
                raise MedGroundInputError(f"{name} is not a readable DICOM file ({type(exc).__name__}).") from exc
            if "SOPClassUID" not in ds and "Rows" not in ds:
                raise MedGroundInputError(f"{name} is not a DICOM file (no DICOM header found).")
        except MedGroundInputError:
            raise
        except Exception as exc:
            raise MedGroundInputError(
                f"{name} could not be read as DICOM; it looks truncated or corrupt ({type(exc).__name__})."
            ) from exc
    _repair_sop_identity(ds)
    return ds


def _repair_sop_identity(ds) -> None:
    """Some de-identified files blank SOP Class/Instance UID in the dataset but keep them in the
    file meta header; copy them back so that SEG/SR can reference the instance."""
    fm = getattr(ds, "file_meta", None)
    if fm is None:
        return
    for kw, meta_kw in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(_get(ds, kw, "") or "") and str(_get(fm, meta_kw, "") or ""):
            setattr(ds, kw, fm[meta_kw].value)


def _strip_pixels(ds):
    for kw in _PIXEL_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    return ds


def safe_meta(ds) -> dict[str, Any]:
    """De-identified, useful header fields (never names, IDs, dates or UIDs)."""
    meta: dict[str, Any] = {}
    for kw, key in (
        ("Modality", "modality"),
        ("BodyPartExamined", "body_part_examined"),
        ("Manufacturer", "manufacturer"),
        ("ViewPosition", "view_position"),
    ):
        v = _get(ds, kw)
        if v is not None:
            meta[key] = str(v)
    for kw, key in (("SliceThickness", "slice_thickness_mm"), ("KVP", "kvp")):
        v = _first_float(_get(ds, kw))
        if v is not None:
            meta[key] = v
    pi = _get(ds, "PhotometricInterpretation")
    if pi:
        meta["photometric"] = str(pi)
    wc = _first_float(_get(ds, "WindowCenter"))
    ww = _first_float(_get(ds, "WindowWidth"))
    if wc is None:
        voi = _fg_item(ds, 0, "FrameVOILUTSequence")
        if voi is not None:
            wc = _first_float(_get(voi, "WindowCenter"))
            ww = _first_float(_get(voi, "WindowWidth"))
    if wc is not None and ww is not None:
        meta["window_center"] = wc
        meta["window_width"] = ww
    return meta


# --------------------------------------------------------------------------- pixel decoding
def _decode(ds, src) -> tuple[np.ndarray, bool]:
    """Pixel array as (frames, rows, cols[, samples]) and whether it is already in modality
    units with MONOCHROME1 already inverted (SimpleITK/GDCM fallback)."""
    name = _name(src)
    if not any(kw in ds for kw in _PIXEL_KEYWORDS):
        if "Rows" in ds and "Columns" in ds:
            raise MedGroundInputError(
                f"{name} describes an image but its pixel data is missing; the file looks truncated or corrupt."
            )
        raise MedGroundInputError(f"{name} is a DICOM file without pixel data (not an image).")
    nframes = int(_first_float(_get(ds, "NumberOfFrames", 1)) or 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:  # truncated data, or a codec pydicom lacks
        msg = str(exc).lower()
        truncated = any(w in msg for w in ("length", "short", "truncat", "missing", "expected", "buffer", "size"))
        codec = any(w in msg for w in ("plugin", "decod", "decompress", "handler", "codec", "unable to"))
        if codec or not truncated:
            arr = _decode_with_sitk(ds, src)
            if arr is not None:
                return arr, True
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", str(ts))
        if codec and not truncated:
            raise MedGroundInputError(
                f"{name} uses a compression ({ts_name}) that could not be decoded; "
                "install pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg."
            ) from exc
        raise MedGroundInputError(
            f"{name} has unreadable pixel data; the file looks truncated or corrupt ({type(exc).__name__})."
        ) from exc
    spp = int(_get(ds, "SamplesPerPixel", 1) or 1)
    if nframes == 1 and arr.ndim == (3 if spp > 1 else 2):
        arr = arr[None]
    pi = str(_get(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    return arr, False


def _decode_with_sitk(ds, src) -> np.ndarray | None:
    """Fallback decoder (GDCM inside SimpleITK) for codecs pydicom lacks (e.g. JPEG Lossless)."""
    try:
        import os
        import tempfile

        import SimpleITK as sitk

        tmp = None
        if isinstance(src, (bytes, bytearray)):
            fd, tmp = tempfile.mkstemp(suffix=".dcm")
            with os.fdopen(fd, "wb") as fh:
                fh.write(src)
            path = tmp
        else:
            path = str(src)
        try:
            img = sitk.ReadImage(path)
            arr = sitk.GetArrayFromImage(img)
        finally:
            if tmp:
                os.unlink(tmp)
    except Exception:
        return None
    spp = int(_get(ds, "SamplesPerPixel", 1) or 1)
    if arr.ndim == (3 if spp > 1 else 2):
        arr = arr[None]
    rows, cols = int(_get(ds, "Rows", 0)), int(_get(ds, "Columns", 0))
    if arr.shape[1:3] != (rows, cols):
        return None
    return arr


def _rescale_params(ds, frame: int | None) -> tuple[float, float]:
    item = _fg_item(ds, frame, "PixelValueTransformationSequence") if frame is not None else None
    src = item if item is not None else ds
    slope = _first_float(_get(src, "RescaleSlope"))
    inter = _first_float(_get(src, "RescaleIntercept"))
    return (1.0 if slope is None else slope), (0.0 if inter is None else inter)


def _apply_rescale(frames: np.ndarray, params: list[tuple[float, float]]) -> np.ndarray:
    """Apply per-frame slope/intercept; integers stay integers when the result is integral."""
    if all(s == 1.0 and b == 0.0 for s, b in params):
        return frames
    integral = all(float(s).is_integer() and float(b).is_integer() for s, b in params) and frames.dtype.kind in "iu"
    if integral:
        out = frames.astype(np.int64)
        for i, (s, b) in enumerate(params):
            out[i] = out[i] * int(s) + int(b)
        lo, hi = out.min(), out.max()
        for dt in (np.int16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return out.astype(dt)
        return out
    out = frames.astype(np.float32)
    for i, (s, b) in enumerate(params):
        out[i] = out[i] * np.float32(s) + np.float32(b)
    return out


def _invert_monochrome1(raw: np.ndarray, ds) -> tuple[np.ndarray, float | None]:
    """Invert raw MONOCHROME1 values so that high = bright. Returns the new raw array and the
    constant K (in raw units) such that new = K - old."""
    if raw.dtype.kind == "u":
        bits = int(_get(ds, "BitsStored", raw.dtype.itemsize * 8) or raw.dtype.itemsize * 8)
        k = float(2**bits - 1)
        if raw.max() > k:  # bits stored lies; use the data range
            k = float(raw.max()) + float(raw.min())
    else:
        k = float(raw.max()) + float(raw.min())
    if raw.dtype.kind in "iu":
        out = (np.int64(int(k)) - raw.astype(np.int64))
        lo, hi = out.min(), out.max()
        for dt in (raw.dtype.type, np.uint16, np.int32):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return out.astype(dt), k
        return out, k
    return (k - raw).astype(raw.dtype), k


# --------------------------------------------------------------------------- geometry
@dataclass
class _Stack:
    order: np.ndarray  # sort order of the input frames/slices
    affine_lps: np.ndarray
    warnings: list[str]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _stack_geometry(positions: np.ndarray, iop: list[float], pixel_spacing: list[float],
                    single_spacing: float | None) -> _Stack:
    """Sort slices along the normal and build the LPS affine from first position and slice step."""
    r = _unit(np.asarray(iop[:3], dtype=float))
    c = _unit(np.asarray(iop[3:6], dtype=float))
    n = _unit(np.cross(r, c))
    pos = np.asarray(positions, dtype=float)
    d = pos @ n
    order = np.argsort(d, kind="stable")
    pos, d = pos[order], d[order]
    warns: list[str] = []
    if len(pos) == 1:
        step = n * (single_spacing if single_spacing and single_spacing > 0 else 1.0)
    else:
        gaps = np.diff(d)
        med = float(np.median(np.abs(gaps))) if gaps.size else 0.0
        dup = np.abs(gaps) < max(1e-3, 1e-3 * med)
        if dup.any():
            n_unique = len(pos) - int(dup.sum())
            if n_unique > 1 and len(pos) % n_unique == 0:
                raise MedGroundInputError(
                    f"the data hold {len(pos) // n_unique} images at each of {n_unique} positions "
                    "(4D, e.g. several time points, phases or b-values); a single volume is needed, "
                    "so load one of them separately."
                )
            raise MedGroundInputError(
                f"{int(dup.sum())} slices share a position with another slice, so the images do not "
                "form a single volume; a single volume is needed."
            )
        step = (pos[-1] - pos[0]) / (len(pos) - 1)
        if gaps.max() - gaps.min() > max(0.01, 0.01 * med):
            warns.append(
                f"non-uniform slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm); "
                f"using the mean {np.linalg.norm(step):.4g} mm (geometry is approximate)"
            )
        cosang = abs(float(step @ n)) / max(np.linalg.norm(step), 1e-12)
        angle = math.degrees(math.acos(min(1.0, cosang)))
        if angle > 0.01:
            warns.append(
                f"gantry tilt / sheared grid: slices are offset by {angle:.2f} degrees from the slice "
                "normal (the affine is sheared to keep world positions true)"
            )
    aff = np.eye(4)
    aff[:3, 0] = r * pixel_spacing[1]
    aff[:3, 1] = c * pixel_spacing[0]
    aff[:3, 2] = step
    aff[:3, 3] = pos[0]
    return _Stack(order=order, affine_lps=aff, warnings=warns)


def _orientation_letters(letters: str) -> np.ndarray | None:
    vec = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1), "F": (0, 0, -1)}
    v = np.zeros(3)
    for ch in letters.upper():
        if ch not in vec:
            return None
        v += vec[ch]
    return _unit(v) if np.linalg.norm(v) > 0 else None


def _pixel_spacing(ds, meta: dict) -> list[float] | None:
    """In-plane spacing [row spacing, col spacing] in mm, or None."""
    item = _fg_item(ds, 0, "PixelMeasuresSequence")
    cands = []
    if item is not None:
        cands.append(("PixelMeasuresSequence", _get(item, "PixelSpacing")))
    cands += [("PixelSpacing", _get(ds, "PixelSpacing")),
              ("ImagerPixelSpacing", _get(ds, "ImagerPixelSpacing")),
              ("NominalScannedPixelSpacing", _get(ds, "NominalScannedPixelSpacing"))]
    for key, value in cands:
        ps = _floats(value, 2)
        if ps and ps[0] > 0 and ps[1] > 0:
            if key != "PixelSpacing" and key != "PixelMeasuresSequence":
                meta["pixel_spacing_source"] = key
            return ps
    # Ultrasound: physical deltas of the first calibrated region (cm -> mm).
    regions = _get(ds, "SequenceOfUltrasoundRegions")
    if regions:
        for reg in regions:
            if int(_get(reg, "PhysicalUnitsXDirection", 0) or 0) == 3 and int(_get(reg, "PhysicalUnitsYDirection", 0) or 0) == 3:
                dx = _first_float(_get(reg, "PhysicalDeltaX"))
                dy = _first_float(_get(reg, "PhysicalDeltaY"))
                if dx and dy and dx > 0 and dy > 0:
                    meta["pixel_spacing_source"] = "SequenceOfUltrasoundRegions"
                    if len(regions) > 1:
                        meta.setdefault("warnings", []).append(
                            "ultrasound spacing taken from the first calibrated region only")
                    return [abs(dy) * 10.0, abs(dx) * 10.0]
    return None


def _planar_affine(ds, ps: list[float] | None, meta: dict) -> tuple[np.ndarray, bool]:
    """Affine for an image without a usable position (radiograph, US, secondary capture)."""
    aff = np.eye(4)
    has_geo = ps is not None
    dy, dx = ps if ps else (1.0, 1.0)
    orient = _get(ds, "PatientOrientation")
    r = c = None
    if orient is not None and len(orient) == 2:
        r = _orientation_letters(str(orient[0]))
        c = _orientation_letters(str(orient[1]))
    if r is not None and c is not None and abs(float(r @ c)) < 1e-6:
        n = np.cross(r, c)
        aff[:3, 0], aff[:3, 1], aff[:3, 2] = r * dx, c * dy, n
        meta["orientation_source"] = "PatientOrientation"
        return LPS_TO_RAS @ aff, has_geo
    # No patient frame: plain pixel grid (x right, y down) with the pixel size; no RAS claim.
    aff[0, 0], aff[1, 1] = dx, dy
    return aff, has_geo


# --------------------------------------------------------------------------- single file
def load_dicom_file(src, *, name: str | None = None) -> MedImage:
    """One DICOM file (path or bytes): a 2D slice/radiograph, or a multi-frame volume/cine."""
    name = name or _name(src)
    ds = _read_dataset(src, stop_before_pixels=False)
    modality = str(_get(ds, "Modality", "OT")).upper()
    if modality in NON_IMAGE_MODALITIES:
        raise MedGroundInputError(
            f"{name} is a DICOM {modality} object, not an image; load the image it refers to."
        )
    frames, prepared = _decode(ds, src)
    nframes = frames.shape[0]
    meta = safe_meta(ds)
    meta.setdefault("warnings", [])
    color = frames.ndim == 4
    photometric_in = str(_get(ds, "PhotometricInterpretation", "MONOCHROME2"))
    photometric = photometric_in

    if not color:
        if photometric_in == "MONOCHROME1" and not prepared:
            frames, k = _invert_monochrome1(frames, ds)
            photometric = "MONOCHROME2"
            _invert_window(meta, ds, k)
        elif photometric_in == "MONOCHROME1":
            photometric = "MONOCHROME2"
            meta.pop("window_center", None)
            meta.pop("window_width", None)
        if not prepared:
            params = [_rescale_params(ds, i if nframes > 1 or "PerFrameFunctionalGroupsSequence" in ds else None)
                      for i in range(nframes)]
            frames = _apply_rescale(frames, params)
    else:
        photometric = "RGB"
    if photometric_in != photometric:
        meta["photometric_original"] = photometric_in
        if photometric_in == "MONOCHROME1":
            meta["inverted"] = True
    meta["photometric"] = photometric

    order = np.arange(nframes)
    ps = _pixel_spacing(ds, meta)
    thickness = _first_float(_get(ds, "SpacingBetweenSlices")) or _first_float(_get(ds, "SliceThickness"))
    frame_positions = None
    iop = None
    if nframes > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        pos_list = []
        for i in range(nframes):
            it = _fg_item(ds, i, "PlanePositionSequence")
            p = _floats(_get(it, "ImagePositionPatient"), 3) if it is not None else None
            pos_list.append(p)
        ori = _fg_item(ds, 0, "PlaneOrientationSequence")
        iop = _floats(_get(ori, "ImageOrientationPatient"), 6) if ori is not None else None
        if all(p is not None for p in pos_list) and iop is not None:
            frame_positions = np.asarray(pos_list)
        meas = _fg_item(ds, 0, "PixelMeasuresSequence")
        if meas is not None:
            thickness = _first_float(_get(meas, "SpacingBetweenSlices")) or _first_float(_get(meas, "SliceThickness")) or thickness
            st = _first_float(_get(meas, "SliceThickness"))
            if st is not None:
                meta["slice_thickness_mm"] = st
    else:
        p = _floats(_get(ds, "ImagePositionPatient"), 3)
        iop = _floats(_get(ds, "ImageOrientationPatient"), 6)
        if p is not None and iop is not None:
            frame_positions = np.asarray([p])

    has_geometry = True
    if frame_positions is not None and iop is not None and ps is not None:
        st = _stack_geometry(frame_positions, iop, ps, thickness)
        order = st.order
        affine = LPS_TO_RAS @ st.affine_lps
        meta["warnings"] += st.warnings
    else:
        affine, has_geometry = _planar_affine(ds, ps, meta)
        if ps is not None and thickness:
            affine[:3, 2] *= thickness
        if nframes > 1:
            meta["warnings"].append(
                "frames have no per-frame position: they are stacked as z in file order (e.g. cine/time)")
        if ps is None:
            meta["warnings"].append("pixel spacing unknown: sizes are in pixels")
        elif modality in PROJECTION_MODALITIES:
            meta["warnings"].append("projection image: spacing is at the detector plane (no magnification correction)")

    frames = frames[order]
    # (frames, rows, cols[, c]) -> (X, Y, Z[, c])
    data = frames.transpose(2, 1, 0, 3) if color else frames.transpose(2, 1, 0)
    data = np.ascontiguousarray(data)
    ndim = 3 if nframes > 1 else 2
    meta["n_slices"] = int(nframes)
    if not meta["warnings"]:
        del meta["warnings"]
    _log_warnings(name, meta.get("warnings", []))
    _strip_pixels(ds)
    return MedImage(
        data=data, affine=affine, ndim=ndim, modality=modality, has_geometry=has_geometry,
        photometric=photometric, source_path=str(src) if isinstance(src, (str, Path)) else None,
        source_format="dicom", meta=meta, dicom_datasets=[ds],
        dicom_frame_order=[int(i) for i in order] if nframes > 1 else None,
    )


_ROUTINE_NOTES = ("pixel spacing unknown", "projection image", "frames have no per-frame position",
                  "ultrasound spacing")


def _log_warnings(name: str, warns: list[str]) -> None:
    """Geometry problems are logged as warnings; routine notes (no spacing on a photo-like image)
    at INFO. Messages never contain header values that identify a patient."""
    for w in warns:
        level = logging.INFO if w.startswith(_ROUTINE_NOTES) else logging.WARNING
        log.log(level, "%s: %s", name, w)


def _invert_window(meta: dict, ds, k_raw: float) -> None:
    """Keep the header window meaningful after MONOCHROME1 inversion (new = K - old)."""
    if "window_center" not in meta:
        return
    s, b = _rescale_params(ds, None)
    meta["window_center"] = float(s * k_raw + 2 * b - meta["window_center"])


# --------------------------------------------------------------------------- series (folder / zip)
@dataclass
class _Entry:
    ds: Any  # header without pixel data
    src: Any  # path or bytes (to read the pixels later)
    name: str


def _collect_folder(folder: Path) -> tuple[list[_Entry], int]:
    entries, bad = [], 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name.upper() == "DICOMDIR":
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(132)
        except OSError:
            bad += 1
            continue
        if not _is_dicom_bytes(head) and p.suffix.lower() not in (".dcm", ".dicom", ".ima", ""):
            continue
        try:
            ds = _read_dataset(p, stop_before_pixels=True)
        except MedGroundInputError:
            if p.suffix.lower() in (".dcm", ".dicom", ".ima") or _is_dicom_bytes(head):
                bad += 1
            continue
        entries.append(_Entry(ds=ds, src=p, name=p.name))
    return entries, bad


def _collect_zip(path: Path) -> tuple[list[_Entry], int]:
    entries, bad = [], 0
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MedGroundInputError(f"{path.name} is not a readable zip archive ({exc}).") from exc
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or not base or base.startswith(".") or base.upper() == "DICOMDIR" or "__MACOSX" in info.filename:
                continue
            try:
                blob = zf.read(info)
            except Exception:
                bad += 1
                continue
            suffix = Path(base).suffix.lower()
            if not _is_dicom_bytes(blob[:132]) and suffix not in (".dcm", ".dicom", ".ima", ""):
                continue
            try:
                ds = _read_dataset(blob, stop_before_pixels=True)
            except MedGroundInputError:
                bad += 1
                continue
            entries.append(_Entry(ds=ds, src=blob, name=base))
    return entries, bad


def _series_key(ds) -> str:
    return str(_get(ds, "SeriesInstanceUID", "") or "unknown-series")


def _iop_key(ds) -> tuple:
    iop = _floats(_get(ds, "ImageOrientationPatient"), 6)
    return tuple(round(v, 3) for v in iop) if iop else ()


def load_dicom_series(path: Path, series: str | int | None = None) -> MedImage:
    """A folder (recursive) or zip of DICOM files: pick one series and stack it into a volume."""
    path = Path(path)
    if path.is_dir():
        entries, bad = _collect_folder(path)
        where = f"folder {path.name}"
    else:
        entries, bad = _collect_zip(path)
        where = f"zip {path.name}"
    entries = [e for e in entries if str(_get(e.ds, "Modality", "")).upper() not in NON_IMAGE_MODALITIES
               and "Rows" in e.ds]
    if not entries:
        raise MedGroundInputError(f"no DICOM images were found in the {where}.")

    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(_series_key(e.ds), []).append(e)

    def _sn(uid):
        n = _first_float(_get(groups[uid][0].ds, "SeriesNumber"))
        return (n if n is not None else float("inf"), uid)

    uids = sorted(groups, key=_sn)
    listing = [
        {"index": i, "series_number": (int(_sn(u)[0]) if math.isfinite(_sn(u)[0]) else None),
         "modality": str(_get(groups[u][0].ds, "Modality", "OT")), "slices": _n_images(groups[u])}
        for i, u in enumerate(uids)
    ]
    if series is None:
        idx = max(range(len(uids)), key=lambda i: (listing[i]["slices"], -i))
    else:
        idx = _select_series(series, uids, listing)
    chosen = groups[uids[idx]]

    warns: list[str] = []
    if bad:
        warns.append(f"{bad} file(s) could not be read as DICOM and were skipped")
    # Keep one consistent stack (same size and orientation); drop localizers etc.
    sub: dict[tuple, list[_Entry]] = {}
    for e in chosen:
        sub.setdefault((int(_get(e.ds, "Rows", 0)), int(_get(e.ds, "Columns", 0)), _iop_key(e.ds)), []).append(e)
    if len(sub) > 1:
        best = max(sub.values(), key=len)
        warns.append(f"{len(chosen) - len(best)} image(s) of another size/orientation in the series were ignored")
        chosen = best

    multi = [e for e in chosen if int(_first_float(_get(e.ds, "NumberOfFrames", 1)) or 1) > 1]
    if multi or len(chosen) == 1:
        if len(chosen) > 1:
            raise MedGroundInputError(
                f"the selected series in the {where} has {len(chosen)} multi-frame files; load one file at a time.")
        img = load_dicom_file(chosen[0].src, name=chosen[0].name)
        img.meta.update(_series_meta(listing, idx))
        if warns:
            img.meta.setdefault("warnings", []).extend(warns)
        img.source_path = str(path)
        img.source_format = "dicom-series"
        return img

    first = chosen[0].ds
    modality = str(_get(first, "Modality", "OT")).upper()
    meta = safe_meta(first)
    positions = [_floats(_get(e.ds, "ImagePositionPatient"), 3) for e in chosen]
    iop = _floats(_get(first, "ImageOrientationPatient"), 6)
    ps = _pixel_spacing(first, meta)
    thickness = _first_float(_get(first, "SpacingBetweenSlices")) or _first_float(_get(first, "SliceThickness"))
    has_geometry = True
    if all(p is not None for p in positions) and iop is not None and ps is not None:
        st = _stack_geometry(np.asarray(positions), iop, ps, thickness)
        order = st.order
        affine = LPS_TO_RAS @ st.affine_lps
        warns += st.warnings
    else:
        inst = [(_first_float(_get(e.ds, "InstanceNumber")) or 0.0) for e in chosen]
        order = np.argsort(inst, kind="stable")
        affine, has_geometry = _planar_affine(first, ps, meta)
        affine[:3, 2] *= thickness or 1.0
        warns.append("slices lack position/orientation: sorted by InstanceNumber, geometry is approximate")
    chosen = [chosen[i] for i in order]

    # Read pixels slice by slice (only for the chosen series).
    slices, params, prepared_any = [], [], False
    photometric_in = str(_get(first, "PhotometricInterpretation", "MONOCHROME2"))
    for e in chosen:
        full = _read_dataset(e.src, stop_before_pixels=False)
        arr, prepared = _decode(full, e.src)
        prepared_any |= prepared
        if photometric_in == "MONOCHROME1" and not prepared and arr.ndim == 3:
            arr, _k = _invert_monochrome1(arr, full)
        slices.append(arr[0])
        params.append((1.0, 0.0) if prepared else _rescale_params(full, None))
    try:
        frames = np.stack(slices)
    except ValueError as exc:
        raise MedGroundInputError(f"the slices in the {where} have different sizes, so they do not form a volume.") from exc
    color = frames.ndim == 4
    if not color:
        frames = _apply_rescale(frames, params)
    photometric = "RGB" if color else "MONOCHROME2"
    if photometric_in != photometric:
        meta["photometric_original"] = photometric_in
        if photometric_in == "MONOCHROME1":
            meta["inverted"] = True
            meta.pop("window_center", None)
            meta.pop("window_width", None)
    meta["photometric"] = photometric
    data = np.ascontiguousarray(frames.transpose(2, 1, 0, 3) if color else frames.transpose(2, 1, 0))
    meta["n_slices"] = len(chosen)
    meta.update(_series_meta(listing, idx))
    if warns:
        meta["warnings"] = warns
        _log_warnings(path.name, warns)
    return MedImage(
        data=data, affine=affine, ndim=3, modality=modality, has_geometry=has_geometry,
        photometric=photometric, source_path=str(path), source_format="dicom-series", meta=meta,
        dicom_datasets=[e.ds for e in chosen],
    )


def _n_images(entries: list[_Entry]) -> int:
    return sum(int(_first_float(_get(e.ds, "NumberOfFrames", 1)) or 1) for e in entries)


def _series_meta(listing: list[dict], idx: int) -> dict:
    return {
        "series_count": len(listing),
        "series_index": idx,
        "series": listing,
    }


def _select_series(series, uids: list[str], listing: list[dict]) -> int:
    s = str(series).strip()
    if s in uids:
        return uids.index(s)
    if s.lstrip("-").isdigit() and len(s) <= 6:
        i = int(s)
        if 0 <= i < len(uids):
            return i
    avail = ", ".join(f"{d['index']} ({d['modality']}, {d['slices']} images)" for d in listing)
    raise MedGroundInputError(f"series {s!r} was not found; choose an index or a SeriesInstanceUID: {avail}.")
