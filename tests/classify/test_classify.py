"""medground.classify: API contract, training code path on synthetic pictures, CLI."""
import json

import numpy as np
import pytest
import torch

from medground.classify import MODALITIES, REGIONS, VIEWS, classify, parse_labels
from medground.cli.main import main
from medground.io.image import MedGroundInputError, MedImage

KEYS = {"modality", "modality_confidence", "body_region", "body_region_confidence", "view", "view_confidence",
        "probabilities"}


def _pic(seed=0, colour=False, shape=(90, 70)):
    rng = np.random.default_rng(seed)
    a = (rng.random(shape + ((3,) if colour else ())) * 255).astype(np.uint8)
    return MedImage.from_array(a, layout="rc")


def _check(res):
    assert KEYS <= set(res)
    for key, names in (("modality", MODALITIES), ("body_region", REGIONS), ("view", VIEWS)):
        probs = res["probabilities"][key]
        assert set(probs) == set(names)
        assert abs(sum(probs.values()) - 1.0) < 1e-2
        assert res[key] == max(probs, key=probs.get)
        assert 0.0 <= res[f"{key}_confidence"] <= 1.0


def test_classify_contract_2d():
    _check(classify(_pic(0)))
    _check(classify(_pic(1, colour=True)))


def test_volume_view_comes_from_geometry_and_header_modality_counts():
    data = np.random.default_rng(0).normal(0, 400, (48, 40, 16)).astype(np.float32)
    axial = MedImage.from_array(data, affine=np.diag([0.8, 0.8, 3.0, 1.0]), modality="CT")
    res = classify(axial)
    _check(res)
    assert res["view"] == "axial" and res["view_confidence"] == 1.0 and res["view_source"] == "geometry"
    assert res["modality"] == "CT" and res["modality_source"] == "metadata"
    # slices stacked along the anterior-posterior axis: coronal
    cor = np.array([[1.0, 0, 0, 0], [0, 0, 3.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    assert classify(MedImage.from_array(data, affine=cor, modality="MR"))["view"] == "coronal"
    # views are restricted to those that make sense for the modality
    us = classify(MedImage.from_array(data, affine=cor, modality="US"))
    assert us["modality"] == "ultrasound" and us["view"] == "n/a" and us["view_source"] == "image"


def test_header_tags_are_weak_labels():
    im = _pic(5)
    im.meta.update(body_part_examined="CHEST", view_position="LL")
    res = classify(im)
    assert res["body_region"] == "chest" and res["body_region_source"] == "metadata"
    assert res["view"] == "lateral" and res["view_source"] == "metadata"


def test_labels_zero_shot_and_head_routing():
    res = classify(_pic(3), labels="pneumonia, normal ,COVID-19")
    assert set(res["label_probabilities"]) == {"pneumonia", "normal", "COVID-19"}
    assert abs(sum(res["label_probabilities"].values()) - 1) < 1e-2
    assert res["label"] in res["label_probabilities"] and res["label_source"] == "zero-shot"
    res = classify(_pic(3), labels=["CT", "MRI", "x-ray"])  # all modality names: answered by the modality head
    assert res["label_source"] == "modality-head"
    pm = res["probabilities"]["modality"]
    expect = max(("CT", "MRI", "x-ray"), key=lambda k: pm[{"x-ray": "X-ray"}.get(k, k)])
    assert res["label"] == expect


def test_parse_labels():
    assert parse_labels(None) is None
    assert parse_labels("a, b,,a ,c") == ["a", "b", "c"]
    with pytest.raises(MedGroundInputError):
        parse_labels("only-one")


# ------------------------------------------------------------------------------------- training path
def _toy_dataset(n=48):
    """Two visually obvious classes: grey noisy 'X-ray' vs pink-purple 'pathology'."""
    rng = np.random.default_rng(0)
    thumbs, mod, reg, view, group, src, texts = [], [], [], [], [], [], []
    for i in range(n):
        if i % 2 == 0:
            g = (rng.random((96, 96)) * 120 + 60).astype(np.uint8)
            thumbs.append(np.repeat(g[..., None], 3, -1))
            mod.append(MODALITIES.index("X-ray")), reg.append(REGIONS.index("chest")), view.append(VIEWS.index("PA"))
            texts.append(json.dumps(["a chest radiograph"]))
        else:
            t = np.zeros((96, 96, 3), np.uint8) + np.array([230, 150, 200], np.uint8)
            t[rng.random((96, 96)) < 0.2] = [100, 50, 150]
            thumbs.append(t)
            mod.append(MODALITIES.index("pathology")), reg.append(REGIONS.index("tissue")), view.append(VIEWS.index("n/a"))
            texts.append(json.dumps(["an H&E slide"]))
        group.append(f"toy:{i}")
        src.append("toy")
    return {"thumbs": np.stack(thumbs), "aspect": np.ones(n, np.float32), "modality": np.array(mod, np.int16),
            "region": np.array(reg, np.int16), "view": np.array(view, np.int16), "group": np.array(group),
            "source": np.array(src), "texts": np.array(texts), "synthetic": np.zeros(n, bool)}


def test_training_code_path_learns_and_checkpoint_loads(tmp_path):
    from medground.classify import train as T
    from medground.classify.model import load_classifier

    torch.set_num_threads(1)
    d = _toy_dataset()
    val = T.split_mask(d["group"], d["source"])
    assert 0 < val.sum() < len(val)
    tr, va = np.where(~val)[0], np.where(val)[0]
    net = T.train_heads(d, tr, epochs=3, per_epoch=160, bs=16, width=4, log=lambda *_: None)
    m = T.evaluate(net, d, va)
    assert m["modality"]["accuracy"] >= 0.9, m["modality"]
    T.train_projection(net, d, tr, steps=30, bs=16, log=lambda *_: None)
    zs = T.zero_shot_eval(net, d, va)
    assert zs["modality names"]["n"] == len(va)
    ck = tmp_path / "toy.pt"
    torch.save({"config": net.config, "state_dict": net.state_dict(), "modalities": MODALITIES, "regions": REGIONS,
                "views": VIEWS, "card": {}}, ck)
    b = load_classifier(ck)
    assert b.trained
    pink = np.zeros((120, 100, 3), np.uint8) + np.array([230, 150, 200], np.uint8)
    pink[np.random.default_rng(1).random((120, 100)) < 0.2] = [100, 50, 150]
    res = classify(MedImage.from_array(pink, layout="rc"), weights=ck)
    assert res["modality"] == "pathology"


def test_sample_weights_balance_modalities():
    from medground.classify.train import sample_weights

    mod = np.array([0] * 90 + [1] * 10)
    src = np.array(["a"] * 90 + ["b"] * 10)
    w = sample_weights(mod, src)
    assert abs(w[:90].sum() - 0.5) < 1e-9 and abs(w[90:].sum() - 0.5) < 1e-9


# ------------------------------------------------------------------------------------- CLI
def _save_png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)


def test_cli_single_table_and_json(tmp_path, capsys):
    p = tmp_path / "a.png"
    _save_png(p, (np.random.default_rng(0).random((64, 80)) * 255).astype(np.uint8))
    assert main(["classify", str(p)]) == 0
    out = capsys.readouterr().out
    assert "modality" in out and "body region" in out and "view" in out
    assert main(["classify", str(p), "--json", "--labels", "normal,abnormal"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert KEYS <= set(doc) and doc["label"] in ("normal", "abnormal")


def test_cli_batch_goes_on_after_a_bad_image(tmp_path, capsys):
    good = tmp_path / "good.png"
    _save_png(good, (np.random.default_rng(1).random((50, 50, 3)) * 255).astype(np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    lst = tmp_path / "images.txt"
    lst.write_text(f"{good}\n\nbad.png\n{tmp_path / 'missing.png'}\n")
    out = tmp_path / "preds.jsonl"
    assert main(["classify", "--batch", str(lst), "--out", str(out), "--quiet", "--labels", "a,b"]) == 1
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3
    assert rows[0]["image"] == str(good) and rows[0]["modality"] in MODALITIES and "label" in rows[0]
    assert {"modality_confidence", "body_region", "view", "probabilities"} <= set(rows[0])
    assert "error" in rows[1] and "error" in rows[2]
    lst.write_text(f"{good}\n")
    assert main(["classify", "--batch", str(lst), "--out", str(out), "--quiet"]) == 0


def test_cli_bad_input_exits_2(tmp_path):
    assert main(["classify", str(tmp_path / "nope.png")]) == 2
    assert main(["classify"]) == 2
    p = tmp_path / "a.png"
    _save_png(p, (np.random.default_rng(0).random((30, 30)) * 255).astype(np.uint8))
    assert main(["classify", str(p), "--labels", "one"]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["classify", "--batch", str(empty)]) == 2


@pytest.mark.shared
def test_packaged_weights_on_real_images(shared_data):
    from medground.classify.model import load_classifier
    from medground.io import load

    if not load_classifier().trained:
        pytest.skip("no trained classifier weights installed")
    cases = [("jsrt-cxr/images", "X-ray"), ("endoscopy-kvasir/images", "endoscopy"), ("fundus-drive/images", "fundus"),
             ("dermoscopy-ph2/images", "dermoscopy"), ("mammography-mias/images", "mammography"),
             ("ultrasound-busi/images", "ultrasound")]
    ok = 0
    for folder, want in cases:
        f = sorted((shared_data / folder).glob("*"))[-1]
        ok += classify(load(f))["modality"] == want
    assert ok >= len(cases) - 1


def test_packaged_weights_have_a_model_card():
    from medground.classify.model import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no packaged classifier weights")
    assert DEFAULT_WEIGHTS.stat().st_size < 8 * 2 ** 20  # shipped in the wheel: keep it small
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".card.json").read_text())
    assert card["sources"] and "evaluation" in card
    assert set(card["labels"]["modality"]) == set(MODALITIES)
