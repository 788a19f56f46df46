"""``load(path)``: one entry point for NIfTI, NRRD, DICOM (file, folder, zip) and pictures.

The format is chosen from the file's content (magic bytes) first and its extension second. Every
failure to read a user's file becomes a one-sentence :class:`MedGroundInputError`.
"""
from __future__ import annotations

import gzip
import logging
import warnings
from pathlib import Path

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.io.validate import validate

log = logging.getLogger(__name__)

PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".img.gz", ".hdr.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def load(path, series: str | int | None = None, *, check: bool = True) -> MedImage:
    """Read a medical image with its full geometry.

    ``path``: NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr), a DICOM file, a folder of DICOM files
    (searched recursively) or a .zip of them, a picture (PNG/JPG/BMP/TIFF), or a MedSAM-style NumPy
    archive (.npz with ``imgs`` and optionally ``spacing``/``origin``/``direction``; see :func:`load_npz`).
    ``series``: for a DICOM folder/zip holding several series, an index (see ``meta['series']``)
    or a SeriesInstanceUID; by default the series with the most images is used.
    ``check``: run :func:`validate` (reject empty/constant/NaN images); pass False to read e.g. an
    all-zero mask.
    """
    if path is None or str(path) == "":
        raise MedGroundInputError("no input path was given.")
    p = Path(path).expanduser()
    if not p.exists():
        raise MedGroundInputError(f"file not found: {path}")
    fmt = detect_format(p)
    try:
        image = _READERS[fmt](p, series)
    except MedGroundInputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # any reader failure on user data is an input error
        raise MedGroundInputError(
            f"{p.name} could not be read as {fmt.upper()}; it looks truncated or corrupt "
            f"({type(exc).__name__}: {str(exc)[:120]})."
        ) from exc
    if image.source_path is None:
        image.source_path = str(p)
    if check:
        validate(image, name=p.name)
    if image.modality == "OT" and image.source_format in ("nifti", "nrrd", "npz"):
        from medground.io.intensity import looks_like_hu

        if looks_like_hu(image):  # a volume (or a single slice) in Hounsfield units is a CT
            image.modality = "CT"
            image.meta["modality_source"] = "guessed from intensities (Hounsfield units)"
    if image.modality == "OT" and image.data.dtype == np.uint16 and not image.is_color \
            and image.source_format.split("-")[0] in ("png", "tif", "tiff"):
        from medground.io.intensity import hu_offset

        off = hu_offset(image.data)
        if off is not None:  # a 16-bit picture of a CT: back to Hounsfield units, windowed like any CT
            image.data = image.data.astype(np.int32) - np.int32(off)
            image.modality = "CT"
            image.meta["modality_source"] = f"guessed from intensities: a 16-bit picture holding Hounsfield units + {off}"
            image.meta["hu_offset"] = off
    log.debug("loaded %s: %s shape=%s modality=%s", p.name, image.source_format, image.shape, image.modality)
    return image


