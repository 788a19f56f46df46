"""The findings grounding head (lesions, tumours, polyps, skin lesions) and its routing in segment_text.

The end-to-end tests use a stub LiteMedSAM (its "embedding" is the picture itself, its decoder fills
the box where the picture is bright) and stub heads, so they are fast and check the plumbing: which
head a term goes to, presence gating per slice, masks back in the input's grid.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from medground.io.image import MedImage
from medground.models.grounding import FINDINGS_WEIGHTS, GroundingBundle
from medground.segment.text import route_terms, segment_text


# --------------------------------------------------------------------------- stubs
class StubSAM:
    """encode: channel 0 of the embedding = the picture pooled to 64 x 64; decode: the box filled
    where that picture is bright (logits +-10), predicted IoU 0.9."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.zeros((x.shape[0], 256, 64, 64))
        e[:, 0] = F.avg_pool2d(x[:, :1], 4)[:, 0]
        return e

    def decode(self, emb, boxes=None, points=None, mask_input=None, multimask=False):
        n = emb.shape[0]
        bright = F.interpolate(emb[:, :1], size=(256, 256), mode="nearest")[:, 0] > 0.5
        logits = torch.full((n, 1, 256, 256), -10.0)
        for i in range(n):
            x0, y0, x1, y1 = [int(round(float(v))) for v in boxes[i]]
            inside = torch.zeros((256, 256), dtype=torch.bool)
            inside[max(0, y0 - 2): y1 + 3, max(0, x0 - 2): x1 + 3] = True
            logits[i, 0][inside & bright[i]] = 10.0
        return logits, torch.full((n, 1), 0.9)


class BrightHead(nn.Module):
    """Heat where the embedding's channel 0 is bright; present when anything is bright (findings stub)."""

    grid = 32

    def forward(self, emb, text):
        g = F.adaptive_avg_pool2d(emb[:, :1], self.grid)  # (B, 1, G, G)
        heat = (g - 0.5) * 40
        pres = (g.flatten(1).amax(1, keepdim=True) - 0.5) * 40  # (B, 1)
        t = text.shape[0]
        return heat.expand(-1, t, -1, -1), pres.expand(-1, t)


class AbsentHead(nn.Module):
    """Never present (organ stub: a synthetic square is no organ)."""

    grid = 32

    def forward(self, emb, text):
        b, t = emb.shape[0], text.shape[0]
        return torch.full((b, t, self.grid, self.grid), -10.0), torch.full((b, t), -10.0)


def bundle(head, terms, name):
    obj = {"term_ids": list(terms), "term_emb": torch.randn(len(terms), 384), "card": {"name": name}}
    return GroundingBundle(head, obj, name=name)


ORGANS = ["liver", "spleen", "kidney_left", "kidney_right", "lung"]
FINDINGS = ["lesion", "tumor", "brain_tumor", "polyp", "colorectal_polyp", "skin_lesion", "liver"]


@pytest.fixture
def heads():
    return bundle(AbsentHead(), ORGANS, "organ-stub"), bundle(BrightHead(), FINDINGS, "findings-stub")


def synthetic_volume() -> tuple[MedImage, np.ndarray]:
    """48 x 40 x 5 'CT' with a bright 10 x 8 x 2 block on slices 1-2 (the lesion)."""
    data = np.full((48, 40, 5), -100.0, dtype=np.float32)
    ref = np.zeros(data.shape, bool)
    ref[20:30, 12:20, 1:3] = True
    data[ref] = 200.0
    aff = np.diag([-1.0, -1.0, 3.0, 1.0])  # LPS voxel order, as the converted volumes
    img = MedImage(data, aff, 3, "CT", True, source_format="nifti")
    return img, ref


# --------------------------------------------------------------------------- routing
def test_route_terms(heads):
    organs, findings = heads
    r = route_terms(["lesion", "liver", "polyp", "cyst", "liver"], organs, findings)
    assert r == {"lesion": "findings", "liver": "organs", "polyp": "findings", "cyst": "organs"}
    # without a findings head everything stays with the organ head (the behaviour before it existed)
    assert set(route_terms(["lesion", "liver"], organs, None).values()) == {"organs"}


def test_end_to_end_3d_routes_and_gates(heads):
    organs, findings = heads
    img, ref = synthetic_volume()
    res, extra = segment_text(img, ["lesion", "liver"], model=StubSAM(), grounding=organs, findings=findings)
    lesion, liver = res
    assert lesion.mask.shape == img.shape and lesion.mask.dtype == bool
    assert lesion.info["present"] and lesion.info["terms"][0]["grounding_head"] == "findings-stub"
    # presence per slice: only the slices with the block
    assert list(np.where(lesion.mask.any(axis=(0, 1)))[0]) == [1, 2]
    d = 2 * (lesion.mask & ref).sum() / (lesion.mask.sum() + ref.sum())
    assert d > 0.8
    # an organ term goes to the organ head (absent here), even though the findings stub lists it too
    assert not liver.info["present"] and not liver.mask.any()
    assert liver.info["terms"][0]["grounding_head"] == "organ-stub"
    assert extra["grounding_model"] == "organ-stub + findings-stub"


