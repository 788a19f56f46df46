"""The mask refinement network: shapes, a save/load round trip, and a short training run on synthetic slices."""
import numpy as np
import pytest
import torch

from medground.io.image import MedGroundInputError
from medground.models.refine import RefineNet, load_refine, refine_inputs, save_refine


def test_refine_net_keeps_the_frame_and_returns_background_plus_terms():
    net = RefineNet(3, (8, 8, 8))
    x = refine_inputs(torch.rand(2, 64, 48), torch.randn(2, 3, 16, 16))  # heat upsampled to the picture
    assert x.shape == (2, 4, 64, 48) and float(x[:, 1:].min()) >= 0 and float(x[:, 1:].max()) <= 1
    assert net(x).shape == (2, 4, 64, 48)


def test_refine_checkpoint_round_trip(tmp_path):
    net = RefineNet(2, (8, 8))
    path = save_refine(net, tmp_path / "r.pt", ["liver", "spleen"], {"name": "tiny"})
    b = load_refine(path)
    assert b.term_ids == ["liver", "spleen"] and b.name == "tiny" and path.with_suffix(".card.json").exists()
    p = b.probabilities(torch.rand(1, 32, 32), torch.randn(1, 2, 8, 8))
    assert p.shape == (1, 2, 32, 32) and float(p.sum(1).max()) <= 1 + 1e-5  # softmax with the background
    with pytest.raises(MedGroundInputError):
        load_refine(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(MedGroundInputError, match="not a medground refinement"):
        load_refine(tmp_path / "bad.pt")


def test_a_residual_network_starts_as_the_heat_and_survives_a_round_trip(tmp_path):
    """With its correction at zero (as initialised) a residual network returns the heat: the probability of a lone
    term, and the heat baseline's argmax where several compete."""
    net = RefineNet(2, (8, 8), residual=True)
    heat = torch.randn(1, 2, 8, 8) * 3
    x = refine_inputs(torch.rand(1, 32, 32), heat)
    single = RefineNet(1, (8, 8), residual=True)
    x1 = refine_inputs(torch.rand(1, 32, 32), heat[:, :1])
    assert torch.allclose(torch.softmax(single(x1), 1)[:, 1], x1[:, 1], atol=1e-4)
    hp = x[:, 1:]
    want = hp.argmax(1) + 1
    want[hp.max(1).values < 0.5] = 0
    assert torch.equal(net(x).argmax(1), want)
    b = load_refine(save_refine(net, tmp_path / "res.pt", ["liver", "spleen"], {"name": "res"}))
    assert b.net.residual and b.net.config["residual"] is True
    assert torch.allclose(b.net(x), net(x), atol=1e-2)


def test_refine_training_learns_to_sharpen_a_coarse_heat_map(tmp_path):
    """Synthetic slices: a bright disc (the structure) whose heat map is a blurred, coarse, slightly shifted copy.
    After a short training the network draws the disc better than the coarse heat does."""
    from medground.train.refine import evaluate, train

    rng = np.random.default_rng(0)
    n, size, g = 24, 128, 32
    yy, xx = np.mgrid[:size, :size]
    pics, heats, labs = [], [], []
    for _ in range(n):
        cy, cx, r = rng.integers(30, 98), rng.integers(30, 98), rng.integers(8, 20)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        pics.append((np.clip(0.3 + 0.5 * disc + rng.normal(0, 0.05, disc.shape), 0, 1) * 255).astype(np.uint8))
        coarse = torch.nn.functional.avg_pool2d(torch.from_numpy(disc.astype(np.float32))[None, None], size // g)[0, 0]
        heats.append(((coarse.numpy() - 0.3) * 12)[None].astype(np.float16))  # logits of a blocky disc
        labs.append(disc.astype(np.uint8))
    d = tmp_path / "train"
    d.mkdir()
    np.savez_compressed(d / "a.npz", pic=np.stack(pics), heat=np.stack(heats), lab=np.stack(labs),
                        zs=np.arange(n), terms=np.array(["lesion"]))
    card = train(d, d, tmp_path / "r.pt", epochs=6, crops_per_epoch=96, size=64, batch=8, lr=5e-3)
    assert card["terms"] == ["lesion"] and card["history"][-1]["val_dice"]["lesion"] > 0.8
    b = load_refine(tmp_path / "r.pt")
    dice, base = evaluate(b.net, np.stack(pics), np.stack(heats), np.stack(labs))
    assert dice[0] > base[0]


def test_each_network_serves_its_own_modality_and_terms(tmp_path, monkeypatch):
    """Packaged networks are found by name (weights/refine_*.pt); a term goes to the network that covers it and was
    trained on the image's modality (cards without one are the first, CT-only networks)."""
    import medground.models.refine as refine
    from medground.models.refine import choose_refiners, load_refiners, refine_modality

    monkeypatch.setattr(refine, "WEIGHTS", tmp_path)
    assert load_refiners() == []
    save_refine(RefineNet(1, (8, 8)), tmp_path / "refine_ct.pt", ["liver"], {"name": "ct"})
    save_refine(RefineNet(2, (8, 8)), tmp_path / "refine_cmr.pt", ["left_ventricle", "myocardium"],
                {"name": "cmr", "modality": "MR"})  # read as the classifier's "MRI"
    bundles = load_refiners()
    assert [b.name for b in bundles] == ["cmr", "ct"] and [refine_modality(b) for b in bundles] == ["MRI", "CT"]
    mr = choose_refiners(["myocardium", "liver"], bundles, "MRI")
    assert mr["myocardium"].name == "cmr" and mr["liver"] is None
    ct = choose_refiners(["myocardium", "liver"], bundles, "CT")
    assert ct["myocardium"] is None and ct["liver"].name == "ct"
    assert [b.name for b in load_refiners(tmp_path / "refine_ct.pt")] == ["ct"]  # a path: that network only


def test_a_network_that_reads_the_embedding_uses_it(tmp_path):
    """Synthetic slices with two equal bright discs and a heat map covering both: only the embedding (a quarter-
    resolution feature map, as LiteMedSAM's) says which disc is the structure. Trained with it, the network finds the
    right disc; trained without it, it cannot (it draws both or guesses). The embedding is saved and read beside each
    slice file, and a network that reads it refuses to run without it."""
    from medground.train.refine import evaluate, train

    rng = np.random.default_rng(1)
    n, size, g = 32, 128, 32
    yy, xx = np.mgrid[:size, :size]
    pics, heats, labs, embs = [], [], [], []
    for _ in range(n):
        (ay, ax), (by, bx) = rng.integers(24, 104, size=(2, 2))
        while (ay - by) ** 2 + (ax - bx) ** 2 < 40 ** 2:
            by, bx = rng.integers(24, 104, size=2)
        a = (yy - ay) ** 2 + (xx - ax) ** 2 < 12 ** 2
        b = (yy - by) ** 2 + (xx - bx) ** 2 < 12 ** 2
        pics.append((np.clip(0.3 + 0.5 * (a | b) + rng.normal(0, 0.05, a.shape), 0, 1) * 255).astype(np.uint8))
        both = torch.from_numpy((a | b).astype(np.float32))[None, None]
        heats.append(((torch.nn.functional.avg_pool2d(both, size // g)[0, 0].numpy() - 0.3) * 12)[None].astype(np.float16))
        labs.append(a.astype(np.uint8))
        f = torch.nn.functional.avg_pool2d(torch.from_numpy(a.astype(np.float32))[None, None], 4)[0]
        embs.append(np.concatenate([f.numpy(), rng.normal(0, 0.1, (3, size // 4, size // 4))]).astype(np.float16))
    d = tmp_path / "train"
    d.mkdir()
    np.savez_compressed(d / "a.npz", pic=np.stack(pics), heat=np.stack(heats), lab=np.stack(labs),
                        zs=np.arange(n), terms=np.array(["lesion"]))
    np.save(d / "a.emb.npy", np.stack(embs))
    kw = dict(epochs=5, crops_per_epoch=96, size=64, batch=8, lr=5e-3, widths=(8, 16, 16), flip=False)
    with_emb = train(d, d, tmp_path / "e.pt", embedding=True, **kw)
    without = train(d, d, tmp_path / "n.pt", **kw)
    assert with_emb["reads_embedding"] and not without["reads_embedding"]
    b = load_refine(tmp_path / "e.pt")
    assert b.reads_embedding
    dice_e, _ = evaluate(b.net, np.stack(pics), np.stack(heats), np.stack(labs), emb=np.stack(embs))
    dice_n, _ = evaluate(load_refine(tmp_path / "n.pt").net, np.stack(pics), np.stack(heats), np.stack(labs))
    assert dice_e[0] > 0.8 and dice_e[0] > dice_n[0] + 0.1
    x = refine_inputs(torch.rand(1, 64, 64), torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="reads the image embedding"):
        b.net(x)
    p = b.probabilities(torch.rand(1, 64, 64), torch.randn(1, 1, 16, 16), torch.randn(1, 4, 16, 16))
    assert p.shape == (1, 1, 64, 64)
