"""A structure drawn over far less than the shortest extent its training references showed whole is reported
absent (``TextConfig.min_extent``), unless it may be cut by the volume's ends. Stub network (test_slice_sampling):
the head sees 'liver' wherever the picture is bright."""
from __future__ import annotations

import numpy as np

from medground.ontology import anatomy_extents
from medground.segment.text import TextConfig, _too_short, segment_text
from tests.segment.test_slice_sampling import StubSAM, ellipsoid_volume, organ_head


def test_extents_come_from_complete_training_structures():
    ext = anatomy_extents()
    assert ext["liver"] > 100 and ext["kidney_left"] > 40 and ext["adrenal_gland_left"] < ext["kidney_left"]
    assert "lung" not in ext  # never seen whole in a training volume: no rule for it


def _run(img, cfg):
    results, _ = segment_text(img, ["liver"], model=StubSAM(), grounding=organ_head(), findings=None, cfg=cfg)
    return results[0]


def test_a_short_blob_in_the_middle_of_a_long_volume_is_absent():
    # 6 slices x 2 mm = 12 mm of "liver" in the middle of a 160 mm volume: far below half the shortest liver
    img, truth = ellipsoid_volume(Z=80, dz=2.0, z0=37, z1=42)
    r = _run(img, TextConfig(slice_sampling="all", min_extent=0.5))
    assert not r.mask.any() and not r.info["present"]
    term = r.info["terms"][0]
    assert not term["present"] and "drawn over" in term["absent_because"]
    off = _run(img, TextConfig(slice_sampling="all", min_extent=None))
    assert off.mask.any() and off.info["present"]  # the rule, not the head, removed it
    assert "absent_because" not in off.info["terms"][0]


def test_a_structure_near_the_volume_end_is_kept_however_short():
    img, truth = ellipsoid_volume(Z=80, dz=2.0, z0=72, z1=77)  # may continue past the last slice
    r = _run(img, TextConfig(slice_sampling="all", min_extent=0.5))
    assert r.mask.any() and r.info["present"]


def test_rule_needs_a_trusted_spacing_and_a_known_term():
    vol = np.zeros((8, 8, 60), bool)
    vol[2:5, 2:5, 28:31] = True
    img, _ = ellipsoid_volume(Z=60, dz=2.0)
    assert _too_short(vol, "liver", img, TextConfig(min_extent=0.5)) == {"drawn_mm": 6.0,
                                                                        "shortest_seen_mm": anatomy_extents()["liver"]}
    assert _too_short(vol, "lung", img, TextConfig(min_extent=0.5)) is None  # no known extent
    # on by default at a tenth of the shortest whole extent: 6 mm of liver (141 mm) is too short, 18 mm is not
    assert _too_short(vol, "liver", img, TextConfig())["drawn_mm"] == 6.0
    longer = np.zeros_like(vol)
    longer[2:5, 2:5, 26:35] = True
    assert _too_short(longer, "liver", img, TextConfig()) is None
    assert _too_short(vol, "liver", img, TextConfig(min_extent=None)) is None  # off
    noaff, _ = ellipsoid_volume(Z=60, affine=np.eye(4))  # no trusted spacing
    assert _too_short(vol, "liver", noaff, TextConfig(min_extent=0.5)) is None