def test_end_to_end_without_findings_head_keeps_old_behaviour(heads):
    organs, _ = heads
    img, _ = synthetic_volume()
    res, extra = segment_text(img, ["lesion"], model=StubSAM(), grounding=organs, findings=None)
    assert not res[0].info["present"] and extra["grounding_model"] == "organ-stub"
    assert res[0].info["terms"][0]["grounding_head"] == "organ-stub"


def test_end_to_end_2d_picture_and_absent(heads):
    organs, findings = heads
    pic = np.zeros((40, 30, 1, 3), np.uint8)  # (X, Y, 1, RGB): a dark frame with a pink polyp
    pic[10:18, 5:15, 0] = (230, 120, 140)
    img = MedImage(pic, np.eye(4), 2, "ES", False, photometric="RGB", source_format="png")
    res, _ = segment_text(img, ["polyp"], model=StubSAM(), grounding=organs, findings=findings)
    assert res[0].info["present"] and res[0].mask.shape == (40, 30, 1)
    assert res[0].mask[10:18, 5:15].mean() > 0.8 and res[0].mask.sum() < 2 * 80
    empty = MedImage(np.full((40, 30, 1, 3), 20, np.uint8), np.eye(4), 2, "ES", False, photometric="RGB",
                     source_format="png")
    empty.data[0, 0, 0] = 25  # not constant
    res, _ = segment_text(empty, ["polyp"], model=StubSAM(), grounding=organs, findings=findings)
    assert not res[0].info["present"] and not res[0].mask.any()


def test_unknown_prompt_is_still_an_input_error(heads):
    from medground import MedGroundInputError

    organs, findings = heads
    img, _ = synthetic_volume()
    with pytest.raises(MedGroundInputError):
        segment_text(img, ["xyzzy plugh"], model=StubSAM(), grounding=organs, findings=findings)


# --------------------------------------------------------------------------- shipped weights
def test_shipped_findings_weights_load_and_run():
    from medground.models.grounding import load_findings, trained_vocabulary

    assert FINDINGS_WEIGHTS.exists(), "grounding_findings.pt is not packaged"
    b = load_findings()
    for t in ("lesion", "brain_tumor", "colorectal_polyp", "polyp", "skin_lesion"):
        assert t in b.term_ids
    card = json.loads(FINDINGS_WEIGHTS.with_suffix(".card.json").read_text())
    assert card["terms"] == b.term_ids and set(card["licences"]) >= {"ct-lesions", "endoscopy-kvasir"}
    assert "val_scores_grid_level" in card and card["datasets"]["ct-lesions"]["val"] > 0
    heat, pres = b.head(torch.zeros(2, 256, 64, 64), b.term_emb[:3])
    assert heat.shape == (2, 3, b.head.grid, b.head.grid) and pres.shape == (2, 3)
    assert torch.isfinite(heat).all()
    voc = trained_vocabulary()
    assert voc["lesion"] == "findings" and voc.get("liver") == "organs"
    # the packaged heads split the vocabulary: the organ head keeps every term it was trained on
    from medground.models.grounding import load_grounding

    r = route_terms(["liver", "lesion", "skin_lesion"], load_grounding(), b)
    assert r == {"liver": "organs", "lesion": "findings", "skin_lesion": "findings"}


def test_shipped_findings_calibration_covers_the_picture_findings_only():
    """The packaged findings head draws polyps and skin lesions with an 8-pixel box margin (chosen on the
    validation pictures, benchmarks/tune_findings.py); "lesion", shared with CT and MR volumes, keeps the default."""
    from medground.models.grounding import load_findings
    from medground.segment.text import TextConfig, box_margin, mask_mode

    b = load_findings()
    cfg = TextConfig()
    for t in ("polyp", "colorectal_polyp", "skin_lesion"):
        assert box_margin(t, b, cfg) == 8.0 and mask_mode(t, b, cfg) == "decoder"
    for t in ("lesion", "brain_tumor", "tumor"):
        assert box_margin(t, b, cfg) == 0.0 and t not in b.calibration
    assert box_margin("polyp", b, TextConfig(box_margin=0)) == 0.0  # a user's setting overrides it
    card = json.loads(FINDINGS_WEIGHTS.with_suffix(".card.json").read_text())
    assert "tune_findings.py" in card["calibration_chosen"]
    assert card["heldout_scores"]["endoscopy-kvasir"]["split"] == "test"


