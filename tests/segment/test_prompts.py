import json

import numpy as np
import pytest

from medground.io.image import MedGroundInputError, MedImage
from medground.segment.prompts import parse_box, parse_point, prompt_from_row, read_jsonl, validate_prompt


def _img(shape=(50, 40, 10), ndim=3):
    return MedImage(np.random.default_rng(0).normal(size=shape).astype(np.float32), ndim=ndim)


def test_parse_box_and_point():
    b = parse_box("1,2,30,20", z=3)
    assert b.kind == "box" and b.coords == (1, 2, 30, 20) and b.z == 3
    assert parse_box("1,2,3,30,20,8").kind == "box3d"
    p = parse_point("5,6,7")
    assert p.kind == "point" and p.z == 7


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,3,4,5"])
def test_bad_box_text(text):
    with pytest.raises(MedGroundInputError):
        parse_box(text)


@pytest.mark.parametrize("box,z,msg", [
    ("0,0,60,10", 2, "outside"),       # x beyond 49
    ("-5,0,10,10", 2, "outside"),
    ("100,100,120,120", 2, "outside"),
    ("5,5,5,10", 2, "zero size"),
    ("10,5,4,10", 2, "x1 < x0"),
    ("1,1,10,10", 12, "slice 12"),
    ("1,1,10,10", None, "--slice"),
])
def test_box_validation(box, z, msg):
    with pytest.raises(MedGroundInputError, match=msg):
        validate_prompt(parse_box(box, z=z), _img())


def test_point_validation_and_2d_default_slice():
    img2d = _img((50, 40, 1), ndim=2)
    p = validate_prompt(parse_point("10,10"), img2d)
    assert p.z == 0
    with pytest.raises(MedGroundInputError, match="outside"):
        validate_prompt(parse_point("10,45"), img2d)
    with pytest.raises(MedGroundInputError, match="x,y,z"):
        validate_prompt(parse_point("10,10"), _img())


def test_jsonl(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"image": "a.png", "box": [1, 2, 3, 4], "label": "liver"}) + "\n\n# c\n" +
                 json.dumps({"image": "a.png", "point": [1, 2]}) + "\n")
    rows = read_jsonl(f)
    assert len(rows) == 2
    assert prompt_from_row(rows[0]).label == "liver"
    f.write_text("{not json}\n")
    with pytest.raises(MedGroundInputError, match="line 1"):
        read_jsonl(f)
    f.write_text(json.dumps({"image": "a.png"}) + "\n")
    with pytest.raises(MedGroundInputError):
        read_jsonl(f)
