"""Adaptive slice sampling of volumes in text-prompted segmentation (``TextConfig.slice_sampling``).

Stub network (see test_findings_head): the "embedding" is the picture, the head's heat is where the
picture is bright, the decoder fills the box where it is bright. The stub counts the slices it encodes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medground.io.image import MedImage
from medground.segment.text import TextConfig, _coarse_step, _fill_skipped, segment_text
from tests.segment.test_findings_head import ORGANS, AbsentHead, BrightHead, StubSAM, bundle


class CountingSAM(StubSAM):
    def __init__(self):
        self.encoded = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.encoded += int(x.shape[0])
        return super().encode(x)


def ellipsoid_volume(Z: int = 60, dz: float = 2.0, z0: int = 14, z1: int = 45, affine=None):
    """64 x 64 x Z 'CT' with a bright ellipsoid on slices z0..z1 whose radius changes with z."""
    data = np.full((64, 64, Z), -100.0, dtype=np.float32)
    x, y = np.mgrid[:64, :64]
    zc, half = (z0 + z1) / 2, (z1 - z0) / 2 + 0.5
    for z in range(z0, min(z1, Z - 1) + 1):
        r = 22 * np.sqrt(max(0.0, 1 - ((z - zc) / half) ** 2)) + 3
        data[:, :, z][(x - 30) ** 2 + (y - 34) ** 2 <= r * r] = 200.0
    aff = np.diag([-1.0, -1.0, dz, 1.0]) if affine is None else affine
    return MedImage(data, aff, 3, "CT", True, source_format="nifti"), data > 0


def organ_head():
    return bundle(BrightHead(), ORGANS, "organ-stub")


def dice(a, b):
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_adaptive_encodes_fewer_slices_and_matches_all():
    # head_region_gate=None here and below: the image classifier takes a lone bright ellipsoid for a head
    img, ref = ellipsoid_volume()
    sam_all, sam_ad = CountingSAM(), CountingSAM()
    full, ex_all = segment_text(img, ["liver"], model=sam_all, grounding=organ_head(), findings=None,
                                cfg=TextConfig(slice_sampling="all", head_region_gate=None))
    ad, ex_ad = segment_text(img, ["liver"], model=sam_ad, grounding=organ_head(), findings=None,
                             cfg=TextConfig(sparse_edge_mm=0.0, head_region_gate=None))
    assert sam_all.encoded == 60 and ex_all["slice_sampling"] == {"mode": "all", "slices": 60,
                                                                     "slices_encoded": 60, "first_step": 1}
    assert ex_ad["slice_sampling"]["mode"] == "adaptive" and ex_ad["slice_sampling"]["first_step"] == 8
    assert sam_ad.encoded == ex_ad["slice_sampling"]["slices_encoded"] < 40
    zs_full = np.where(full[0].mask.any(axis=(0, 1)))[0]
    zs_ad = np.where(ad[0].mask.any(axis=(0, 1)))[0]
    # with sparse_edge_mm=0 the z extent is found to the slice: presence changes are refined to neighbours
    assert (zs_ad[0], zs_ad[-1]) == (zs_full[0], zs_full[-1]) == (14, 45)
    assert dice(ad[0].mask, full[0].mask) > 0.97
    assert dice(ad[0].mask, ref) > 0.9


def test_default_finds_the_extent_within_the_edge_gap():
    img, ref = ellipsoid_volume()
    sam = CountingSAM()
    res, ex = segment_text(img, ["liver"], model=sam, grounding=organ_head(), findings=None,
                           cfg=TextConfig(head_region_gate=None))
    zs = np.where(res[0].mask.any(axis=(0, 1)))[0]
    assert abs(zs[0] - 14) <= 4 and abs(zs[-1] - 45) <= 4  # sparse_edge_mm 10 at 2 mm: 4 slices at most
    assert sam.encoded == ex["slice_sampling"]["slices_encoded"] < 30
    assert dice(res[0].mask, ref) > 0.9


def test_inside_a_structure_encoded_slices_are_at_most_sparse_gap_apart(monkeypatch):
    from medground.segment.predictor import SlicePredictor

    img, _ = ellipsoid_volume()
    seen = []
    orig = SlicePredictor.prepare

    def prepare(self, zs):
        seen.extend(int(z) for z in zs)
        return orig(self, zs)

    monkeypatch.setattr(SlicePredictor, "prepare", prepare)
    segment_text(img, ["liver"], model=CountingSAM(), grounding=organ_head(), findings=None)
    inside = sorted(z for z in set(seen) if 14 <= z <= 45)
    assert max(np.diff(inside)) <= 4  # sparse_gap_mm 10 at 2 mm slices: a step of at most 4 slices


def test_where_everything_is_absent_only_the_coarse_slices_are_encoded():
    img, _ = ellipsoid_volume(Z=64)
    sam = CountingSAM()
    res, ex = segment_text(img, ["liver"], model=sam, grounding=bundle(AbsentHead(), ORGANS, "absent"),
                           findings=None)
    assert not res[0].info["present"]
    assert sam.encoded == len(set(range(0, 64, 8)) | {63}) == ex["slice_sampling"]["slices_encoded"]


@pytest.mark.parametrize("dz,step,inner", [(2.0, 8, 4), (1.0, 16, 8), (3.0, 4, 2), (5.0, 4, 2), (12.0, 1, 1),
                                           (0.5, 16, 16)])
def test_first_step_from_slice_spacing(dz, step, inner):
    img, _ = ellipsoid_volume(Z=40, dz=dz, z0=5, z1=20)
    assert _coarse_step(img, TextConfig()) == step  # gaps <= 20 mm where nothing is found
    assert _coarse_step(img, TextConfig(), gap_mm=10.0) == inner  # <= 10 mm inside a structure


def test_sampling_falls_back_to_every_slice():
    img, _ = ellipsoid_volume(Z=40)
    assert _coarse_step(img, TextConfig(slice_sampling="all")) == 1
    assert _coarse_step(img, TextConfig(), findings_used=True) == 1  # lesions can be shorter than a step
    small, _ = ellipsoid_volume(Z=20, z0=3, z1=12)
    assert _coarse_step(small, TextConfig()) == 1
    noaff, _ = ellipsoid_volume(Z=40, affine=np.eye(4))  # no trusted spacing / orientation
    assert _coarse_step(noaff, TextConfig()) == 1
    with pytest.raises(ValueError):
        _coarse_step(img, TextConfig(slice_sampling="sometimes"))


def test_shape_interpolation_between_encoded_slices():
    x, y = np.mgrid[:80, :80]
    vol = np.zeros((80, 80, 5), bool)
    vol[:, :, 0] = (x - 40) ** 2 + (y - 40) ** 2 <= 10 ** 2
    vol[:, :, 4] = (x - 40) ** 2 + (y - 40) ** 2 <= 20 ** 2
    encoded = np.array([True, False, False, False, True])
    _fill_skipped(vol, [0, 1, 2, 3, 4], encoded)
    radii = [np.sqrt(vol[:, :, z].sum() / np.pi) for z in range(5)]
    assert radii[0] < radii[1] < radii[2] < radii[3] < radii[4]
    assert abs(radii[2] - 15) < 1.0
    # one empty side: the shape shrinks towards it; nothing where both sides are empty
    vol2 = vol.copy()
    vol2[:, :, 1:] = False
    _fill_skipped(vol2, [0, 1, 2, 3, 4], encoded)
    areas = vol2.sum(axis=(0, 1))
    assert areas[0] > areas[1] > areas[2] > areas[3] and not vol2[:, :, 4].any()
    assert vol2[:, :, 1:].any(axis=2)[~vol2[:, :, 0]].sum() == 0  # inside the present side's mask
    vol3 = np.zeros_like(vol)
    _fill_skipped(vol3, [0, 1, 2, 3, 4], encoded)
    assert not vol3.any()