def detect_format(p: Path) -> str:
    """'dicom-series', 'zip', 'npz', 'dicom', 'nifti', 'nrrd' or 'picture' from content, then suffix."""
    if p.is_dir():
        return "picture-folder" if _picture_files(p) else "dicom-series"
    if not p.is_file():
        raise MedGroundInputError(f"{p} is not a regular file or folder.")
    try:
        with open(p, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise MedGroundInputError(f"{p.name} cannot be opened ({exc.strerror or exc}).") from exc
    if not head:
        raise MedGroundInputError(f"{p.name} is an empty file (0 bytes).")
    name = p.name.lower()
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz" if name.endswith(".npz") or _zip_of_npy(p) else "zip"
    if head.startswith(b"NRRD"):
        return "nrrd"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or head.startswith(b"BM") \
            or head[:4] in (b"II*\x00", b"MM\x00*") or head.startswith(b"GIF8") \
            or (head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "picture"
    if _looks_nifti(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(p, "rb") as gz:
                inner = gz.read(352)
        except Exception as exc:
            raise MedGroundInputError(f"{p.name} is a damaged gzip file ({type(exc).__name__}).") from exc
        if _looks_nifti(inner) or name.endswith(NIFTI_SUFFIXES):
            return "nifti"
        if inner.startswith(b"NRRD"):
            return "nrrd"
        raise MedGroundInputError(f"{p.name} is a gzip file that holds no NIfTI image.")
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    if p.suffix.lower() in PICTURE_SUFFIXES:
        return "picture"
    if p.suffix.lower() in DICOM_SUFFIXES or p.suffix == "" or p.suffix[1:].isdigit():
        return "dicom"  # DICOM without preamble: parsed with force=True and checked
    raise MedGroundInputError(
        f"{p.name} is not a supported image format (NIfTI, NRRD, DICOM, DICOM folder/zip, PNG/JPG/BMP/TIFF)."
    )


def _looks_nifti(head: bytes) -> bool:
    if len(head) >= 348:
        import struct

        for endian in "<>":
            size = struct.unpack(endian + "i", head[:4])[0]
            if size == 348 and head[344:347] in (b"n+1", b"ni1"):
                return True
            if size == 540 and head[4:7] in (b"n+2", b"ni2"):
                return True
    return False


# --------------------------------------------------------------------------- NIfTI
def load_nifti(p: Path, series=None) -> MedImage:
    import nibabel as nib

    try:
        img = nib.load(str(p))
    except Exception as exc:
        raise MedGroundInputError(f"{p.name} is not a readable NIfTI file ({type(exc).__name__}).") from exc
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise MedGroundInputError(
            f"{p.name} has unreadable voxel data; the file looks truncated or corrupt ({type(exc).__name__})."
        ) from exc
    affine = np.asarray(img.affine, dtype=float)
    hdr = img.header
    meta: dict = {}
    color = False
    if data.dtype.names:  # RGB24 / RGBA32 structured voxels
        fields = [f for f in data.dtype.names if f in ("R", "G", "B")]
        data = np.stack([data[f] for f in fields], axis=-1) if fields else None
        if data is None:
            raise MedGroundInputError(f"{p.name} has an unsupported structured voxel type.")
        color = True
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    true_2d = False
    spatial = data.shape[:-1] if color else data.shape
    if len(spatial) == 2:
        true_2d = True
        data = data[:, :, None, ...] if not color else data[:, :, None, :]
    elif len(spatial) > 3:
        extra = spatial[3:]
        if all(s == 1 for s in extra):
            data = data.reshape(spatial[:3] + ((data.shape[-1],) if color else ()))
        elif len(extra) == 2 and extra[0] == 1 and extra[1] == 3 and hdr.get("intent_code", 0) in (1007, 2003):
            data = data[:, :, :, 0, :]  # vector/RGB intent stored as 5D
            color = True
        else:
            raise MedGroundInputError(
                f"{p.name} is {len(spatial)}D (shape {tuple(spatial)}: several volumes, e.g. time points); "
                "a single 3D volume is needed, so extract one volume first."
            )
    xyzt = hdr.get_xyzt_units()[0] if hasattr(hdr, "get_xyzt_units") else "mm"
    if xyzt not in ("mm", "unknown"):
        meta["spatial_unit"] = xyzt
    try:
        meta["qform_code"] = int(hdr["qform_code"])
        meta["sform_code"] = int(hdr["sform_code"])
    except Exception:
        pass
    ndim = 2 if true_2d else 3
    return MedImage(
        data=np.ascontiguousarray(data), affine=affine, ndim=ndim, modality="OT",
        has_geometry=True, photometric="RGB" if color else "MONOCHROME2",
        source_path=str(p), source_format="nifti", meta=meta,
    )


# --------------------------------------------------------------------------- NRRD
_NRRD_SPACE_SIGNS = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
}
_COLOR_KINDS = {"rgb-color", "rgba-color", "3-color", "4-color", "hsv-color", "xyz-color", "3-vector"}


def load_nrrd(p: Path, series=None) -> MedImage:
    import nrrd

    try:
        data, hdr = nrrd.read(str(p), index_order="F")
    except Exception as exc:
        raise MedGroundInputError(f"{p.name} is not a readable NRRD file ({type(exc).__name__}: {str(exc)[:100]}).") from exc
    meta: dict = {}
    warns: list[str] = []
    dim = data.ndim
    kinds = [str(k).lower() for k in hdr.get("kinds", ["domain"] * dim)]
    dirs = hdr.get("space directions")
    dirs = None if dirs is None else np.asarray(dirs, dtype=float)
    spatial_axes = []
    for ax in range(dim):
        if dirs is not None and ax < len(dirs):
            if np.all(np.isfinite(dirs[ax])):
                spatial_axes.append(ax)
        elif kinds[ax] in ("domain", "space") if ax < len(kinds) else True:
            spatial_axes.append(ax)
    other = [ax for ax in range(dim) if ax not in spatial_axes]
    color = False
    channel_axis = None
    for ax in other:
        if data.shape[ax] == 1:
            continue
        if channel_axis is None and data.shape[ax] in (3, 4) and (kinds[ax] if ax < len(kinds) else "") in _COLOR_KINDS:
            channel_axis = ax
            continue
        raise MedGroundInputError(
            f"{p.name} is 4D (an extra axis of {data.shape[ax]} '{kinds[ax] if ax < len(kinds) else '?'}' values); "
            "a single volume is needed."
        )
    if len(spatial_axes) > 3:
        raise MedGroundInputError(f"{p.name} has {len(spatial_axes)} spatial axes; a 2D or 3D image is needed.")
    order = spatial_axes + ([channel_axis] if channel_axis is not None else [])
    rest = [ax for ax in range(dim) if ax not in order]
    arr = np.transpose(data, order + rest)
    arr = arr.reshape(arr.shape[: len(order)])
    if channel_axis is not None:
        arr = arr[..., :3]
        color = True
    n_sp = len(spatial_axes)
    if n_sp == 2:
        arr = arr[:, :, None, ...]
    # Directions in the NRRD space (vectors of the spatial axes), embedded in 3D.
    space = str(hdr.get("space", "")).lower().replace("-time", "")
    aff = np.eye(4)
    if dirs is not None:
        vecs = [np.pad(dirs[ax], (0, max(0, 3 - dirs.shape[1])))[:3] for ax in spatial_axes]
    else:
        spac = hdr.get("spacings")
        spac = [float(s) for s in spac] if spac is not None else [1.0] * dim
        vecs = []
        for i, ax in enumerate(spatial_axes):
            v = np.zeros(3)
            s = spac[ax] if ax < len(spac) and np.isfinite(spac[ax]) else 1.0
            v[i] = s
            vecs.append(v)
        warns.append("NRRD has no space directions: axes assumed aligned with the world axes")
    for i, v in enumerate(vecs):
        aff[:3, i] = v
    if n_sp == 2:
        nrm = np.cross(aff[:3, 0], aff[:3, 1])
        nn = np.linalg.norm(nrm)
        aff[:3, 2] = nrm / nn if nn > 0 else np.array([0.0, 0.0, 1.0])
    origin = hdr.get("space origin")
    if origin is not None:
        o = np.asarray(origin, dtype=float)
        o = np.pad(o, (0, max(0, 3 - o.size)))[:3]
        aff[:3, 3] = np.where(np.isfinite(o), o, 0.0)
    if space in _NRRD_SPACE_SIGNS:
        signs = np.diag(list(_NRRD_SPACE_SIGNS[space]) + [1.0])
        aff = signs @ aff
    elif space:
        warns.append(f"NRRD space '{space}' has no defined patient orientation: taken as RAS")
    elif dirs is not None:
        warns.append("NRRD has no 'space' field: directions taken as RAS")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if warns:
        meta["warnings"] = warns
    return MedImage(
        data=np.ascontiguousarray(arr), affine=aff, ndim=2 if n_sp == 2 else 3, modality="OT",
        has_geometry=True, photometric="RGB" if color else "MONOCHROME2",
        source_path=str(p), source_format="nrrd", meta=meta,
    )


# --------------------------------------------------------------------------- pictures
def load_picture(p: Path, series=None) -> MedImage:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    fmt_name = p.suffix.lower().lstrip(".") or "picture"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(p)
            im.load()
    except UnidentifiedImageError as exc:
        raise MedGroundInputError(f"{p.name} is not a valid image file (its content is not {fmt_name.upper()}).") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MedGroundInputError(
            f"{p.name} could not be decoded; the image looks truncated or corrupt ({str(exc)[:100]})."
        ) from exc
    meta: dict = {}
    src_format = (im.format or fmt_name).lower().replace("jpeg", "jpg")
    try:
        orient = im.getexif().get(0x0112)
        if orient and orient != 1:
            meta["warnings"] = [f"EXIF orientation {orient} ignored: pixels are used as stored"]
    except Exception:
        pass
    frames = []
    n_frames = getattr(im, "n_frames", 1)
    it = ImageSequence.Iterator(im) if n_frames > 1 else [im]
    for fr in it:
        frames.append(_picture_array(fr))
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        frames = frames[:1]
        meta.setdefault("warnings", []).append("multi-page file with pages of different sizes: first page used")
    arr = np.stack(frames, axis=0)  # (Z, rows, cols[, 3])
    color = arr.ndim == 4
    if color and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]  # grey stored as RGB
        color = False
        meta["color_collapsed"] = True
    data = arr.transpose(2, 1, 0, 3) if color else arr.transpose(2, 1, 0)
    meta["bit_depth"] = int(np.dtype(arr.dtype).itemsize * 8)
    meta["n_slices"] = int(arr.shape[0])
    if arr.shape[0] > 1:
        meta.setdefault("warnings", []).append("multi-page picture: pages stacked as z")
    return MedImage(
        data=np.ascontiguousarray(data), affine=np.eye(4), ndim=3 if arr.shape[0] > 1 else 2,
        modality="OT", has_geometry=False, photometric="RGB" if color else "MONOCHROME2",
        source_path=str(p), source_format=src_format, meta=meta,
    )


def _picture_array(im) -> np.ndarray:
    """PIL image -> (rows, cols) grey or (rows, cols, 3) colour array, keeping 16-bit depth."""
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        a = np.asarray(im)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            return a.astype(np.uint16)
        return a.astype(np.int32)
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode == "LA" or mode == "La":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in im.info
        rgb = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))[..., :3]
        return rgb
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _picture_files(folder: Path) -> list[Path]:
    """The pictures of a folder that holds nothing else (hidden files aside), in natural order
    (``slice_2`` before ``slice_10``); [] when it holds anything else, e.g. DICOM files or sub-folders."""
    import re

    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    if not entries or any(not e.is_file() or e.suffix.lower() not in PICTURE_SUFFIXES for e in entries):
        return []
    key = lambda e: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", e.name)]  # noqa: E731
    return sorted(entries, key=key)


