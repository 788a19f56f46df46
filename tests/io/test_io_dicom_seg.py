"""DICOM SEG writing: references, frame order and pixel data checked with highdicom and pydicom."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

import medground.io as mio
from _iohelpers import pydicom_file, write_ct_series


def _frames_by_reference(seg_ds):
    """[(segment number, referenced SOP UID, referenced frame or None, frame pixels, IPP)]."""
    px = seg_ds.pixel_array
    if px.ndim == 2:
        px = px[None]
    out = []
    shared = seg_ds.SharedFunctionalGroupsSequence[0]
    for i, fr in enumerate(seg_ds.PerFrameFunctionalGroupsSequence):
        src = fr.DerivationImageSequence[0].SourceImageSequence[0]
        ident = fr.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        seg_no = int(ident[0].ReferencedSegmentNumber)
        ref_frame = src.get("ReferencedFrameNumber")
        pos = np.asarray(fr.PlanePositionSequence[0].ImagePositionPatient, float) if "PlanePositionSequence" in fr else None
        out.append((seg_no, src.ReferencedSOPInstanceUID, ref_frame, px[i], pos))
    return out


def _check_seg(path, masks: dict, ref: mio.MedImage):
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    raw = pydicom.dcmread(str(path))
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert raw.SegmentationType == "BINARY"
    labels = [s.SegmentLabel for s in raw.SegmentSequence]
    assert labels == list(masks)
    algo = raw.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "medground"
    assert raw.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"

    uids = [ds.SOPInstanceUID for ds in ref.dicom_datasets]
    frames = _frames_by_reference(raw)
    for seg_no, name in enumerate(masks, start=1):
        m = np.asarray(masks[name]) > 0
        got = [f for f in frames if f[0] == seg_no]
        referenced = [uids.index(f[1]) for f in got]
        expected_z = [z for z in range(m.shape[2]) if m[:, :, z].any()]
        assert sorted(referenced) == expected_z  # exactly the non-empty slices
        for (_, _, _, pixels, pos), z in zip(got, referenced):
            assert np.array_equal(pixels > 0, m[:, :, z].T)  # DICOM frame = [row=y, col=x]
            if pos is not None:  # the frame sits where its source slice is (LPS)
                np.testing.assert_allclose(pos * [-1, -1, 1], ref.voxel_to_world([0, 0, z]), atol=1e-3)
    # highdicom rebuilds the stack in our z order from the source UIDs
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=False, skip_overlap_checks=True,
    )
    for seg_no, name in enumerate(masks, start=1):
        assert np.array_equal(arr[..., seg_no - 1].transpose(2, 1, 0) > 0, np.asarray(masks[name]) > 0)
    return raw


def test_seg_on_synthetic_series(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1000, (30, 22, 8)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu)
    ref = mio.load(tmp_path / "s")
    a = np.zeros(ref.shape, bool)
    a[3:12, 5:9, 2:5] = True  # asymmetric in x/y to catch transposes
    b = np.zeros(ref.shape, np.uint8)
    b[20:25, 1:4, 6] = 1
    empty = np.zeros(ref.shape, bool)
    masks = {"liver": a, "lesion": b, "nothing": empty}
    out = mio.write_dicom_seg(masks, ref, tmp_path / "seg.dcm")
    raw = _check_seg(out, masks, ref)
    # the empty mask is kept as a segment without frames
    seg_numbers = {f[0] for f in _frames_by_reference(raw)}
    assert seg_numbers == {1, 2}
    assert len(raw.SegmentSequence) == 3
    assert raw.StudyInstanceUID == ref.dicom_datasets[0].StudyInstanceUID
    assert raw.FrameOfReferenceUID == ref.dicom_datasets[0].FrameOfReferenceUID


def test_seg_all_empty_still_valid(tmp_path):
    hu = np.random.default_rng(1).integers(-1000, 1000, (10, 10, 3)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu)
    ref = mio.load(tmp_path / "s")
    out = mio.write_dicom_seg({"none": np.zeros(ref.shape, bool)}, ref, tmp_path / "seg.dcm")
    raw = pydicom.dcmread(out)
    assert int(raw.NumberOfFrames) == 3 and not raw.pixel_array.any()


def test_seg_custom_codes(tmp_path):
    from pydicom.sr.codedict import codes

    hu = np.random.default_rng(2).integers(-1000, 1000, (10, 10, 3)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu)
    ref = mio.load(tmp_path / "s")
    m = np.zeros(ref.shape, bool)
    m[2:5, 2:5, 1] = True
    desc = {"liver": {"category": codes.SCT.AnatomicalStructure, "type": ("10200004", "SCT", "Liver")}}
    raw = pydicom.dcmread(mio.write_dicom_seg({"liver": m}, ref, tmp_path / "s.dcm", descriptions=desc))
    item = raw.SegmentSequence[0]
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert item.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"


def test_seg_on_real_series(tmp_path, shared_data):
    ref = mio.load(shared_data / "ct-3slice")
    m = np.zeros(ref.shape, bool)
    m[100:220, 150:300, 0] = True
    m[300:310, 40:90, 2] = True
    _check_seg(mio.write_dicom_seg({"blob": m}, ref, tmp_path / "seg.dcm"), {"blob": m}, ref)


def test_seg_on_compressed_real_series(tmp_path, shared_data):
    ref = mio.load(shared_data / "totalsegmentator" / "example_ct_dicom")
    body = ref.data > -300
    body[:, :, :5] = False
    _check_seg(mio.write_dicom_seg({"body": body}, ref, tmp_path / "seg.dcm"), {"body": body}, ref)


def test_seg_on_enhanced_multiframe(tmp_path):
    ref = mio.load(pydicom_file("eCT_Supplemental.dcm"))
    m = np.zeros(ref.shape, bool)
    m[100:200, 50:60, 0] = True
    out = mio.write_dicom_seg({"x": m}, ref, tmp_path / "seg.dcm")
    raw = pydicom.dcmread(out)
    (seg_no, uid, frame_no, pixels, _pos), = _frames_by_reference(raw)
    assert uid == ref.dicom_datasets[0].SOPInstanceUID
    assert int(frame_no) == ref.dicom_frame_order[0] + 1
    assert np.array_equal(pixels > 0, m[:, :, 0].T)


def test_reference_seg_from_dcmqi_matches_our_grid(shared_data):
    """liver.dcm (from dcmqi, shipped by pydicom-data) segments the ct-3slice series."""
    import highdicom as hd

    seg = hd.seg.segread(pydicom_file("liver.dcm"))
    ref = mio.load(shared_data / "ct-3slice")
    uids = [ds.SOPInstanceUID for ds in ref.dicom_datasets]
    raw = pydicom.dcmread(pydicom_file("liver.dcm"))
    for fr in raw.PerFrameFunctionalGroupsSequence:
        src_uid = fr.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = uids.index(src_uid)
        pos = np.asarray(fr.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(pos * [-1, -1, 1], ref.voxel_to_world([0, 0, z]), atol=1e-3)
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, ignore_spatial_locations=True,
    )
    liver = arr.transpose(2, 1, 0) > 0
    assert liver.shape == ref.shape and liver.sum() > 1000
    hu = float(ref.data[liver].mean())
    assert 20 < hu < 200, hu  # liver parenchyma, so the mask lands on our grid un-flipped


def test_seg_needs_dicom_reference(tmp_path):
    img = mio.MedImage.from_array(np.arange(60, dtype=np.float32).reshape(5, 4, 3))
    with pytest.raises(mio.MedGroundInputError, match="DICOM"):
        mio.write_dicom_seg({"a": np.ones(img.shape, bool)}, img, tmp_path / "s.dcm")


def test_seg_wrong_shape(tmp_path):
    hu = np.random.default_rng(3).integers(-1000, 1000, (10, 12, 3)).astype(np.int16)
    write_ct_series(tmp_path / "s", hu)
    ref = mio.load(tmp_path / "s")
    with pytest.raises(mio.MedGroundInputError, match="shape"):
        mio.write_dicom_seg({"a": np.ones((12, 10, 3), bool)}, ref, tmp_path / "s.dcm")


@pytest.mark.parametrize("name", ["CT_small.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm"])
def test_seg_on_single_2d_file(tmp_path, name):
    import highdicom as hd

    ref = mio.load(pydicom_file(name))
    m = np.zeros(ref.shape, bool)
    m[10:40, 5:20, 0] = True  # wider than tall: catches a transpose
    out = mio.write_dicom_seg({"x": m}, ref, tmp_path / "seg.dcm")
    assert hd.seg.segread(str(out)).number_of_frames == 1
    raw = pydicom.dcmread(out)
    assert np.array_equal(raw.pixel_array > 0, m[:, :, 0].T)
    (_, uid, _, _, _), = _frames_by_reference(raw)
    assert uid == ref.dicom_datasets[0].SOPInstanceUID
