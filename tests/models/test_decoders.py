"""Fine-tuned LiteMedSAM decoders: checkpoint round trip, sharing of the image encoder, routing by modality, and a
short training run that must fit what it is shown."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medground.io.image import MedGroundInputError, MedImage


@pytest.fixture(scope="module")
def litemedsam():
    from medground.models import load_model

    return load_model("litemedsam")


def test_checkpoint_round_trip_shares_the_encoder(litemedsam, tmp_path):
    from medground.models.decoders import apply_decoder, read_decoder, save_decoder

    p = save_decoder(litemedsam, tmp_path / "dec.pt", {"name": "same", "terms": ["liver"]})
    assert json.loads(p.with_suffix(".card.json").read_text())["name"] == "same"
    assert p.stat().st_size < 12e6  # the two decoding parts only, half precision
    same = apply_decoder(litemedsam, p)
    assert same.image_encoder is litemedsam.image_encoder and same.mask_decoder is not litemedsam.mask_decoder
    emb = torch.randn(2, 256, 64, 64)
    boxes = torch.tensor([[40.0, 50, 120, 140], [10, 10, 60, 200]])
    with torch.inference_mode():
        a, _ = litemedsam.decode(emb, boxes=boxes)
        b, _ = same.decode(emb, boxes=boxes)
    assert ((a > 0) == (b > 0)).float().mean() > 0.999  # half-precision copy of the same weights

    # another decoder changes the masks and leaves the original model alone
    state, _ = read_decoder(p)
    torch.manual_seed(0)
    other = {k: v + 0.05 * torch.randn_like(v) if k.startswith("mask_decoder.output_hyper") else v for k, v in state.items()}
    torch.save({"format": "medground-decoder-v1", "card": {"name": "other"}, "state_dict": other}, tmp_path / "o.pt")
    moved = apply_decoder(litemedsam, tmp_path / "o.pt")
    with torch.inference_mode():
        c, _ = moved.decode(emb, boxes=boxes)
        a2, _ = litemedsam.decode(emb, boxes=boxes)
    assert not torch.allclose(a, c, atol=1e-3) and torch.equal(a, a2) and moved.name == "other"


def test_bad_decoder_files_are_clear_errors(litemedsam, tmp_path):
    from medground.models.decoders import apply_decoder

    with pytest.raises(MedGroundInputError, match="no decoder weights"):
        apply_decoder(litemedsam, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MedGroundInputError, match="could not read"):
        apply_decoder(litemedsam, tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(MedGroundInputError, match="not a medground decoder"):
        apply_decoder(litemedsam, tmp_path / "other.pt")


def test_ct_decoder_is_used_for_its_terms_on_ct_only(litemedsam, tmp_path, monkeypatch):
    import medground.classify as C
    from medground.models.decoders import save_decoder
    from medground.segment.predictor import SlicePredictor
    from medground.segment.text import TextConfig, _domain_decoders

    p = save_decoder(litemedsam, tmp_path / "ct.pt", {"name": "ct-dec", "terms": ["liver", "spleen"]})
    img = MedImage.from_array(np.arange(32 * 32 * 4, dtype=np.float32).reshape(32, 32, 4), np.eye(4), modality="CT")
    pred = SlicePredictor(img, model=litemedsam)
    box = {0: ([np.array([1, 1, 9, 9])], None, None)}
    plans = {"liver": {"hname": "organs", "mode": "decoder", "boxes": box},
             "stomach": {"hname": "organs", "mode": "decoder", "boxes": box},  # not one of its terms
             "spleen": {"hname": "organs", "mode": "heat", "boxes": box}}  # drawn from the heat: no decoder
    cfg = TextConfig(ct_decoder=str(p))
    monkeypatch.setattr(C, "classify", lambda image: {"modality": "CT", "modality_confidence": 0.9})
    extra: dict = {}
    dec = _domain_decoders(plans, img, pred, cfg, extra)
    assert set(dec) == {"liver"} and dec["liver"].name == "ct-dec"
    assert extra["fine_tuned_decoder"] == {"decoder": "ct-dec", "terms": ["liver"]}
    monkeypatch.setattr(C, "classify", lambda image: {"modality": "MR", "modality_confidence": 0.9})
    extra = {}
    assert _domain_decoders(plans, img, pred, cfg, extra) == {}
    assert "classified as MR" in extra["fine_tuned_decoder"]["not_used_because"]
    monkeypatch.setattr(C, "classify", lambda image: {"modality": "CT", "modality_confidence": 0.55})  # unsure
    extra = {}
    assert _domain_decoders(plans, img, pred, cfg, extra) == {}
    assert "probability 0.55 only" in extra["fine_tuned_decoder"]["not_used_because"]
    assert _domain_decoders(plans, img, pred, TextConfig(ct_decoder=None), {}) == {}


def test_training_fits_what_it_is_shown(tmp_path):
    """Two steps of the training loop's parts on one synthetic slice at a high learning rate must lower its loss
    (the gradient reaches the decoder through the box prompt and the Dice/BCE/IoU losses)."""
    from medground.models import load_model
    from medground.train.decoder import SliceSet, _prompt, _samples, _valid, losses

    rng = np.random.default_rng(0)
    lab = np.zeros((1, 256, 256), np.uint8)
    lab[0, 80:140, 60:150] = 1
    lab[0, 30:40, 200:230] = 2
    np.save(tmp_path / "c.emb.npy", rng.normal(size=(1, 256, 64, 64)).astype(np.float16))
    np.savez_compressed(tmp_path / "c.npz", lab=lab, zs=np.array([0]), terms=np.array(["a", "b"]),
                        hw=np.array([256, 256]))
    data = SliceSet(tmp_path)
    pairs, w = _samples(data)
    assert sorted(pairs) == [(0, 1), (0, 2)] and abs(w.sum() - 1) < 1e-9
    box, target = _prompt(data, 0, 1, rng)
    assert target.sum() == 60 * 90 and box[0] <= 75 and box[2] >= 135  # jittered around the structure
    model = load_model("litemedsam", cache=False)  # trained in place: not the shared copy
    params = [p for n, p in model.named_parameters() if n.startswith("mask_decoder")]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=1e-3)
    emb = data.embedding(0)[None]
    bx = torch.tensor([[60.0, 80, 149, 139]])
    tgt = torch.from_numpy(lab[:1] == 1)
    first = None
    for _ in range(4):
        logits, iou = model.decode(emb, boxes=bx)
        loss, _ = losses(logits, iou, tgt, _valid([(256, 256)]))
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, iou = model.decode(emb, boxes=bx)
        last = float(losses(logits, iou, tgt, _valid([(256, 256)]))[0])
    assert last < 0.8 * first, (first, last)


def test_head_box_is_the_blob_touching_the_structure():
    """A head-box prompt: the heat blob that overlaps the reference (not a stray one), grown by the margin, clipped
    to the picture, with the reference pieces it touches as target; no blob on the structure -> None."""
    from medground.train.decoder import head_box

    ref = np.zeros((256, 256), bool)
    ref[100:140, 60:120] = True  # the structure
    ref[10:20, 10:20] = True  # a second piece far away, outside the head's box
    heat = np.full((32, 32), -8.0, np.float32)
    heat[13:17, 8:15] = 8.0  # a blob over most of the structure (grid cells of 8 pixels)
    heat[25:29, 25:29] = 8.0  # a stray blob elsewhere
    box, target = head_box(heat, ref, (256, 200), margin=5.0, rng=None)
    assert 50 <= box[0] <= 65 and 95 <= box[1] <= 105 and box[3] <= 140  # around the structure, not the stray blob
    assert box[2] <= 199  # clipped to the picture's width (200)
    assert target[120, 90] and not target[15, 15]  # the piece it touches only
    assert head_box(heat, np.zeros_like(ref), (256, 256), 5.0, None) is None
    far = np.zeros_like(ref)
    far[0:5, 250:255] = True
    assert head_box(heat, far, (256, 256), 5.0, None) is None