def load_picture_folder(p: Path, series=None) -> MedImage:
    """A folder of same-sized pictures (PNG/JPG... slices exported from a volume) as a volume without geometry:
    one slice per file in natural name order, each in the picture's own (column, row) grid."""
    files = _picture_files(p)
    slices = [load_picture(f) for f in files]
    first = slices[0]
    for f, s in zip(files, slices):
        if s.ndim != 2:
            raise MedGroundInputError(f"{p.name}: {f.name} holds several pages; a picture folder takes one slice per file.")
        if s.data.shape[:2] != first.data.shape[:2]:
            raise MedGroundInputError(
                f"{p.name}: the pictures differ in size ({files[0].name} is {first.data.shape[0]} x {first.data.shape[1]}, "
                f"{f.name} is {s.data.shape[0]} x {s.data.shape[1]}); a picture folder must hold slices of one volume.")
    color = any(s.photometric == "RGB" for s in slices)  # one colour slice: all as RGB
    arrs = [s.data if s.data.ndim == 4 or not color else np.repeat(s.data[..., None], 3, axis=-1) for s in slices]
    data = np.concatenate(arrs, axis=2)
    meta = {"n_slices": len(files), "bit_depth": first.meta.get("bit_depth"),
            "slice_files": [f.name for f in files[:3]] + (["..."] if len(files) > 3 else []),
            "slice_names": [f.name for f in files],  # every slice's file name, in z order (masks are written per slice too)
            "warnings": ["picture folder: slices stacked as z in file-name order; no spacing or orientation"]}
    return MedImage(data=np.ascontiguousarray(data), affine=np.eye(4), ndim=3 if len(files) > 1 else 2,
                    modality="OT", has_geometry=False, photometric="RGB" if color else "MONOCHROME2",
                    source_path=str(p), source_format=f"{first.source_format}-folder", meta=meta)


