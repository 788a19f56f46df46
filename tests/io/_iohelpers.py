"""Helpers for the I/O tests: synthetic DICOM series, SimpleITK -> RAS, world centroids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PATIENT_NAME = "Doe^Janeqxz"
PATIENT_ID = "PID-7731-XYZ"


def pydicom_file(name: str) -> str:
    """A file from pydicom's test data or pydicom-data (never downloads); skip if missing."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed")
    return str(path)


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask > 0).astype(float)
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    return pts.mean(axis=0)


def ball_mask(shape, affine, center_world, radius_mm) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    pts = grid @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(pts - center_world, axis=1) <= radius_mm
    return inside.reshape(shape)


def sitk_to_ras(img) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK image -> (data [x, y, z], RAS affine)."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(img)
    data = data.transpose(2, 1, 0) if data.ndim == 3 else data.T
    aff = np.eye(4)
    d = np.array(img.GetDirection()).reshape(img.GetDimension(), img.GetDimension())
    aff[: d.shape[0], : d.shape[1]] = d @ np.diag(img.GetSpacing())
    aff[: d.shape[0], 3] = img.GetOrigin()
    return data, LPS_TO_RAS @ aff


def sitk_read_series(folder) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk_to_ras(reader.Execute())


def write_ct_series(
    folder,
    hu_xyz: np.ndarray,
    *,
    row_dir=(1.0, 0.0, 0.0),
    col_dir=(0.0, 1.0, 0.0),
    pixel_spacing=(0.8, 0.7),  # (row spacing = along col_dir, column spacing = along row_dir)
    origin=(-100.0, -80.0, 50.0),
    slice_step=None,  # LPS vector between consecutive slices; default normal * 2.5
    positions=None,  # explicit (Z, 3) LPS positions (overrides origin/slice_step)
    series_uid=None,
    series_number=3,
    study_uid=None,
    frame_uid=None,
    patient_name=PATIENT_NAME,
    institution=None,
    body_part="ABDOMEN",
    shuffle_seed=0,
    intercept=-1024.0,
    slope=1.0,
) -> tuple[list[Path], list[str]]:
    """Write a CT series (one file per z, [x, y, z] data in HU) with shuffled file names and
    InstanceNumbers, so that only positions give the right order. Returns (paths by z, SOP UIDs by z)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X, Y, Z = hu_xyz.shape
    r = np.asarray(row_dir, float)
    c = np.asarray(col_dir, float)
    n = np.cross(r, c)
    if positions is None:
        step = n * 2.5 if slice_step is None else np.asarray(slice_step, float)
        positions = [np.asarray(origin, float) + k * step for k in range(Z)]
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    rng = np.random.default_rng(shuffle_seed)
    perm = rng.permutation(Z)  # file name / instance number of slice z
    raw = np.round((hu_xyz.astype(float) - intercept) / slope).astype(np.int16)
    paths, uids = [], []
    for z in range(Z):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{int(perm[z]):04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = patient_name
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyDate = "20240102"
        ds.StudyTime = "101010"
        ds.ReferringPhysicianName = "Ref^Doc"
        ds.AccessionNumber = "ACC123"
        ds.StudyID = "1"
        ds.StudyDescription = f"Study of {patient_name}"
        ds.Modality = "CT"
        ds.Manufacturer = "SynthCo"
        ds.BodyPartExamined = body_part
        if institution:
            ds.InstitutionName = institution
        ds.KVP = "120"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(perm[z]) + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in positions[z]]
        ds.ImageOrientationPatient = [float(v) for v in list(r) + list(c)]
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(np.linalg.norm(n * 2.5))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = Y
        ds.Columns = X
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.PixelData = np.ascontiguousarray(raw[:, :, z].T).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
        uids.append(sop)
    return paths, uids
