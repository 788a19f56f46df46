"""DICOM SR of a report: Comprehensive 3D SR with a TID 1500 Measurement Report (highdicom).

One measurement group per present structure (TID 1411 Volumetric ROI Measurements; TID 1410 Planar
ROI Measurements for a 2D image), referencing
its segment in the DICOM SEG written beside it (which references the source SOP instances), with
the structure's measurements in physical units. The source images are listed in the image library
and, with the SEG, in the evidence. Needs DICOM input: for other inputs there are no SOP instances
to reference, and no SR is written (the report says why).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

LOCAL_SCHEME = "99MEDGROUND"  # local coding scheme (DICOM PS3.16: designators starting with 99)
# Identifying attributes emptied (type 2) or removed (others) unless identifiers are requested.
DEID_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
              "ReferringPhysicianName", "AccessionNumber", "StudyID")
DEID_REMOVE = ("OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
               "PatientAge", "PatientWeight", "PatientSize", "PatientTelephoneNumbers", "PatientComments",
               "EthnicGroup", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
               "PerformingPhysicianName", "OperatorsName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord",
               "RequestingPhysician", "StudyDescription", "SeriesDescription", "SeriesDate", "SeriesTime",
               "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "ContentDate", "ContentTime",
               "InstanceCreationDate", "InstanceCreationTime", "PerformedProcedureStepStartDate",
               "PerformedProcedureStepStartTime", "PerformedProcedureStepDescription", "RequestAttributesSequence",
               "DeviceSerialNumber", "StationName", "ImageComments", "AdditionalPatientHistory",
               "IssuerOfPatientID", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
               "PatientMotherBirthName", "CountryOfResidence", "RegionOfResidence", "PatientBirthTime")

log = logging.getLogger(__name__)


def prepare_sources(datasets: list, include_identifiers: bool = False) -> list:
    """Copies of the source headers for the SEG and the SR: without patient identifiers (unless asked;
    UIDs are kept: references need them), and with one new Study/Series UID for all of them when the
    source has none (so that the SEG and the SR agree)."""
    import highdicom as hd

    out = []
    made_up: dict[str, str] = {}
    for ds in datasets:
        d = copy.deepcopy(ds)
        if not include_identifiers:
            for kw in DEID_EMPTY:
                if kw in d:
                    setattr(d, kw, "")
            for kw in DEID_REMOVE:
                if kw in d:
                    delattr(d, kw)
        for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not str(d.get(kw, "") or ""):
                made_up.setdefault(kw, hd.UID())
                setattr(d, kw, made_up[kw])
        out.append(d)
    if made_up:
        log.warning("the source DICOM has no %s; one new UID is used for the SEG and the SR",
                    " or ".join(sorted(made_up)))
    return out


def _code(value: str, scheme: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, scheme, meaning)


def _finding_type(structure: dict[str, Any]):
    from medground.ontology import Ontology
    from pydicom.sr.codedict import codes

    try:
        term = Ontology.default().get(structure["term_id"])
        sct = term.codes.get("SNOMED")
        if sct:
            return _code(str(sct), "SCT", term.name)
    except Exception:  # noqa: BLE001 - an unknown id just falls back to a generic code
        pass
    return codes.SCT.Lesion if structure.get("kind") == "finding" else codes.SCT.Tissue


def _measurement(m: dict[str, Any], modality: str):
    """highdicom Measurements (the value; for mean intensities also the SD) of a report measurement, or
    None when it has no physical unit."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    v = m.get("value")
    if v is None:
        return None
    unit = m["unit"]
    units = {"mL": _code("ml", "UCUM", "milliliter"), "mm": codes.UCUM.Millimeter,
             "mm2": codes.UCUM.SquareMillimeter, "HU": codes.UCUM.HounsfieldUnit, "ratio": codes.UCUM.Ratio,
             "g": _code("g", "UCUM", "gram")}
    if unit not in units:
        return None
    name = m["name"]
    derivation = None
    if name in ("volume", "lesion_volume"):
        concept = codes.SCT.Volume
    elif name == "area":
        concept = codes.SCT.Area
    elif name == "mean_intensity":
        if unit != "HU":
            return None
        concept, derivation = codes.DCM.AttenuationCoefficient, codes.SCT.Mean
    elif name == "length":
        concept = codes.SCT.Length
    elif name == "aorta_diameter":
        concept, derivation = codes.SCT.Diameter, _code("56851009", "SCT", "Maximum")
    elif name == "recist_long_axis":
        concept = codes.SCT.LongAxis
    elif name == "recist_short_axis":
        concept = codes.SCT.ShortAxis
    elif name == "cardiothoracic_ratio":
        concept = _code("CTR", LOCAL_SCHEME, "Cardiothoracic ratio")
    elif name == "lv_myocardial_mass":
        concept = codes.SCT.Mass
    else:
        return None
    out = [hd.sr.Measurement(name=concept, value=float(v), unit=units[unit], derivation=derivation)]
    if name == "mean_intensity" and m.get("sd") is not None:
        out.append(hd.sr.Measurement(name=concept, value=float(m["sd"]), unit=units[unit],
                                     derivation=codes.SCT.StandardDeviation))
    return out


