"""Aggregator / evaluate_pairs: grouping, presence accuracy, report.json and report.md."""
import json
import math

import numpy as np
import pytest

from medground.evaluate import Aggregator, evaluate_pairs


def _sq(x0, n=10, shape=(32, 32)):
    m = np.zeros(shape, bool)
    if n:
        m[x0:x0 + n, 5:5 + n] = True
    return m


def _pairs():
    empty = _sq(0, 0)
    yield ("c1", "CT", "liver", _sq(5), _sq(5), (1.0, 1.0))          # perfect: dice 1
    yield ("c2", "CT", "liver", _sq(7), _sq(5), (1.0, 1.0))          # dice 0.8
    yield ("c1", "CT", "lesion", empty, empty, (1.0, 1.0))           # TN
    yield ("c2", "CT", "lesion", _sq(5, 3), empty, (1.0, 1.0))       # FP
    yield ("m1", "MR", "liver", empty, _sq(5), (1.0, 1.0))           # FN


def test_aggregate_groups_and_presence():
    agg = evaluate_pairs(_pairs())
    assert len(agg) == 5
    s = agg.summary()
    liver = s["per_class"]["liver"]
    assert liver["n"] == 3 and liver["n_ref_present"] == 3
    assert liver["dice"]["mean"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert liver["dice"]["median"] == pytest.approx(0.8)
    assert liver["dice"]["std"] == pytest.approx(np.std([1.0, 0.8, 0.0]))
    assert liver["hd95"]["n"] == 2 and liver["hd95"]["n_undefined"] == 1
    assert liver["presence"]["sensitivity"] == pytest.approx(2 / 3)
    assert liver["presence"]["specificity"] is None
    lesion = s["per_class"]["lesion"]
    assert lesion["presence"]["TN"] == 1 and lesion["presence"]["FP"] == 1
    assert lesion["presence"]["specificity"] == pytest.approx(0.5)  # absent reported absent
    assert lesion["dice"]["mean"] == pytest.approx(0.5)             # TN scores 1, FP scores 0
    assert s["per_modality"]["CT"]["n"] == 4 and s["per_modality"]["MR"]["n"] == 1
    assert s["per_modality_class"]["CT/liver"]["dice"]["mean"] == pytest.approx(0.9)
    ov = s["overall"]["presence"]
    assert (ov["TP"], ov["FP"], ov["TN"], ov["FN"]) == (2, 1, 1, 1)
    assert ov["accuracy"] == pytest.approx(3 / 5)


def test_stats_over_reference_present_only():
    agg = evaluate_pairs(_pairs(), stats_over="ref_present")
    lesion = agg.summary()["per_class"]["lesion"]
    assert lesion["dice"]["n"] == 0 and lesion["dice"]["mean"] is None
    assert lesion["presence"]["TN"] == 1  # presence always counts every row


def test_write_report_json_and_markdown(tmp_path):
    agg = Aggregator(nsd_tolerance_mm=1.0)
    for p in _pairs():
        agg.add_pair(*p)
    paths = agg.write(tmp_path / "out")
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN written as null
    assert data["config"]["nsd_tolerance_mm"] == 1.0
    assert len(data["cases"]) == 5
    fn = [c for c in data["cases"] if c["presence"] == "FN"][0]
    assert fn["hd95"] is None and fn["dice"] == 0.0
    assert set(data["summary"]) == {"overall", "per_class", "per_modality", "per_modality_class"}
    md = paths["markdown"].read_text()
    assert md.startswith("# Segmentation evaluation")
    for title in ("## Overall", "## Per class", "## Per modality", "## Cases"):
        assert title in md
    table_lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert all(ln.endswith("|") for ln in table_lines)
    header = [ln for ln in table_lines if ln.startswith("| group")][0]
    n_cols = header.count("|")
    per_class = md.split("## Per class")[1].split("## Per modality")[0]
    rows = [ln for ln in per_class.splitlines() if ln.startswith("| liver") or ln.startswith("| lesion")]
    assert len(rows) == 2 and all(r.count("|") == n_cols for r in rows)
    assert "| c2 | CT | lesion |" in md and "FP" in md


def test_add_accepts_precomputed_metrics():
    from medground.evaluate import compute_metrics

    agg = Aggregator()
    row = agg.add("x", None, "spleen", compute_metrics(_sq(5), _sq(6), (0.5, 0.5)))
    assert row["modality"] == "unknown" and not math.isnan(row["hd95"])
