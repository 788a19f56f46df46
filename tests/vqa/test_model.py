"""VQAModel on a small synthetic world: the heads must learn the image side, memory must copy,
save/load must keep the answers. Uses the real MiniLM question encoder (packaged weights)."""
import numpy as np
import pytest

from medground.vqa.model import VQAModel, fit_logreg, mine_image_labels

QUESTIONS = [
    ("What imaging modality is this?", "OPEN", "MODALITY"),
    ("Is this an MRI?", "CLOSED", "MODALITY"),
    ("Is there a mass?", "CLOSED", "PRES"),
    ("Where is the lesion?", "OPEN", "POS"),
    ("In what plane was this image taken?", "OPEN", "PLANE"),
]


PROTOS = np.random.default_rng(42).normal(0, 1, (3, 64))


def _world(n=24, seed=0):
    rng = np.random.default_rng(seed)
    images, records = {}, []
    for i in range(n):
        mod = ["ct", "mri", "x-ray"][i % 3]
        organ = {"ct": "ABD", "mri": "HEAD", "x-ray": "CHEST"}[mod]
        f = (rng.normal(0, 1, 64) + 2.0 * PROTOS[i % 3]).astype(np.float32)  # the modality shows
        th = rng.normal(0, 1, 576).astype(np.float32)
        name = f"img{i}.jpg"
        images[name] = {"key": f"k{i}", "thumb": th / np.linalg.norm(th), "features": f}
        side = "left" if i % 2 else "right"
        ans = {"What imaging modality is this?": mod, "Is this an MRI?": "yes" if mod == "mri" else "no",
               "Is there a mass?": "yes" if i % 4 < 2 else "no", "Where is the lesion?": f"{side} lobe",
               "In what plane was this image taken?": "pa" if mod == "x-ray" else "axial"}
        for q, at, qt in QUESTIONS:
            records.append({"image_name": name, "image_organ": organ, "question": q, "answer": ans[q],
                            "answer_type": at, "question_type": qt})
    return images, records


@pytest.fixture(scope="module")
def world():
    from medground.models.text import text_encoder

    images, records = _world()
    qemb = text_encoder().encode([r["question"] for r in records]).numpy()
    return images, records, qemb


def test_logreg_separates():
    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, (200, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    W, b = fit_logreg(X, y, 2)
    assert ((X @ W + b).argmax(1) == y).mean() > 0.95


def test_mining(world):
    _images, records, _ = world
    lab = mine_image_labels(records)
    assert lab["modality"]["img1.jpg"] == "mri" and lab["modality"]["img2.jpg"] == "x-ray"
    assert lab["organ"]["img0.jpg"] == "abd"
    assert lab["plane"]["img2.jpg"] == "pa"


def test_heads_generalise_to_unseen_images(world, tmp_path):
    images, records, qemb = world
    train = [i for i, r in enumerate(records) if int(r["image_name"][3:-4]) < 18]
    model = VQAModel().fit([records[i] for i in train], images, qemb[train])
    enc_q = {r["question"]: qemb[i] for i, r in enumerate(records)}
    rng = np.random.default_rng(5)
    correct = 0
    for k in range(9):
        mod = ["ct", "mri", "x-ray"][k % 3]
        f = (rng.normal(0, 1, 64) + 2.0 * PROTOS[k % 3]).astype(np.float32)
        out = model.answer("What imaging modality is this?", enc_q["What imaging modality is this?"], f)
        correct += out["answer"] == mod
        yn = model.answer("Is this an MRI?", enc_q["Is this an MRI?"], f)
        assert yn["answer"] == ("yes" if mod == "mri" else "no"), (yn, mod)
        assert not out["image_known"] and out["route"] != "memory"
    assert correct >= 8
    # memory: a known image by its key, a paraphrase copies the train answer
    from medground.models.text import text_encoder

    q = "Where is the lesion located?"
    e = text_encoder().encode([q])[0].numpy()
    out = model.answer(q, e, None, key="k3")
    assert out["route"] == "memory" and out["answer"] == "left lobe"
    # save / load round trip
    p = tmp_path / "vqa.pt"
    model.save(p)
    m2 = VQAModel.load(p)
    f = images["img20.jpg"]["features"]
    for qq in ("What imaging modality is this?", "Is there a mass?"):
        a = model.answer(qq, enc_q[qq], f)
        b = m2.answer(qq, enc_q[qq], f)
        assert a["answer"] == b["answer"] and abs(a["confidence"] - b["confidence"]) < 0.02