def write_sr(report: dict[str, Any], image, seg_path: Path | None, out_path: Path) -> dict[str, Any]:
    """Write ``out_path`` (report.dcm); returns ``{"written", "file", "reason", ...}``."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import medground

    if not image.dicom_datasets or not image.source_format.startswith("dicom"):
        return {"written": False, "file": None,
                "reason": "the input is not DICOM: a DICOM SR must reference DICOM source instances, and there "
                          "are none (report.json, report.md and report.html carry the same content)."}
    if seg_path is None or not Path(seg_path).exists():
        return {"written": False, "file": None, "reason": "no DICOM SEG was written (no structure was segmented)."}
    from medground.io.writers import _clean_sources, quiet_highdicom

    sources = _clean_sources(image.dicom_datasets)
    seg = pydicom.dcmread(str(seg_path))
    seg_numbers = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    frames_by_segment: dict[int, list[int]] = {}
    shared = (getattr(seg, "SharedFunctionalGroupsSequence", None) or [None])[0]
    for i, fg in enumerate(getattr(seg, "PerFrameFunctionalGroupsSequence", []), start=1):
        sid = fg.get("SegmentIdentificationSequence") or (shared.get("SegmentIdentificationSequence")
                                                          if shared is not None else None)
        if sid:
            frames_by_segment.setdefault(int(sid[0].ReferencedSegmentNumber), []).append(i)
    seg_sources = [hd.sr.SourceImageForSegmentation(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID)
                   for se in seg.ReferencedSeriesSequence for r in se.ReferencedInstanceSequence]
    meas = {m["id"]: m for m in report["measurements"]}
    algo = hd.sr.AlgorithmIdentification(name="medground", version=str(medground.__version__))
    groups = []
    for s in report["structures"]:
        mref = s.get("mask")
        if s["status"] != "present" or not mref or mref.get("segment_number") not in seg_numbers:
            continue
        seg_no = int(mref["segment_number"])
        if seg_no not in frames_by_segment:
            continue
        items = []
        for mid in s["measurement_ids"]:
            hm = _measurement(meas[mid], report["context"]["modality"])
            if hm is not None:
                items.extend(hm)
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{s['id']} {s['name']}"[:64])
        if image.ndim == 2 and len(seg_sources) == 1:  # a picture: TID 1410 planar ROI on the SEG frame
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_segment=hd.sr.ReferencedSegmentationFrame(
                    sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                    frame_number=frames_by_segment[seg_no][0], segment_number=seg_no,
                    source_image=seg_sources[0]),
                finding_type=_finding_type(s),
                algorithm_id=algo,
                measurements=items or None,
            ))
            continue
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=seg_no,
                frame_numbers=frames_by_segment[seg_no], source_images=seg_sources),
            finding_type=_finding_type(s),
            algorithm_id=algo,
            measurements=items or None,
        ))
    if not groups:
        return {"written": False, "file": None, "reason": "no structure was found, so there is nothing to measure."}
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="medground", manufacturer_name="medground", model_name="medground report"),
    )
    library_note = None
    try:
        report_content = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
            referenced_images=sources,
        )
    except (AttributeError, ValueError, TypeError) as exc:
        # e.g. a radiograph without ImagerPixelSpacing: no image library; the sources stay referenced by
        # the SEG segments and listed in the evidence
        library_note = f"no image library ({type(exc).__name__}: {str(exc)[:100]})"
        report_content = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
    with quiet_highdicom():
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(sources) + [seg],
            content=report_content,
            series_instance_uid=hd.UID(),
            series_number=901,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medground",
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description="medground report",
        )
    out_path = Path(out_path)
    sr.save_as(str(out_path))
    return {"written": True, "file": out_path.name, "reason": None, "sop_class": "Comprehensive 3D SR",
            "template": "TID 1500 Measurement Report", "measurement_groups": len(groups),
            "references": {"segmentation": seg_path.name, "source_instances": len(sources)},
            "note": library_note}
