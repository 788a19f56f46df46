"""Converters on real data (1-2 patients per set): layout, labels, canonical orientation, splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medground.data import iter_slices, list_cases, load_case, make_splits, read_dataset, read_splits
from medground.data.orient import abdominal_checks, body_mask, label_centroids
from medground.ontology import Ontology

ALL = ["btcv-ct", "chaos-mr", "acdc-cmr", "jsrt-cxr", "covid-cxr", "totalsegmentator-ct", "totalsegmentator-mr",
       "ct-lesions", "mr-tumour", "endoscopy-kvasir", "dermoscopy-ph2", "fundus-drive", "brain-cit168",
       "brain-cerebellum", "brain-julich"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, shared_data) -> Path:
    """1-2 patients of every set in ../shared/data converted into a temporary root."""
    from medground.data.convert import convert

    dst = tmp_path_factory.mktemp("medground-data")
    convert(shared_data, dst, limit=2, verbose=False)
    return dst


def ids_of(ds: dict, *names: str) -> dict[str, int]:
    inv = {v: int(k) for k, v in ds["labels"].items()}
    return {n: inv[n] for n in names if n in inv}


@pytest.mark.parametrize("name", ALL)
def test_layout_and_labels(converted, name):
    root = converted / name
    ds = read_dataset(root)
    assert ds["name"] == name and ds["canonical"] is True and ds["layout_version"] == 1
    assert ds["citation"] and ds["licence"] and ds["modality"]
    ont = Ontology.default()
    labels = {int(k): v for k, v in ds["labels"].items()}
    assert labels[0] == "background"
    assert all(v in ont for k, v in labels.items() if k)
    assert ds["cases"]
    for case in ds["cases"]:
        assert (root / case["image"]).exists() and (root / case["label"]).exists()
        img, lab, masks = load_case(root, case)
        assert img.shape[:3] == lab.shape
        assert np.issubdtype(lab.dtype, np.integer)
        present = set(np.unique(lab).tolist()) - {0}
        assert present and present <= set(labels)
        assert sorted(present) == case["labels_present"]
        for tid, m in masks.items():
            assert tid in labels.values() and m.shape == lab.shape and m.any()


@pytest.mark.parametrize("name", ALL)
def test_splits_are_disjoint_by_patient(converted, name):
    root = converted / name
    ds, sp = read_dataset(root), read_splits(root)
    patient = {c["id"]: c["patient"] for c in ds["cases"]}
    sets = {s: set(sp[s]) for s in ("train", "val", "test")}
    assert set().union(*sets.values()) == set(patient)
    assert sum(len(v) for v in sets.values()) == len(patient)
    pats = {s: {patient[c] for c in v} for s, v in sets.items()}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"]) and not (pats["val"] & pats["test"])
    assert make_splits(ds["cases"], seed=sp["seed"]) == sp  # deterministic
    assert {c["id"] for c in list_cases(root, "train")} == sets["train"]


def test_make_splits_keeps_patients_together():
    cases = [{"id": f"p{i}_f{j}", "patient": f"p{i}"} for i in range(20) for j in range(2)]
    sp = make_splits(cases, seed=3)
    for s in ("train", "val", "test"):
        assert len(sp[s]) % 2 == 0
    assert len(sp["patients"]["train"]) == 14 and len(sp["patients"]["val"]) == 3 and len(sp["patients"]["test"]) == 3
    assert make_splits(cases, seed=4) != sp


@pytest.mark.parametrize("name, ct", [("btcv-ct", True), ("chaos-mr", False), ("totalsegmentator-ct", True),
                                      ("totalsegmentator-mr", False)])
def test_abdomen_is_in_radiological_display(converted, name, ct):
    """Liver on the image left, spleen on the image right, kidneys and spine posterior (bottom)."""
    root = converted / name
    ds = read_dataset(root)
    ids = ids_of(ds, "liver", "spleen", "kidney_left", "kidney_right", "aorta")
    n = 0
    for case in ds["cases"]:
        img, lab, _ = load_case(root, case)
        if not {"liver", "spleen"} <= {ds["labels"][str(v)] for v in np.unique(lab) if v}:
            continue
        c = label_centroids(lab, ids)
        assert c["liver"][1] < lab.shape[2] / 2 < c["spleen"][1], case["id"]
        if "kidney_left" in c and "kidney_right" in c:
            assert c["kidney_right"][1] < c["kidney_left"][1], case["id"]
        checks = abdominal_checks(lab, ids)
        assert all(checks.values()), (case["id"], checks)
        if ct and "aorta" in c:
            full = abdominal_checks(lab, ids, img if img.dtype == np.uint8 else np.clip(img, -200, 500), ct=True)
            assert full["spine_posterior_to_aorta"], case["id"]
            # the aorta lies well behind the anterior abdominal wall
            z = int(np.argmax((lab == ids["aorta"]).sum(axis=(1, 2))))
            body = body_mask(img[z].astype(np.float32))
            rr, cc = np.nonzero(lab[z] == ids["aorta"])
            rows = np.nonzero(body[:, int(cc.mean())])[0]
            assert (rr.mean() - rows.min()) / (rows.max() - rows.min()) > 0.35, case["id"]
        n += 1
    assert n >= 1


def test_btcv_and_chaos_record_their_source_transform(converted):
    for name in ("btcv-ct", "chaos-mr"):
        for case in read_dataset(converted / name)["cases"]:
            assert case["meta"]["source_transform"] == "rot90"
            assert all(case["meta"]["orientation_checks"].values())


def test_every_and_start_pick_complementary_slices(converted):
    root = converted / "btcv-ct"
    case = list_cases(root)[0]["id"]
    z = lambda **kw: [m["slice"] for _, _, m in iter_slices(root, None, include_empty=True, with_meta=True, **kw)  # noqa: E731
                      if m["case"] == case]
    every, even, odd = z(), z(every=2), z(every=2, start=1)
    assert even and odd and sorted(even + odd) == every and not set(even) & set(odd)


def test_training_entries_filter_cases_refile_splits_and_drop_labels(converted):
    """A training-config entry with `cases`, `as_split` and `terms: [none]`: only those cases, filed under the
    given split, with no structure learned from them (negatives-only slices)."""
    from medground.train.pipeline import iter_samples

    root = converted / "btcv-ct"
    first = list_cases(root)[0]
    entry = {"name": "btcv-ct", "splits": [first["split"] if "split" in first else "train", "val", "test"],
             "cases": [first["id"]], "as_split": "train", "terms": ["none"], "empty_fraction": 1.0, "every": 4}
    got = list(iter_samples({"data_root": str(converted), "datasets": [entry]}, progress_log=lambda m: None))
    assert got and {s.case for s in got} == {first["id"]}
    assert {s.split for s in got} == {"train"}
    assert all(not s.masks and s.labelled == () for s in got)


def test_jsrt_right_lung_on_image_left_and_overlaps(converted):
    root = converted / "jsrt-cxr"
    ds = read_dataset(root)
    ids = ids_of(ds, "lung_right", "lung_left", "heart", "clavicle_right", "clavicle_left")
    for case in ds["cases"]:
        img, lab, masks = load_case(root, case)
        assert img.shape == (1, 512, 512)
        c = label_centroids(lab, ids)
        assert c["lung_right"][1] < 256 < c["lung_left"][1]
        assert c["clavicle_right"][1] < c["clavicle_left"][1]
        # precedence clavicle > heart > lung, the full masks keep the overlapped lung
        both = masks["lung_right"] & masks["clavicle_right"]
        assert both.any() and (lab[both] == ids["clavicle_right"]).all()
        slices = list(iter_slices(root, None, with_meta=True))
        (_, m, meta), = [s for s in slices if s[2]["case"] == case["id"]]
        assert np.array_equal(m["lung_right"], masks["lung_right"][0])


def test_acdc_rv_left_of_lv(converted):
    root = converted / "acdc-cmr"
    ds = read_dataset(root)
    for case in ds["cases"]:
        _, lab, _ = load_case(root, case)
        c = label_centroids(lab, ids_of(ds, "right_ventricle", "left_ventricle"))
        assert c["right_ventricle"][1] < c["left_ventricle"][1]
    assert {c["patient"] for c in ds["cases"]} == {c["id"].split("_")[0] for c in ds["cases"]}


def test_ct_lesions_spine_at_bottom(converted):
    root = converted / "ct-lesions"
    case = [c for c in read_dataset(root)["cases"] if "000002" in c["id"]][0]
    img, lab, _ = load_case(root, case)
    mid = img[img.shape[0] // 2]
    body = body_mask(mid)
    rows = np.nonzero(body.any(axis=1))[0]
    cols = np.nonzero(body.any(axis=0))[0]
    bone = np.argwhere((mid >= 250) & body)
    # the vertebral body: bright bone near the midline, in the posterior part of the body
    central = bone[np.abs(bone[:, 1] - cols.mean()) < 0.1 * (cols.max() - cols.min())]
    assert len(central) > 20
    assert (np.median(central[:, 0]) - rows.min()) / (rows.max() - rows.min()) > 0.55


def test_totalsegmentator_keeps_world_geometry(converted, shared_data):
    import nibabel as nib

    root = converted / "totalsegmentator-ct"
    case = [c for c in read_dataset(root)["cases"] if c["id"] == "example_ct_sm"][0]
    src = nib.load(str(shared_data / "totalsegmentator" / "example_seg.nii.gz"))
    dst = nib.load(str(root / case["label"]))
    assert "".join(nib.aff2axcodes(dst.affine)) == "LPS"
    liver = 5
    for im in (src, dst):
        v = np.argwhere(np.asarray(im.dataobj) == liver).mean(axis=0)
        im._liver_world = nib.affines.apply_affine(im.affine, v)
    assert np.allclose(src._liver_world, dst._liver_world, atol=1e-3)


def test_brain_atlas_left_is_on_the_image_right(converted):
    import nibabel as nib

    root = converted / "brain-cit168"
    ds = read_dataset(root)
    case = ds["cases"][0]
    ids = ids_of(ds, "putamen_left", "putamen_right")
    nimg = nib.load(str(root / case["label"]))
    data = np.asarray(nimg.dataobj)
    x_left = nib.affines.apply_affine(nimg.affine, np.argwhere(data == ids["putamen_left"]).mean(0))[0]
    assert x_left < 0  # RAS: patient left is negative x
    _, lab, _ = load_case(root, case)
    c = label_centroids(lab, ids)
    assert c["putamen_right"][1] < c["putamen_left"][1]
    julich = read_dataset(converted / "brain-julich")
    assert {int(k) for k in julich["labels"] if int(k) > 1000}


def test_iter_slices(converted):
    root = converted / "btcv-ct"
    n = 0
    for img, masks, meta in iter_slices(root, None, with_meta=True, every=5):
        assert img.dtype == np.float32 and img.ndim == 2 and 0.0 <= img.min() and img.max() <= 1.0
        assert masks and all(m.dtype == bool and m.shape == img.shape and m.any() for m in masks.values())
        assert meta["dataset"] == "btcv-ct"
        n += 1
    assert n > 5
    only = list(iter_slices(root, None, terms=["liver"]))
    assert only and all(set(m) == {"liver"} for _, m in only)
    colour = next(iter_slices(converted / "endoscopy-kvasir", None, color=True))
    assert colour[0].shape[-1] == 3
    gray = next(iter_slices(converted / "endoscopy-kvasir", None))
    assert gray[0].ndim == 2
    hu = next(iter_slices(converted / "totalsegmentator-ct", None))
    assert hu[0].max() <= 1.0


def test_dataset_json_is_plain_json(converted):
    for name in ALL:
        json.loads((converted / name / "dataset.json").read_text())


def test_convert_cli(tmp_path, capsys, shared_data):
    from medground.data.convert.__main__ import main

    assert main(["--src", str(shared_data), "--dst", str(tmp_path), "--datasets", "kvasir,dermoscopy-ph2", "--limit", "1"]) == 0
    assert (tmp_path / "endoscopy-kvasir" / "dataset.json").exists()
    assert main(["--src", str(shared_data), "--dst", str(tmp_path), "--datasets", "nope"]) == 2
    assert "no converter" in capsys.readouterr().err


@pytest.mark.parametrize("image, seg", [
    ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz"),
    ("totalsegmentator/example_ct_dicom", "totalsegmentator/example_seg_dicom.nii.gz"),
    ("totalsegmentator/example_mr_sm.nii.gz", "totalsegmentator/example_seg_mr.nii.gz"),
])
def test_to_canonical_axial_on_loaded_images(shared_data, image, seg):
    """medground.load + to_canonical_axial: liver on the image left, spleen right; exact way back."""
    import medground
    from medground.data.orient import from_canonical_axial, to_canonical_axial

    img, lab = medground.load(shared_data / image), medground.load(shared_data / seg)
    slices, tr = to_canonical_axial(img)
    lab_slices, lab_tr = to_canonical_axial(lab)  # the DICOM example's label NIfTI stores y reversed
    assert slices.shape == lab_slices.shape == tr.out_shape
    c = label_centroids(lab_slices, {"liver": 5, "spleen": 1})
    assert c["liver"][1] < slices.shape[2] / 2 < c["spleen"][1]
    assert np.array_equal(from_canonical_axial(lab_slices, lab_tr), np.asarray(lab.data))
    back = from_canonical_axial(lab_slices, tr)  # the same slices land on the image's own grid
    assert back.shape == img.shape
    if img.modality == "CT":  # image and label slices are aligned: the liver mask covers liver HU values
        assert 20 < float(np.median(slices[lab_slices == 5])) < 150


def test_iter_slices_window(converted):
    root = converted / "totalsegmentator-ct"
    soft = [img for img, _ in iter_slices(root, None, terms=["liver"])]
    lung = [img for img, _ in iter_slices(root, None, terms=["liver"], window="lung")]
    assert len(soft) == len(lung) and not np.allclose(soft[0], lung[0])
