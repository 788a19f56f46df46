"""Reference ranges data file and flag()."""
import math

import pytest

from medground import MedGroundInputError
from medground.measure import flag, reference_range, reference_ranges


def test_every_range_has_source_unit_and_bounds():
    ranges = reference_ranges()
    assert {"cardiothoracic_ratio", "abdominal_aorta_diameter_mm", "ascending_aorta_diameter_mm",
            "kidney_length_mm", "spleen_volume_ml"} <= set(ranges)
    for name, entry in ranges.items():
        assert entry["source"].strip(), name
        assert entry["unit"], name
        normal = entry["normal"]
        assert normal.get("min") is not None or normal.get("max") is not None, name


@pytest.mark.parametrize("name,value,status", [
    ("cardiothoracic_ratio", 0.45, "normal"),
    ("cardiothoracic_ratio", 0.50, "normal"),
    ("ctr", 0.56, "high"),
    ("abdominal_aorta_diameter_mm", 29.9, "normal"),
    ("abdominal_aorta_diameter_mm", 30.0, "high"),   # >= 30 mm is an aneurysm
    ("ascending_aorta_diameter_mm", 40.0, "normal"),
    ("ascending_aorta_diameter_mm", 45.0, "high"),
    ("kidney_length_mm", 95.0, "low"),
    ("kidney_length_mm", 110.0, "normal"),
    ("kidney_length_mm", 130.0, "high"),
    ("spleen_volume_ml", 400.0, "high"),
])
def test_flag_status(name, value, status):
    f = flag(name, value)
    assert f["status"] == status
    assert f["source"] and f["range"]["max"] is not None
    assert (f["finding"] is not None) == (status != "normal")


def test_flag_unknown_value_and_name():
    assert flag("ctr", None)["status"] == "unknown"
    assert flag("ctr", math.nan)["status"] == "unknown"
    with pytest.raises(MedGroundInputError):
        flag("brain_weight_g", 1300)
    assert reference_range("CTR")["name"] == "cardiothoracic_ratio"
