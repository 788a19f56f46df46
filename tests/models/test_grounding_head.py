"""The grounding head: both grids (32 coarse, 64 fine), pair/all-pairs agreement, checkpoints, and that
the training code makes a fine head find small structures on a synthetic embedding cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medground.models.grounding import GroundingHead, load_head, save_head


@pytest.mark.parametrize("grid,fine", [(32, False), (64, True)])
def test_pairs_agree_with_all_pairs(grid, fine):
    torch.manual_seed(0)
    head = GroundingHead(grid=grid, fine=fine, hidden=32, queries=4).eval()
    emb = torch.randn(3, 256, 64, 64)
    text = torch.randn(5, 384)
    with torch.no_grad():
        heat, pres = head(emb, text)
        pairs = torch.tensor([[2, 4], [0, 1], [2, 0], [1, 3], [0, 1]])
        ph, pp = head(emb, text, pairs)
    assert heat.shape == (3, 5, grid, grid) and pres.shape == (3, 5)
    for k, (i, t) in enumerate(pairs.tolist()):
        assert torch.allclose(ph[k], heat[i, t], atol=1e-5)
        assert torch.allclose(pp[k], pres[i, t], atol=1e-5)


def test_fine_checkpoint_round_trip(tmp_path):
    head = GroundingHead(grid=64, fine=True, hidden=32, queries=4).eval()
    path = save_head(head, tmp_path / "g.pt", ["a", "b"], torch.randn(2, 384), {"name": "t"})
    back, obj = load_head(path)
    assert back.fine and back.grid == 64 and back.coarse == 32
    emb, text = torch.randn(1, 256, 64, 64), obj["term_emb"]
    with torch.no_grad():  # weights are stored in half precision
        assert torch.allclose(back(emb, text)[0], head.half().float()(emb, text)[0], atol=1e-2)


def test_old_coarse_checkpoints_keep_their_config(tmp_path):
    head = GroundingHead(hidden=32, queries=4)
    assert "fine" not in head.config  # a coarse head's saved config is what older releases wrote
    path = save_head(head, tmp_path / "c.pt", ["a"], torch.randn(1, 384), {"name": "t"})
    back, _ = load_head(path)
    assert not back.fine and back.grid == 32


def _synthetic_cache(tmp_path, n=48, seed=0, half=6):
    """Slices whose 'embedding' marks two small squares (3 x 3 cells of 64 for half=6) by channel; term 'a' is
    the square on channel 0, 'b' the one on channel 1; 'b' is absent from every third slice."""
    from medground.train.cache import Sample, build_cache

    rng = np.random.default_rng(seed)
    samples, marks = [], []
    for i in range(n):
        pic = np.zeros((256, 256), np.float32)
        masks = {}
        for ch, term in enumerate(("a", "b")):
            if term == "b" and i % 3 == 0:
                marks.append(None)
                continue
            y, x = rng.integers(8, 240, size=2)
            m = np.zeros((256, 256), bool)
            m[y - half: y + half, x - half: x + half] = True
            masks[term] = m
            marks.append((i, ch, m))
        samples.append(Sample(pic, masks, ("a", "b"), "syn", f"c{i}", i, "OT", "train" if i < n - 12 else "val"))
    by_index = {}
    for mk in marks:
        if mk:
            by_index.setdefault(mk[0], []).append(mk[1:])

    counter = {"i": 0}

    def encoder(x):
        out = torch.zeros((x.shape[0], 256, 64, 64))
        for b in range(x.shape[0]):
            for ch, m in by_index.get(counter["i"], []):
                out[b, ch] = F.avg_pool2d(torch.from_numpy(m.astype(np.float32))[None], 4)[0] * 3
            counter["i"] += 1
        return out

    return build_cache(samples, tmp_path / "cache", encoder, grid=64, batch=8, capacity=n, progress=False)


def test_training_a_fine_head_finds_small_structures(tmp_path):
    from medground.train.cache import EmbeddingCache
    from medground.train.grounding import HeadTrainConfig, train_head

    torch.set_num_threads(1)
    cache = EmbeddingCache(_synthetic_cache(tmp_path))
    assert cache.grid == 64 and cache.emb.shape[1:] == (256, 64, 64)
    cfg = HeadTrainConfig(epochs=25, batch=12, lr=1e-2, min_present_cells=1.0,
                          head={"fine": True, "hidden": 16, "queries": 2, "depth": 1, "mix": 8})
    temb = torch.eye(2, 384)
    head, hist = train_head(cache, temb, cfg, log=lambda *_: None)
    val = hist["final_val"]
    # a 12-pixel square is 3 x 3 cells of the fine grid: found where it is, and 'b' reported absent
    assert val["grid_dice"] > 0.5, val
    assert val["absent_specificity"] > 0.7, val


def _heat_on_positives(head, cache, temb):
    """Mean heat probability on the cells the val structures cover (weighted by the covered fraction)."""
    vals = []
    rows = cache.select("val")
    with torch.no_grad():
        heat, _ = head(torch.from_numpy(cache.emb[rows].astype(np.float32)), temb)
    for b, r in enumerate(rows):
        for t, k in cache.by_row.get(int(r), []):
            w = cache.tmasks[k] / 255.0  # covered fraction of each cell
            vals.append(float((torch.sigmoid(heat[b, t]).numpy() * w).sum() / w.sum()))
    return float(np.mean(vals))


def test_small_structure_weighting_pushes_harder_on_small_structures_only():
    """The size-weighted BCE: the pull up on a 1-cell structure's cell grows by sqrt(small_cells / area) (capped at
    pos_weight_max); a structure of small_cells cells or more, and the empty cells, keep the plain loss."""
    from medground.train.grounding import HeadTrainConfig, heat_losses

    t = torch.zeros(3, 64, 64)
    t[0, 10, 10] = 1.0  # 1 cell
    t[1, 20:30, 20:30] = 1.0  # 100 cells >= small_cells
    pos = torch.tensor([True, True, False])  # the third: an absent structure (all-zero target)

    def grads(cfg):
        heat = torch.full((3, 64, 64), -4.0, requires_grad=True)
        loss_heat, _ = heat_losses(heat, t, pos, cfg)
        loss_heat.backward()
        return heat.grad

    plain = grads(HeadTrainConfig())
    weighted = grads(HeadTrainConfig(pos_weight_max=6.0, small_cells=64.0))
    assert weighted[0, 10, 10] / plain[0, 10, 10] == pytest.approx(6.0, rel=1e-4)  # sqrt(64 / 1) = 8, capped at 6
    assert torch.allclose(weighted[1], plain[1]) and torch.allclose(weighted[2], plain[2])
    assert torch.allclose(weighted[0, 0, 0], plain[0, 0, 0])  # empty cells of the small structure's map
    mid = grads(HeadTrainConfig(pos_weight_max=6.0, small_cells=16.0))
    assert mid[0, 10, 10] / plain[0, 10, 10] == pytest.approx(4.0, rel=1e-4)


def test_warm_start_continues_from_a_checkpoint(tmp_path):
    from medground.train.cache import EmbeddingCache
    from medground.train.grounding import HeadTrainConfig, train_head

    torch.set_num_threads(1)
    cache = EmbeddingCache(_synthetic_cache(tmp_path, n=24))
    temb = torch.eye(2, 384)
    hk = {"fine": True, "hidden": 16, "queries": 2, "depth": 1, "mix": 8}
    torch.manual_seed(123)
    start = GroundingHead(grid=64, **hk)
    path = save_head(start, tmp_path / "start.pt", ["a", "b"], temb, {"name": "t"})
    ref = {k: v.half().float() for k, v in start.state_dict().items()}  # what the checkpoint holds
    # a vanishing learning rate: the result is the starting checkpoint, not the seed's fresh initialisation
    head, _ = train_head(cache, temb, HeadTrainConfig(epochs=1, batch=12, lr=1e-12, head=hk, init_from=str(path)),
                         log=lambda *_: None)
    fresh, _ = train_head(cache, temb, HeadTrainConfig(epochs=1, batch=12, lr=1e-12, head=hk), log=lambda *_: None)
    w = "reduce.0.weight"
    assert torch.allclose(head.state_dict()[w], ref[w], atol=1e-6)
    assert not torch.allclose(fresh.state_dict()[w], ref[w], atol=1e-3)
    from medground.io.image import MedGroundInputError

    with pytest.raises(MedGroundInputError, match="differs"):
        train_head(cache, temb, HeadTrainConfig(epochs=1, head=dict(hk, hidden=32), init_from=str(path)),
                   log=lambda *_: None)
    with pytest.raises(MedGroundInputError, match="init_from"):
        train_head(cache, temb, HeadTrainConfig(epochs=1, head=hk, init_from=str(tmp_path / "missing.pt")),
                   log=lambda *_: None)


def test_calibration_is_stored_in_the_checkpoint_and_read_by_the_bundle(tmp_path):
    import json

    from medground.models.grounding import GroundingBundle, set_calibration

    head = GroundingHead(hidden=32, queries=4)
    path = save_head(head, tmp_path / "g.pt", ["heart", "liver"], torch.randn(2, 384), {"name": "t"})
    set_calibration(path, {"heart": {"mask_from": "heat", "presence_threshold": 0.35, "junk": 1}}, "on val")
    h, obj = load_head(path)
    b = GroundingBundle(h, obj)
    assert b.calibration == {"heart": {"mask_from": "heat", "presence_threshold": 0.35}}
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert card["calibration_chosen"] == "on val" and card["calibration"]["heart"]["mask_from"] == "heat"


def test_caches_concatenate_with_term_ids_remapped(tmp_path):
    """Two caches with different vocabularies -> one cache: rows appended, term ids re-indexed to the union,
    each structure mask still attached to its own row and term."""
    from medground.train.cache import EmbeddingCache, Sample, build_cache

    def make(name, terms, n, val):
        samples = []
        for i in range(n):
            m = np.zeros((64, 64), bool)
            m[i: i + 8, 10: 20] = True
            samples.append(Sample(np.zeros((64, 64), np.float32), {terms[i % len(terms)]: m}, tuple(terms), name,
                                  f"c{i}", i, "OT"))
        enc = lambda x: torch.full((x.shape[0], 256, 64, 64), float(val))  # noqa: E731
        return EmbeddingCache(build_cache(samples, tmp_path / name, enc, grid=8, capacity=n, progress=False))

    a = make("a", ["liver", "spleen"], 4, 1.0)
    b = make("b", ["aorta", "liver"], 3, 2.0)
    c = EmbeddingCache.concat([a, b])
    assert c.terms == ["aorta", "liver", "spleen"] and len(c) == 7
    assert float(c.emb[0].mean()) == 1.0 and float(c.emb[6].mean()) == 2.0
    named = {(int(r), c.terms[int(t)]) for r, t in c.tindex}
    assert named == {(0, "liver"), (1, "spleen"), (2, "liver"), (3, "spleen"), (4, "aorta"), (5, "liver"),
                     (6, "aorta")}
    for r, t in c.tindex:  # masks follow their rows: row i of each part has its square starting at row i
        k = c.by_row[int(r)][0][1]
        src_i = int(r) if int(r) < 4 else int(r) - 4
        assert c.tmasks[k].any() and c.tmasks[k].nonzero()[0].min() == src_i // 8
    with pytest.raises(ValueError):
        bad = make("g", ["liver"], 1, 0.0)
        bad.grid = 16
        EmbeddingCache.concat([a, bad])


def test_config_with_several_caches(tmp_path):
    from medground.io.image import MedGroundInputError
    from medground.train.pipeline import cache_parts, load_config

    p = tmp_path / "c.yaml"
    p.write_text("data_root: d\nout: o.pt\ncaches:\n  - {cache_dir: c1, datasets: [x]}\n"
                 "  - {cache_dir: c2, datasets: [{name: x, start: 1}]}\n")
    parts = cache_parts(load_config(p))
    assert [q["cache_dir"] for q in parts] == ["c1", "c2"] and parts[1]["datasets"][0]["start"] == 1
    p.write_text("data_root: d\nout: o.pt\ncaches:\n  - {cache_dir: c1}\n")
    with pytest.raises(MedGroundInputError):
        load_config(p)
    p.write_text("data_root: d\nout: o.pt\n")
    with pytest.raises(MedGroundInputError):
        load_config(p)
    p.write_text("data_root: d\nout: o.pt\ndatasets: [x]\ntrain: {init_from: missing.pt}\n")
    with pytest.raises(MedGroundInputError, match="init_from"):  # before any encoding
        load_config(p)


def test_absent_terms_become_negatives_of_their_dataset_only(tmp_path):
    """`train.absent`: terms a dataset never shows (kidneys on a chest radiograph) are drawn as negatives of its
    rows, never of another dataset's rows, never when present, and only when the cache knows the term."""
    from medground.train.cache import EmbeddingCache, Sample, build_cache
    from medground.train.grounding import HeadTrainConfig, make_pairs

    def make(name, terms, labelled):
        m = np.zeros((64, 64), bool)
        m[10:30, 10:30] = True
        samples = [Sample(np.zeros((64, 64), np.float32), {terms[0]: m}, tuple(labelled), name, f"c{i}", i, "OT")
                   for i in range(3)]
        enc = lambda x: torch.zeros((x.shape[0], 256, 64, 64))  # noqa: E731
        return EmbeddingCache(build_cache(samples, tmp_path / name, enc, grid=8, capacity=3, progress=False))

    cache = EmbeddingCache.concat([make("cxr", ["lung_left"], ["lung_left"]),
                                   make("ct", ["kidney_left"], ["kidney_left", "liver"])])
    rows = np.arange(len(cache))
    term_ok = np.ones(len(cache.terms), bool)

    def negatives(cfg):
        pairs, _, pres, _ = make_pairs(cache, rows, np.random.default_rng(0), cfg, term_ok)
        out = {}
        for (b, t), p in zip(pairs.tolist(), pres.tolist()):
            if p == 0:
                out.setdefault(cache.rows[b]["dataset"], set()).add(cache.terms[t])
        return out

    assert negatives(HeadTrainConfig(neg_per_slice=8)) == {"ct": {"liver"}}  # the cxr rows label nothing absent
    cfg = HeadTrainConfig(neg_per_slice=8, absent={"cxr": ["kidney_left", "liver", "not_a_cached_term"],
                                                   "ct": ["kidney_left"]})
    neg = negatives(cfg)
    assert neg["cxr"] == {"kidney_left", "liver"}  # unknown terms are skipped
    assert neg["ct"] == {"liver"}  # kidney_left is present on the ct rows: never a negative there
