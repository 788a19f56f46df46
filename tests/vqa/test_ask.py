"""ask() and `medground ask` with the shipped VQA weights."""
import json

import numpy as np
import pytest

import medground
from medground.io.image import MedGroundInputError
from medground.vqa import ask, weights_path

pytestmark = pytest.mark.skipif(not weights_path().exists(), reason="VQA weights not shipped")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A synthetic 'chest film': two dark lungs on a bright body, saved as PNG."""
    from PIL import Image

    y, x = np.mgrid[0:200, 0:180]
    a = np.full((200, 180), 200, np.uint8)
    a[((x - 55) / 35.0) ** 2 + ((y - 100) / 70.0) ** 2 < 1] = 40
    a[((x - 125) / 35.0) ** 2 + ((y - 100) / 70.0) ** 2 < 1] = 40
    p = tmp_path_factory.mktemp("vqa") / "film.png"
    Image.fromarray(a).save(p)
    return p


def test_ask_returns_contract(picture):
    img = medground.load(picture)
    out = ask(img, "What imaging modality is this?", use_segmenter=False)
    assert {"answer", "confidence", "route", "question_type"} <= set(out)
    assert out["question_type"] == "modality" and 0.0 <= out["confidence"] <= 1.0
    assert out["answer"] == out["answer"].lower() and out["answer"]
    yn = ask(img, "Is there a pneumothorax?", use_segmenter=False)
    assert yn["answer"] in ("yes", "no") and yn["closed"]


def test_bad_questions_raise(picture):
    img = medground.load(picture)
    with pytest.raises(MedGroundInputError, match="empty"):
        ask(img, "   ")
    with pytest.raises(MedGroundInputError, match="medical image"):
        ask(img, "What is the capital of France?")


def test_cli_single_and_batch(picture, tmp_path, capsys):
    from medground.cli.main import main

    assert main(["ask", str(picture), "Is this an MRI?", "--json", "--no-segmenter"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["answer"] in ("yes", "no") and doc["route"]
    assert main(["ask", str(picture), "what is the capital of france?"]) == 2
    assert main(["ask", str(picture), ""]) == 2
    rows = [{"id": "a", "image": picture.name, "question": "Is this a CT scan?"},
            {"id": "b", "image": "missing.png", "question": "Is this a CT?"},
            {"id": "c", "image": str(picture), "question": "Who won the football world cup?"}]
    q = picture.parent / "questions.jsonl"
    q.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    out = tmp_path / "answers.jsonl"
    assert main(["ask", "--batch", str(q), "--out", str(out), "--quiet", "--no-segmenter"]) == 0
    got = [json.loads(s) for s in out.read_text().splitlines()]
    assert [g["id"] for g in got[:3]] == ["a", "b", "c"] and len(got) == 4
    assert got[0]["answer"] in ("yes", "no") and "confidence" in got[0] and "route" in got[0]
    assert "error" in got[1] and "not found" in got[1]["error"]
    assert "error" in got[2] and "error" in got[3]


@pytest.mark.shared
def test_known_image_reencoded_uses_memory(shared_data, tmp_path):
    """A VQA-RAD picture saved again as PNG at 90% size is recognised; a train question is answered
    from the memory with its train answer."""
    from PIL import Image

    from medground.vqa.text import normalize_answer

    recs = json.loads((shared_data / "vqa-rad" / "trainset.json").read_text())
    r = next(x for x in recs if x["answer_type"].strip() == "OPEN" and x["image_organ"] == "CHEST")
    im = Image.open(shared_data / "vqa-rad" / "images" / r["image_name"]).convert("L")
    im = im.resize((int(im.width * 0.9), int(im.height * 0.9)))
    p = tmp_path / "copy.png"
    im.save(p)
    out = ask(medground.load(p), r["question"], use_segmenter=False)
    assert out["image_known"] and out["route"] == "memory"
    assert out["answer"] == normalize_answer(r["answer"])
