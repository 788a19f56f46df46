"""Writers: masks as NIfTI (exact input affine/shape) or PNG (exact input pixel size), and DICOM SEG.

DICOM SEG decisions:

* one BINARY segment per named mask, numbered 1..N in the order of the ``masks`` dict;
* only frames where a segment is non-empty are stored (``omit_empty_frames``), each frame refers
  to the exact source instance (SOPInstanceUID, and frame number for a multi-frame source);
* an empty mask is **kept** as a segment without frames (so segment numbers always follow the
  given names) and a warning is logged; if *every* mask is empty the SEG stores all frames (zeros),
  since a SEG must contain at least one frame.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- masks
def _as_label_mask(mask, ref: MedImage, what: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise MedGroundInputError(f"the {what} must be boolean or integer labels, not {m.dtype}.")
    if m.ndim == 2 and ref.shape[2] == 1:
        m = m[:, :, None]
    if tuple(m.shape) != tuple(ref.shape):
        raise MedGroundInputError(
            f"the {what} has shape {tuple(m.shape)} but the image is {tuple(ref.shape)} (x, y, z); "
            "masks must be on the input's own grid."
        )
    if m.dtype == bool:
        return m.astype(np.uint8)
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)) or not np.array_equal(m, np.round(m)):
            raise MedGroundInputError(f"the {what} holds non-integer values; threshold it to labels first.")
    if m.size and (m.min() < 0 or m.max() > 255):
        raise MedGroundInputError(f"the {what} has labels outside 0..255 (min {m.min()}, max {m.max()}).")
    return m.astype(np.uint8)


def _mask_kind(path: Path, ref: MedImage) -> tuple[str, Path]:
    name = path.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti", path
    if name.endswith(".png"):
        return "png", path
    if path.suffix == "" or path.suffix.lower() not in (".png", ".nii", ".gz", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if ref.ndim == 2:
            return "png", path.with_name(path.name + ".png")
        return "nifti", path.with_name(path.name + ".nii.gz")
    raise MedGroundInputError(f"masks are written as .nii/.nii.gz or .png, not {path.suffix}.")


def picture_stack(ref: MedImage) -> bool:
    """A volume read from a folder of pictures (no geometry; its grid is each picture's (column, row))."""
    return ref.ndim == 3 and bool(ref.meta.get("slice_names")) and not ref.has_geometry


def save_mask(mask: np.ndarray, ref: MedImage, path) -> Path:
    """Write a mask on the input's own grid; returns the path written.

    * ``.nii``/``.nii.gz`` (or any path when ``ref.ndim == 3``): uint8 NIfTI with exactly
      ``ref.affine`` and ``ref.shape`` (sform code 2 "aligned", qform code 1 "scanner").
    * ``.png`` (or any path when ``ref.ndim == 2``): an 8-bit PNG of exactly the input's pixel size;
      a binary mask becomes 0/255, a label map keeps its label values. ``mask[:, :, 0].T`` is the
      picture (rows = y, columns = x).
    * A volume read from a folder of pictures (:func:`picture_stack`) is written as the pictures' own arrays
      stacked: the NIfTI's ``data[:, :, z]`` is slice z as (rows, columns), the layout of a label volume built
      from the same pictures with numpy / nibabel; its affine swaps the first two axes, so every voxel keeps its
      world position and geometry-aware readers still overlay it on the input.
    """
    m = _as_label_mask(mask, ref)
    path = Path(path)
    kind, path = _mask_kind(path, ref)
    if kind == "png" and ref.shape[2] != 1:
        raise MedGroundInputError(
            f"a PNG holds one slice but the image has {ref.shape[2]} slices; write .nii.gz instead."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nifti":
        if picture_stack(ref):  # stored as the pictures' arrays stacked, at the same world positions
            return save_nifti(np.ascontiguousarray(m.transpose(1, 0, 2)), ref.affine[:, [1, 0, 2, 3]], path)
        return save_nifti(m, ref.affine, path)
    from PIL import Image

    pic = m[:, :, 0].T
    if pic.max() <= 1:
        pic = pic * np.uint8(255)
    Image.fromarray(np.ascontiguousarray(pic, dtype=np.uint8)).save(path)
    return path


def save_nifti(image_or_array, affine: np.ndarray | None, path) -> Path:
    """Write a MedImage or an ``[x, y, z(, c)]`` array as NIfTI-1 with exactly ``affine``.

    Both sform (code 2, aligned) and qform (code 1, scanner) are set from the affine; a sheared
    affine (gantry tilt) is exact in the sform only. bool arrays are written as uint8, float64 as
    float32.
    """
    import nibabel as nib

    if isinstance(image_or_array, MedImage):
        data = image_or_array.data
        if affine is None:
            affine = image_or_array.affine
    else:
        data = np.asarray(image_or_array)
    if affine is None:
        affine = np.eye(4)
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise MedGroundInputError("the affine must be a finite 4x4 matrix.")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float64:
        data = data.astype(np.float32)
    elif data.dtype == np.int64:
        data = data.astype(np.int32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.set_sform(affine, code=2)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(data.dtype)
    nib.save(img, str(path))
    return path


# --------------------------------------------------------------------------- DICOM SEG
def _code(value, default):
    """A pydicom Code / highdicom CodedConcept from a Code, CodedConcept or (value, scheme, meaning)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    if value is None:
        return default
    if isinstance(value, (Code, hd.sr.CodedConcept)):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return Code(str(value[0]), str(value[1]), str(value[2]))
    if isinstance(value, Mapping):
        return Code(str(value["value"]), str(value.get("scheme", value.get("scheme_designator", "SCT"))),
                    str(value["meaning"]))
    raise MedGroundInputError(f"cannot use {value!r} as a code; give (value, scheme, meaning).")


def _clean_sources(datasets) -> list:
    """Copies of the source headers with values highdicom rejects but that occur in the wild fixed."""
    import copy

    import highdicom as hd

    out = []
    made_up: dict[str, str] = {}
    for ds in datasets:
        ds = copy.deepcopy(ds)
        cs = ds.get("SpecificCharacterSet", None)
        if cs is not None and (cs == "" or (not isinstance(cs, str) and all(not v for v in cs))):
            del ds.SpecificCharacterSet
        ps = ds.get("PixelSpacing", None)
        if ps is not None:
            try:
                bad = len(ps) != 2 or any(float(v) <= 0 for v in ps)
            except (TypeError, ValueError):
                bad = True
            if bad:  # e.g. 0\0 in some radiographs; the SEG would be unreadable
                del ds.PixelSpacing
        if not str(ds.get("SOPInstanceUID", "") or ""):
            raise MedGroundInputError("the source DICOM has no SOPInstanceUID, so a SEG cannot reference it.")
        for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(kw, "") or ""):
                if kw not in made_up:
                    made_up[kw] = hd.UID()
                    log.warning("DICOM SEG: the source has no %s (de-identified?); a new one is used, "
                                "so archives may not link the SEG to its study", kw)
                setattr(ds, kw, made_up[kw])
        out.append(ds)
    return out


@contextlib.contextmanager
def quiet_highdicom():
    """Build highdicom objects without its INFO log lines (they quote source UIDs) or its warnings."""
    hd_logger = logging.getLogger("highdicom")
    old_level = hd_logger.level
    hd_logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hd_logger.setLevel(old_level)


def write_dicom_seg(
    masks: Mapping[str, np.ndarray],
    ref: MedImage,
    path,
    descriptions: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    series_description: str = "medground segmentation",
    series_number: int = 900,
) -> Path:
    """Write a BINARY DICOM SEG (one segment per named mask) referencing ``ref``'s DICOM source.

    ``masks``: name -> ``(X, Y, Z)`` bool/label array on ``ref``'s grid (non-zero = inside).
    ``descriptions``: optional name -> dict with ``category`` / ``type`` codes (pydicom ``Code``,
    highdicom ``CodedConcept`` or ``(value, scheme, meaning)``), ``anatomic_regions`` (list of codes),
    ``tracking_id``, ``label`` (segment label, defaults to the name). Defaults: category and type
    SCT 85756007 "Tissue".
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import medground

    if not ref.dicom_datasets or ref.source_format not in ("dicom", "dicom-series"):
        raise MedGroundInputError(
            "a DICOM SEG can only be written for an image loaded from DICOM (it must reference the source slices)."
        )
    if not masks:
        raise MedGroundInputError("no masks were given for the DICOM SEG.")
    descriptions = descriptions or {}
    names = list(masks)
    stack = []
    for name in names:
        m = _as_label_mask(masks[name], ref, what=f"mask '{name}'")
        stack.append(m > 0)
    empty = [n for n, m in zip(names, stack) if not m.any()]
    for n in empty:
        log.warning("DICOM SEG: mask '%s' is empty; its segment is kept without frames", n)

    sources = _clean_sources(ref.dicom_datasets)
    # our [x, y, z] -> DICOM frames [z, row=y, col=x]
    arr = np.stack([m.transpose(2, 1, 0) for m in stack], axis=-1)  # (Z, Y, X, S)
    if len(sources) == 1 and int(getattr(sources[0], "NumberOfFrames", 1) or 1) > 1:
        # Multi-frame source: frames must follow the source file's frame order.
        order = ref.dicom_frame_order or list(range(arr.shape[0]))
        inv = np.empty(len(order), dtype=int)
        inv[np.asarray(order)] = np.arange(len(order))
        arr = arr[inv]
    elif len(sources) != arr.shape[0]:
        raise MedGroundInputError(
            f"the image has {arr.shape[0]} slices but {len(sources)} source DICOM datasets; cannot reference them."
        )

    algo = hd.AlgorithmIdentificationSequence(
        name="medground", family=codes.cid7162.ArtificialIntelligence, version=medground.__version__,
    )
    seg_descs = []
    for i, name in enumerate(names, start=1):
        d = dict(descriptions.get(name, {}))
        kwargs = {}
        if d.get("anatomic_regions"):
            kwargs["anatomic_regions"] = [_code(c, None) for c in d["anatomic_regions"]]
        if d.get("tracking_id"):
            kwargs["tracking_id"] = str(d["tracking_id"])
            kwargs["tracking_uid"] = str(d.get("tracking_uid") or hd.UID())
        seg_descs.append(hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=str(d.get("label", name))[:64],
            segmented_property_category=_code(d.get("category"), codes.SCT.Tissue),
            segmented_property_type=_code(d.get("type"), codes.SCT.Tissue),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            **kwargs,
        ))

    all_empty = len(empty) == len(names)
    try:
        with quiet_highdicom():
            seg = hd.seg.Segmentation(
                source_images=sources,
                pixel_array=arr.astype(np.uint8),
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=seg_descs,
                series_instance_uid=hd.UID(),
                series_number=int(series_number),
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="medground",
                manufacturer_model_name="medground",
                software_versions=str(medground.__version__),
                device_serial_number="0",
                series_description=series_description,
                content_label="MEDGROUND",
                content_description="medground automatic segmentation",
                omit_empty_frames=not all_empty,
            )
    except MedGroundInputError:
        raise
    except Exception as exc:
        raise MedGroundInputError(
            f"the DICOM SEG could not be built from this source ({type(exc).__name__}: {str(exc)[:150]})."
        ) from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return path