# --------------------------------------------------------------------------- DICOM
def _load_dicom(p: Path, series=None) -> MedImage:
    from medground.io.dicom import load_dicom_file

    return load_dicom_file(p)


def _load_dicom_series(p: Path, series=None) -> MedImage:
    from medground.io.dicom import load_dicom_series

    try:
        return load_dicom_series(p, series=series)
    except MedGroundInputError as exc:
        if p.is_dir() and "no DICOM images" in str(exc) and any(
                e.suffix.lower() in PICTURE_SUFFIXES for e in p.iterdir() if e.is_file()):
            raise MedGroundInputError(
                f"{exc} It holds pictures, but also other files or folders: a folder read as a volume of picture "
                "slices must hold nothing but same-sized pictures.") from exc
        raise


NPZ_IMAGE_KEYS = ("imgs", "img", "image", "images", "data", "arr_0")


def _zip_of_npy(p: Path) -> bool:
    """A zip whose members are all NumPy arrays (an .npz under another name)."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except Exception:
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def load_npz(p: Path, series=None) -> MedImage:
    """A NumPy archive as MedSAM / LiteMedSAM / MedSAM2 store images (``.npz``).

    ``imgs`` (or ``img``/``image``/``data``, or the archive's only array) is a volume ``[z, y, x]`` or a picture
    ``[rows, cols]`` / ``[rows, cols, 3]``. ``spacing`` is in ITK order (x, y, z), and ``direction`` (3x3, axis
    vectors as columns) and ``origin`` in LPS, as SimpleITK gives them; a volume with ``spacing`` but no
    ``direction`` is taken as axial LPS (identity direction; the orientation check still looks at it), one without
    ``spacing`` has no geometry. Label arrays (``gts``) and prompts stored beside the image are ignored.
    """
    with np.load(p, allow_pickle=False) as z:
        keys = list(z.files)
        key = next((k for k in NPZ_IMAGE_KEYS if k in keys), None)
        if key is None:
            arrays = [k for k in keys if z[k].ndim >= 2]
            if len(arrays) != 1:
                raise MedGroundInputError(
                    f"{p.name} holds no image array: expected one of {', '.join(NPZ_IMAGE_KEYS[:4])} "
                    f"(found: {', '.join(keys) or 'nothing'}).")
            key = arrays[0]
        arr = np.asarray(z[key])
        geo = {k: np.asarray(z[k], dtype=float).reshape(-1) for k in ("spacing", "origin", "direction")
               if k in keys and z[k].dtype.kind in "biuf"}
    if arr.dtype.kind not in "biuf":
        raise MedGroundInputError(f"{p.name}: the image array {key!r} is not numeric ({arr.dtype}).")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    meta: dict = {"npz_key": key}
    color = arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4
    if color and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr, color = arr[..., 0], False  # grey stored as RGB (MedSAM's 2D archives are)
        meta["color_collapsed"] = True
    if arr.ndim == 2 or color:
        if color:  # (X, Y, 1, 3) / (X, Y, 1), as load_picture stores pictures
            data = arr[..., :3].transpose(1, 0, 2)[:, :, None, :]
        else:
            data = arr.T[:, :, None]
        sp = geo.get("spacing")
        affine = np.eye(4)
        if sp is not None and sp.size >= 2 and np.all(sp[:2] > 0):
            affine[0, 0], affine[1, 1] = float(sp[0]), float(sp[1])
        return MedImage(data=np.ascontiguousarray(data), affine=affine, ndim=2, modality="OT",
                        has_geometry=sp is not None, photometric="RGB" if color else "MONOCHROME2",
                        source_path=str(p), source_format="npz", meta=meta)
    if arr.ndim != 3:
        raise MedGroundInputError(f"{p.name}: the image array {key!r} has shape {tuple(arr.shape)}; "
                                  "expected a volume [z, y, x] or a picture [rows, cols(, 3)].")
    data = np.ascontiguousarray(arr.transpose(2, 1, 0))  # [z, y, x] -> [x, y, z]
    sp = geo.get("spacing")
    if sp is None or sp.size != 3 or not np.all(sp > 0):
        meta["warnings"] = ["no spacing in the archive: voxel grid only, no world coordinates"]
        return MedImage(data=data, affine=np.eye(4), ndim=3, modality="OT", has_geometry=False,
                        source_path=str(p), source_format="npz", meta=meta)
    direction = geo.get("direction")
    if direction is None or direction.size != 9:
        direction = np.eye(3).reshape(-1)
        meta["warnings"] = ["no direction in the archive: axial slices in LPS order assumed"]
    origin = geo.get("origin")
    origin = origin if origin is not None and origin.size == 3 else np.zeros(3)
    from medground.io.dicom import lps_affine

    return MedImage(data=data, affine=lps_affine(direction, sp, origin), ndim=3, modality="OT", source_path=str(p),
                    source_format="npz", meta=meta)


_READERS = {
    "nifti": load_nifti,
    "nrrd": load_nrrd,
    "picture": load_picture,
    "picture-folder": load_picture_folder,
    "dicom": _load_dicom,
    "dicom-series": _load_dicom_series,
    "zip": _load_dicom_series,
    "npz": load_npz,
}
