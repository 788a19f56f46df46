"""DICOM SR (TID 1500) of a report: reads back, references resolve, no patient identifiers."""
import highdicom as hd
import numpy as np
import pydicom
import pytest

import medground
from medground.report import report_from_masks
from _report_helpers import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, synthetic_abdomen, write_ct_series


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr")
    hu, masks = synthetic_abdomen()
    uids = write_ct_series(root / "series", hu)
    img = medground.load(root / "series")
    assert img.shape == hu.shape
    return root, img, masks, uids


def _items(ds, out=None):
    out = [] if out is None else out
    for it in getattr(ds, "ContentSequence", []):
        out.append(it)
        _items(it, out)
    return out


def test_sr_reads_back_and_references_resolve(dicom_case, tmp_path):
    root, img, masks, uids = dicom_case
    rep = report_from_masks(img, {"liver": masks["liver"], "spleen": masks["spleen"],
                                  "pancreas": np.zeros(img.shape, bool)}, tmp_path)
    assert rep["context"]["modality"] == "CT" and "DICOM BodyPartExamined ABDOMEN" in rep["context"]["evidence"]
    assert rep["dicom_sr"]["written"], rep["dicom_sr"]
    sr_ds = pydicom.dcmread(tmp_path / "report.dcm")
    seg_ds = pydicom.dcmread(tmp_path / "segmentation.dcm")
    assert sr_ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr_ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    sr = hd.sr.srread(tmp_path / "report.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2  # liver and spleen; the empty pancreas has no group
    seg_uids = set()
    for g in groups:
        ref = g.roi if hasattr(g, "roi") and g.roi is not None else None
        seg_item = g.referenced_segment
        assert seg_item is not None
        seg_uids.add(seg_item.referenced_sop_instance_uid)
        names = {m.name.meaning for m in g.get_measurements()}
        assert "Volume" in names and "Attenuation Coefficient" in names
        assert ref is None or ref
    assert seg_uids == {seg_ds.SOPInstanceUID}
    # the volumes in the SR are those of report.json, in mL
    vols = sorted(m.value for g in groups for m in g.get_measurements() if m.name.meaning == "Volume")
    assert vols == pytest.approx(sorted(m["value"] for m in rep["measurements"] if m["name"] == "volume"
                                        and m["value"]), rel=1e-6)
    # every referenced source SOP instance (SR items + SEG) is one of the input slices
    refs = {it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in _items(sr_ds)
            if "ReferencedSOPSequence" in it}
    src_refs = refs - {seg_ds.SOPInstanceUID}
    assert src_refs and src_refs <= set(uids)
    seg_src = {r.ReferencedSOPInstanceUID for s in seg_ds.ReferencedSeriesSequence
               for r in s.ReferencedInstanceSequence}
    assert seg_src and seg_src <= set(uids)
    ev = {r.ReferencedSOPInstanceUID for st in sr_ds.CurrentRequestedProcedureEvidenceSequence
          for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    assert seg_ds.SOPInstanceUID in ev and set(uids) <= ev
    assert sr_ds.StudyInstanceUID == seg_ds.StudyInstanceUID
    # the SEG's segment numbers are the report's mask label values
    for s in rep["structures"]:
        if s["status"] == "present":
            assert seg_ds.SegmentSequence[s["mask"]["segment_number"] - 1].SegmentLabel == s["name"]


def test_no_patient_identifiers_unless_asked(dicom_case, tmp_path):
    root, img, masks, uids = dicom_case
    secrets = [PATIENT_NAME.encode(), PATIENT_ID.encode(), BIRTH_DATE.encode(), b"Testperson", b"Secret Hospital",
               b"ACC123"]
    report_from_masks(img, {"liver": masks["liver"]}, tmp_path / "anon")
    files = [p for p in (tmp_path / "anon").iterdir() if p.is_file()]
    assert {"report.dcm", "segmentation.dcm", "report.json", "report.html", "report.md"} <= {p.name for p in files}
    for p in files:
        data = p.read_bytes()
        for s in secrets:
            assert s not in data, (p.name, s)
    rep = report_from_masks(img, {"liver": masks["liver"]}, tmp_path / "ident", include_identifiers=True)
    assert rep["patient"]["PatientID"] == PATIENT_ID
    assert pydicom.dcmread(tmp_path / "ident" / "report.dcm").PatientID == PATIENT_ID


def test_sr_of_a_single_dicom_image_uses_planar_groups(tmp_path):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    img = medground.load(path)
    assert img.ndim == 2
    m = np.zeros(img.shape, bool)
    m[20:40, 25:45] = True
    rep = report_from_masks(img, {"liver": m}, tmp_path)
    assert rep["dicom_sr"]["written"], rep["dicom_sr"]
    sr = hd.sr.srread(tmp_path / "report.dcm")
    seg_ds = pydicom.dcmread(tmp_path / "segmentation.dcm")
    (g,) = sr.content.get_planar_roi_measurement_groups()
    ref = g.referenced_segmentation_frame
    assert ref.referenced_sop_instance_uid == seg_ds.SOPInstanceUID
    src = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    assert ref.source_image_for_segmentation.referenced_sop_instance_uid == src
    area = next(x for x in g.get_measurements() if x.name.meaning == "Area")
    assert area.value == pytest.approx(m.sum() * img.pixel_area_mm2, rel=1e-3)
