"""`medground info` through medground.cli.main.main()."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medground.cli import main as cli


@pytest.fixture
def nifti(tmp_path):
    aff = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(50, 10, (12, 10, 6)).astype(np.float32)
    p = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), str(p))
    return p


def test_info_json(nifti, capsys):
    assert cli.main(["info", str(nifti), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "nifti" and out["ndim"] == 3
    assert out["shape"] == [12, 10, 6]
    np.testing.assert_allclose(out["spacing_mm"], [0.8, 0.9, 2.5], atol=1e-6)
    np.testing.assert_allclose(out["origin_mm_ras"], [10.0, -20.0, 5.0], atol=1e-4)
    assert out["orientation"] == "LAS"
    assert len(out["direction_ras"]) == 3
    assert 40 < out["intensity"]["mean"] < 60


def test_info_table(nifti, capsys):
    assert cli.main(["info", str(nifti)]) == 0
    out = capsys.readouterr().out
    for word in ("shape", "spacing_mm", "origin_mm_ras", "orientation", "LAS", "nifti", "intensity.mean"):
        assert word in out


def test_info_bad_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "x.dcm"
    bad.write_text("this is not DICOM")
    assert cli.main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medground: error:") and len(err.strip().splitlines()) == 1
    assert cli.main(["info", str(tmp_path / "missing.nii.gz")]) == 2


def test_info_dicom_series_select(tmp_path, capsys):
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    assert cli.main(["info", ct, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["modality"] == "CT" and out["ndim"] == 2 and out["shape"] == [128, 128]
    assert "CompressedSamples" not in json.dumps(out)  # patient name of this file never printed
    assert cli.main(["info", ct, "--series", "0", "--json"]) == 0  # a single file ignores --series


def test_info_real_series(shared_data, capsys):
    folder = shared_data / "ct-3slice"
    assert cli.main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "dicom-series" and out["shape"] == [512, 512, 3]
    assert out["meta"]["series_count"] == 1
    assert "JANCT" not in json.dumps(out)
    assert cli.main(["info", str(folder), "--series", "5"]) == 2
