"""index_paths / search with a deterministic stand-in embedder and a stub segmenter (fast)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import medground
from medground.io.image import MedGroundInputError
from medground.retrieve import index_paths, open_store, search
from medground.retrieve.index import masked_crop, read_reports

from _retrieve_helpers import make_pictures


@pytest.fixture(params=["cases.db", "cases.sqlite"])
def db(request, tmp_path):
    if request.param.endswith(".db"):
        pytest.importorskip("lancedb")
    return str(tmp_path / request.param)


def test_index_is_incremental_and_idempotent(db, pictures, tmp_path, hash_embedder, stub_segmenter):
    calls = []

    def seg(image, prompts):
        calls.append(list(prompts))
        return stub_segmenter(image, prompts)

    s1 = index_paths([pictures[0].parent], db, regions="right lung", embedder=hash_embedder, segmenter=seg,
                     progress=False)
    assert (s1["images"], s1["images_added"], s1["regions_added"], s1["failed"]) == (4, 4, 4, [])
    assert s1["total_records"] == 8 and len(calls) == 4
    # same again: nothing recomputed, nothing added
    s2 = index_paths([pictures[0].parent], db, regions="right lung", embedder=hash_embedder, segmenter=seg,
                     progress=False)
    assert (s2["images_added"], s2["images_skipped"], s2["regions_added"], s2["total_records"]) == (0, 4, 0, 8)
    assert len(calls) == 4
    # a copy of a file under another name has the same content id: not indexed twice
    (pictures[0].parent / "copy.png").write_bytes(pictures[0].read_bytes())
    # a new region: only that one is segmented; a new image gets both
    make_pictures(tmp_path / "more", n=1, seed=5)[0].rename(pictures[0].parent / "new.png")
    s3 = index_paths([pictures[0].parent], db, regions="right lung, heart", embedder=hash_embedder,
                     segmenter=seg, progress=False)
    assert s3["images"] == 6 and s3["images_added"] == 1 and s3["images_updated"] == 4
    assert s3["regions_added"] == 4 + 2
    assert calls[4:] == [["heart"]] * 4 + [["right lung", "heart"]] or sorted(map(tuple, calls[4:])) == sorted(
        [("heart",)] * 4 + [("right lung", "heart")])
    with open_store(db) as st:
        assert st.count({"kind": "image"}) == 5
        assert st.count({"kind": "region", "term": "heart"}) == 5
        assert st.count({"kind": "region", "term": "lung_right"}) == 5
        meta = json.loads(st.get([st.distinct("image_id")[0]])[0]["meta"])
        assert meta["regions_done"] == ["heart", "lung_right"]


def test_absent_region_is_remembered(db, pictures, hash_embedder, stub_segmenter):
    calls = []

    def seg(image, prompts):
        calls.append(prompts)
        return stub_segmenter(image, prompts)

    s = index_paths(pictures[:2], db, regions="liver", embedder=hash_embedder, segmenter=seg, progress=False)
    assert s["regions_added"] == 0 and s["regions_absent"] == 2
    s = index_paths(pictures[:2], db, regions="liver", embedder=hash_embedder, segmenter=seg, progress=False)
    assert s["images_skipped"] == 2 and len(calls) == 2


def test_search_by_image_text_region_and_both(db, pictures, tmp_path, hash_embedder, stub_segmenter):
    csv = tmp_path / "reports.csv"
    csv.write_text("image,report,patient,finding\n"
                   f"{pictures[0].name},Right lower lobe consolidation.,p1,pneumonia\n"
                   f"scans/{pictures[1].name},Normal chest; clear lungs.,p2,normal\n"
                   f"{pictures[2].resolve()},Cardiomegaly with small effusion.,p1,cardiomegaly\n")
    s = index_paths([pictures[0].parent], db, reports=csv, regions="right lung,heart", embedder=hash_embedder,
                    segmenter=stub_segmenter, progress=False)
    assert s["reports_added"] == 3 and s["total_records"] == 4 + 8 + 3 and s["reports_unmatched"] == 0
    img = medground.load(pictures[1])
    # image -> image: itself first with cosine 1, one row per image
    rows = search(db, image=img, k=10, embedder=hash_embedder)
    assert rows[0]["image"] == str(pictures[1].resolve()) and rows[0]["score"] == pytest.approx(1, abs=1e-5)
    assert len(rows) == 4 and len({r["image_id"] for r in rows}) == 4
    assert rows[0]["report"] == "Normal chest; clear lungs." and rows[0]["patient"] == "p2"
    assert rows[0]["label"] == "normal" and [r["rank"] for r in rows] == [1, 2, 3, 4]
    # region-conditioned: only region crops of that region, the query's own crop first
    rows = search(db, image=img, region="right lung", k=3, embedder=hash_embedder, segmenter=stub_segmenter)
    assert all(r["term"] == "lung_right" and r["match"] == "region" for r in rows)
    assert rows[0]["image"] == str(pictures[1].resolve()) and rows[0]["score"] == pytest.approx(1, abs=1e-5)
    assert rows[0]["report"] == "Normal chest; clear lungs."  # the parent image's report is shown
    # the heart crop differs from the right-lung crop of the same image
    h = search(db, image=img, region="heart", k=1, embedder=hash_embedder, segmenter=stub_segmenter)[0]
    assert h["term"] == "heart" and h["id"] != rows[0]["id"]
    # text: report wording finds its image
    rows = search(db, text="consolidation in the right lower lobe", k=2, embedder=hash_embedder)
    assert rows[0]["image"] == str(pictures[0].resolve()) and rows[0]["match"] == "report"
    # both: combined score between the two parts
    rows = search(db, image=medground.load(pictures[2]), text="cardiomegaly effusion", k=4,
                  embedder=hash_embedder, alpha=0.5)
    top = rows[0]
    assert top["image"] == str(pictures[2].resolve()) and top["match"] == "image+text"
    assert top["score"] == pytest.approx(0.5 * top["score_image"] + 0.5 * top["score_text"], abs=1e-5)
    # metadata filters: other patients only
    rows = search(db, image=img, k=10, embedder=hash_embedder, filters={"patient": ("!=", "p2")})
    assert str(pictures[1].resolve()) not in {r["image"] for r in rows} and len(rows) == 3


def test_search_errors(db, pictures, hash_embedder, stub_segmenter):
    with pytest.raises(MedGroundInputError, match="not found"):
        search(db, text="x", embedder=hash_embedder)
    index_paths(pictures[:2], db, regions="right lung", embedder=hash_embedder, segmenter=stub_segmenter,
                progress=False)
    with pytest.raises(MedGroundInputError, match="did you mean"):
        search(db, text="x", region="rigth lnug xyz", embedder=hash_embedder)
    with pytest.raises(MedGroundInputError, match="not indexed.*right lung"):
        search(db, text="x", region="liver", embedder=hash_embedder)
    with pytest.raises(MedGroundInputError, match="query image, a query text"):
        search(db, embedder=hash_embedder)
    from medground.retrieve.embedder import HashEmbedder

    with pytest.raises(MedGroundInputError, match="indexed with embedder"):
        search(db, text="x", embedder=HashEmbedder(dim=16))


def test_unreadable_image_is_reported_and_others_indexed(db, pictures, hash_embedder, stub_segmenter):
    (pictures[0].parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    s = index_paths([pictures[0].parent], db, regions="none", embedder=hash_embedder, segmenter=stub_segmenter,
                    progress=False)
    assert s["images_added"] == 4 and len(s["failed"]) == 1 and "broken.png" in s["failed"][0]["path"]


def test_masked_crop_geometry():
    data = np.arange(20 * 30 * 5, dtype=np.float32).reshape(20, 30, 5) + 10
    aff = np.diag([0.5, 0.7, 2.0, 1.0])
    aff[:3, 3] = [1, 2, 3]
    from medground.io.image import MedImage

    img = MedImage.from_array(data, affine=aff)
    m = np.zeros(data.shape, bool)
    m[5:10, 10:20, 2:3] = True
    m[7, 12, 2] = False
    c = masked_crop(img, m, margin=0.0)
    # box + 4 px in-plane, +1 slice
    assert c.shape == (5 + 8, 10 + 8, 3)
    assert np.allclose(c.affine[:3, 3], aff[:3, :3] @ [1, 6, 1] + aff[:3, 3])
    assert c.data[4 + 2, 4 + 2, 1] == data.min()  # masked-out voxel inside the box
    assert c.data[4, 4, 1] == data[5, 10, 2]  # a mask voxel keeps its value
    assert c.data[0, 0, 0] == data.min()


def test_read_reports_columns(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("file,text\n")
    with pytest.raises(MedGroundInputError, match="no rows"):
        read_reports(p)
    p.write_text("name,body\na.png,x\n")
    with pytest.raises(MedGroundInputError, match="needs an image column"):
        read_reports(p)
    p.write_text("filename,findings,patientid\nsub/a.png,opacity,7\n")
    r = read_reports(p)
    assert r["a.png"] == {"report": "opacity", "patient": "7", "label": ""} and "sub/a.png" in r


def test_volume_region_crop_keeps_world_position(db, tmp_path, hash_embedder, stub_segmenter):
    import nibabel as nib

    rng = np.random.default_rng(3)
    data = (rng.random((40, 36, 12)) * 200 - 100).astype(np.float32)
    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    aff[:3, 3] = [-30, -27, 10]
    nib.save(nib.Nifti1Image(data, aff), str(tmp_path / "vol.nii.gz"))
    s = index_paths([tmp_path / "vol.nii.gz"], db, regions="heart", embedder=hash_embedder,
                    segmenter=stub_segmenter, progress=False)
    assert s["images_added"] == 1 and s["regions_added"] == 1
    with open_store(db) as st:
        (reg,) = st.search(np.ones(st.dim), k=5, filters={"kind": "region"})
        meta = json.loads(reg["meta"])
    # stub heart box: x 13..25, y 12..23, every slice; crop = box + 4 px in-plane, whole z range
    assert meta["crop_shape"] == [13 + 8, 12 + 8, 12]
    assert reg["region"] == "heart" and reg["modality"] == medground.load(tmp_path / "vol.nii.gz").modality
