"""The findings head's held-out cases: validation cases by default, the pictures' own test split on request."""
import numpy as np

from medground.data.layout import DatasetWriter, read_splits
from medground.train.findings import heldout_cases


def _pictures(root, name, n=12):
    w = DatasetWriter(root, name)
    label = max(w.info.labels)
    for i in range(n):
        lab = np.zeros((8, 8), np.uint8)
        lab[2:5, 2:5] = label
        w.add_picture(f"c{i:02d}", f"p{i:02d}", np.full((8, 8), 100, np.uint8), lab)
    w.finish()


def test_heldout_cases_val_by_default_and_the_pictures_test_split_on_request(tmp_path):
    _pictures(tmp_path, "endoscopy-kvasir")
    splits = read_splits(tmp_path / "endoscopy-kvasir")
    assert splits["val"] and splits["test"]
    cfg = {"data_root": str(tmp_path), "datasets": [
        {"name": "endoscopy-kvasir", "train": ["train"], "val": ["val"], "max_val": 1}]}
    val = [c["id"] for _, _, c in heldout_cases(cfg)]
    assert val == list(splits["val"])[:1]
    test = [c["id"] for _, _, c in heldout_cases(cfg, "test")]
    assert test == list(splits["test"])  # the whole test split, not capped by max_val
    assert not set(test) & set(splits["train"]) and not set(test) & set(splits["val"])
    # a dataset validated on named cases keeps them
    cfg["datasets"][0]["val"] = [splits["train"][0]]
    assert [c["id"] for _, _, c in heldout_cases(cfg, "test")] == [splits["train"][0]]