# --------------------------------------------------------------------------- mask sources
class NoDecoderSAM(StubSAM):
    def decode(self, *a, **k):  # the heat mode must not need the decoder
        raise AssertionError("decoder called")


def test_mask_mode_resolution(heads):
    from medground.segment.text import TextConfig, mask_mode

    organs, _ = heads
    assert mask_mode("liver", organs, TextConfig()) == "decoder"  # a checkpoint that says nothing
    organs.calibration = {"liver": {"mask_from": "heat", "presence_threshold": 0.3}}
    assert mask_mode("liver", organs, TextConfig()) == "heat"
    assert mask_mode("spleen", organs, TextConfig()) == "decoder"
    assert mask_mode("liver", organs, TextConfig(mask_from="blend")) == "blend"
    assert mask_mode("liver", organs, TextConfig(mask_from={"liver": "gated"})) == "gated"
    assert mask_mode("liver", organs, TextConfig(mask_from="refine_blend")) == "refine_blend"
    with pytest.raises(ValueError):
        mask_mode("liver", organs, TextConfig(mask_from="magic"))
    from medground.segment.text import presence_threshold

    assert presence_threshold("liver", organs, TextConfig()) == 0.3
    assert presence_threshold("spleen", organs, TextConfig()) == 0.5
    assert presence_threshold("liver", organs, TextConfig(presence_threshold=0.7)) == 0.7


@pytest.mark.parametrize("mode", ["heat", "blend", "gated", "decoder", "refine", "refine_blend"])  # refine*: no network covers the findings head: the decoder
def test_each_mask_source_draws_the_block(heads, mode):
    from medground.segment.text import TextConfig

    _, findings = heads
    img, ref = synthetic_volume()
    findings.calibration = {"lesion": {"mask_from": mode}}  # what a calibrated checkpoint carries
    sam = NoDecoderSAM() if mode == "heat" else StubSAM()
    res, _ = segment_text(img, ["lesion"], model=sam, grounding=findings, findings=None, cfg=TextConfig())
    m = res[0].mask
    assert res[0].info["present"]
    d = 2 * (m & ref).sum() / (m.sum() + ref.sum())
    assert d > 0.7, (mode, d)


def test_guided_refinement_moves_a_coarse_edge_towards_the_image_edge():
    from scipy.ndimage import shift, uniform_filter

    from medground.segment.text import guided_filter

    img = np.zeros((48, 48), np.float32)
    img[:, 20:] = 1  # the organ's true edge is at column 20
    coarse = np.clip(shift(uniform_filter(img, 9), (0, 3), order=1, mode="nearest"), 0, 1)  # blurred, 3 px off
    out = guided_filter(img, coarse, 4, 0.001)
    edge = lambda a: int(np.argmax(a[10] > 0.5))  # noqa: E731
    assert edge(coarse) == 23 and edge(out) < edge(coarse)
    assert out[10, 20] - out[10, 19] > 3 * (coarse[10, 20] - coarse[10, 19])  # the step is at the image's edge
    flat = guided_filter(np.full((48, 48), 0.5, np.float32), coarse, 4, 0.001)  # no edges: plain smoothing
    assert abs(flat.mean() - coarse.mean()) < 0.02


def test_heat_refine_resolution(heads):
    from medground.segment.text import TextConfig, heat_refine

    organs, _ = heads
    organs.calibration = {"kidney_left": {"mask_from": "heat", "heat_refine": "guided"}}
    assert heat_refine("kidney_left", organs, TextConfig()) == "guided"  # calibrated
    assert heat_refine("liver", organs, TextConfig()) is None  # nothing calibrated
    assert heat_refine("kidney_left", organs, TextConfig(heat_refine=None)) is None  # the config wins
    assert heat_refine("liver", organs, TextConfig(heat_refine={"liver": "guided"})) == "guided"
    with pytest.raises(ValueError):
        heat_refine("liver", organs, TextConfig(heat_refine="sharpen"))


def test_guided_heat_still_draws_the_block(heads):
    organs, findings = heads
    img, ref = synthetic_volume()
    from medground.segment.text import TextConfig

    res, _ = segment_text(img, ["lesion"], model=StubSAM(), grounding=organs, findings=findings,
                          cfg=TextConfig(heat_refine="guided", mask_from="heat"))
    d = 2 * (res[0].mask & ref).sum() / (res[0].mask.sum() + ref.sum())
    assert d > 0.8


