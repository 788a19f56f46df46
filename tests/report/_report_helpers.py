"""Synthetic images for the report tests: ellipsoids, a small CT DICOM series with a known patient."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PATIENT_NAME = "Testperson^Jane"
PATIENT_ID = "PID-778899"
BIRTH_DATE = "19700101"


def ellipsoid(shape, center_vox, semi_axes_mm, spacing) -> np.ndarray:
    """Boolean ellipsoid on an axis-aligned grid: semi-axes (a, b, c) in mm along x, y, z."""
    idx = np.indices(shape, dtype=float)
    r = sum(((idx[i] - center_vox[i]) * spacing[i] / semi_axes_mm[i]) ** 2 for i in range(3))
    return r <= 1.0


def write_ct_series(folder, hu_xyz: np.ndarray, pixel_spacing=(0.8, 0.8), slice_step=2.5,
                    origin=(-100.0, -80.0, 50.0), body_part="ABDOMEN") -> list[str]:
    """An axial CT series (one file per z, [x, y, z] data in HU); returns the SOP Instance UIDs by z."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X, Y, Z = hu_xyz.shape
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    raw = np.round(hu_xyz.astype(float) + 1024.0).astype(np.int16)
    uids = []
    for z in range(Z):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{z:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = BIRTH_DATE
        ds.PatientSex = "F"
        ds.StudyDate = "20240102"
        ds.StudyTime = "101010"
        ds.ReferringPhysicianName = "Ref^Doc"
        ds.AccessionNumber = "ACC123"
        ds.StudyID = "1"
        ds.StudyDescription = f"Study of {PATIENT_NAME}"
        ds.InstitutionName = "Secret Hospital"
        ds.Modality = "CT"
        ds.Manufacturer = "SynthCo"
        ds.BodyPartExamined = body_part
        ds.SeriesNumber = 3
        ds.InstanceNumber = z + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + z * slice_step)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(pixel_spacing[1]), float(pixel_spacing[0])]
        ds.SliceThickness = float(slice_step)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = Y, X
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = np.ascontiguousarray(raw[:, :, z].T).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        uids.append(sop)
    return uids


def synthetic_abdomen(shape=(64, 56, 12), spacing=(0.8, 0.8, 2.5), seed=0):
    """HU volume with a body, a 'liver' on the patient's right and a 'spleen' on the left (LPS x: +left)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0)
    body = ellipsoid(shape, (shape[0] / 2 - 0.5, shape[1] / 2 - 0.5, shape[2] / 2), (24, 20, 1e3), spacing)
    hu[body] = 20.0
    # DICOM/LPS: column index x grows toward patient LEFT, so the liver (patient right) has small x
    liver = ellipsoid(shape, (18, 26, 6), (9, 10, 8), spacing) & body
    spleen = ellipsoid(shape, (46, 30, 6), (5, 6, 6), spacing) & body
    hu[liver] = 60.0
    hu[spleen] = 45.0
    hu += rng.normal(0, 5, shape)
    return hu.astype(np.float32), {"liver": liver, "spleen": spleen}