class AreaPresenceHead(BrightHead):
    """Heat where the embedding is bright; present only where the bright area is large (a small part of the
    structure gets a heat map but not the presence: what the organ head does with small or thin ends)."""

    def forward(self, emb, text):
        heat, _ = super().forward(emb, text)
        frac = (emb[:, :1] > 0.5).float().mean((1, 2, 3))[:, None]
        return heat, ((frac - 0.02) * 400).expand(-1, text.shape[0])


def test_refine_slices_run_or_volume(tmp_path, monkeypatch):
    """The refinement network draws on the term's presence run ("run") or, where the term is present at all, on
    every slice ("volume"): the small end the head does not call present comes back only with "volume"."""
    import medground.classify as classify_mod
    from medground.models.refine import RefineNet, save_refine
    from medground.segment.text import TextConfig, refine_slices

    monkeypatch.setattr(classify_mod, "classify", lambda image, **k: {"modality": "CT"})
    path = save_refine(RefineNet(1, (8, 8), residual=True), tmp_path / "refine_ct.pt", ["liver"],
                       {"name": "tiny-ct", "modality": "CT"})  # a residual net before training draws the heat
    organs = bundle(AreaPresenceHead(), ORGANS, "organ-stub")
    data = np.full((48, 40, 5), -100.0, dtype=np.float32)
    data[20:30, 12:20, 1] = 200.0  # large: present
    data[22:27, 14:18, 2] = 200.0  # small: heat, but no presence
    img = MedImage(data, np.diag([-1.0, -1.0, 3.0, 1.0]), 3, "CT", True, source_format="nifti")
    base = dict(mask_from={"liver": "refine"}, refine_weights=str(path))
    run, extra = segment_text(img, ["liver"], model=StubSAM(), grounding=organs, findings=None, cfg=TextConfig(**base))
    assert extra["mask_refinement"]["network"] == ["tiny-ct"]
    assert list(np.where(run[0].mask.any(axis=(0, 1)))[0]) == [1]
    vol, _ = segment_text(img, ["liver"], model=StubSAM(), grounding=organs, findings=None,
                          cfg=TextConfig(**base, refine_slices="volume"))
    assert list(np.where(vol[0].mask.any(axis=(0, 1)))[0]) == [1, 2]
    small = np.zeros(data.shape, bool)
    small[22:27, 14:18, 2] = True
    assert (vol[0].mask[:, :, 2] & small[:, :, 2]).sum() > 0.7 * small.sum()
    data[:] = -100.0
    data[22:24, 14:16, 3] = 200.0  # a speck with heat but present nowhere: "volume" draws nothing either
    none, _ = segment_text(MedImage(data, img.affine, 3, "CT", True, source_format="nifti"), ["liver"],
                           model=StubSAM(), grounding=organs, findings=None, cfg=TextConfig(**base, refine_slices="volume"))
    assert not none[0].mask.any() and not none[0].info["present"]
    organs.calibration = {"liver": {"refine_slices": "volume"}}
    assert refine_slices("liver", organs, TextConfig()) == "volume"
    assert refine_slices("spleen", organs, TextConfig()) == "run"
    with pytest.raises(ValueError):
        refine_slices("liver", organs, TextConfig(refine_slices="everywhere"))


def test_an_untrained_part_named_in_a_trained_whole_is_drawn_as_that_whole():
    """"portal vein" (no model trained on it) is drawn as the trained "portal vein and splenic vein", and findings say
    so; "left atrium" is not answered with the whole heart (a small share of it): it stays a flagged zero-shot answer."""
    from medground.ontology import Ontology
    from medground.segment.text import use_containing

    organs = bundle(BrightHead(), ["liver", "heart", "portal_vein_and_splenic_vein"], "organ-stub")
    onto = Ontology.default()
    resolved = [onto.resolve(p) for p in ("portal vein", "left atrium", "liver")]
    out, stand = use_containing(resolved, organs, None, onto)
    assert [r.ids for r in out] == [["portal_vein_and_splenic_vein"], ["left_atrium"], ["liver"]]
    assert stand[0]["portal_vein_and_splenic_vein"].id == "portal_vein" and stand[1] == {} and stand[2] == {}
    img, ref = synthetic_volume()
    res, _ = segment_text(img, ["portal vein", "left atrium"], model=StubSAM(), grounding=organs, findings=None)
    pv, la = res
    assert pv.info["terms"][0]["id"] == "portal_vein_and_splenic_vein"
    assert pv.info["terms"][0]["stands_in_for"] == {"id": "portal_vein", "name": "portal vein"}
    assert "the trained structure that contains it" in pv.info["warning"] and "trained" not in pv.info["terms"][0]
    assert pv.info["present"] and 2 * (pv.mask & ref).sum() / (pv.mask.sum() + ref.sum()) > 0.7
    assert la.info["terms"][0]["trained"] is False and "zero-shot" in la.info["warning"]
