"""Orientation before the text-prompted model: header geometry when the header has one; the orientation
classifier for pictures and for volumes whose header carries no orientation (identity affine)."""
from __future__ import annotations

import numpy as np

from medground.io.image import MedImage
from medground.models.orientation import NAMES
from medground.segment.text import TextConfig, canonicalize, orientation_unknown


class StubNet:
    """Says the picture it sees is transform ``k`` of a canonical one; records what it was shown."""

    def __init__(self, k: int, p: float = 0.9):
        self.k, self.p, self.seen = k, p, []

    def predict(self, thumb):
        self.seen.append(thumb)
        probs = np.full(8, (1 - self.p) / 7)
        probs[self.k] = self.p
        return probs


def _volume(affine, meta=None):
    rng = np.random.default_rng(0)
    data = rng.random((20, 12, 6)).astype(np.float32)
    return MedImage(data, affine, 3, "MR", True, "MONOCHROME2", None, "nifti", dict(meta or {}))


def test_identity_affine_means_no_orientation():
    assert orientation_unknown(_volume(np.eye(4)))
    assert orientation_unknown(_volume(np.diag([-1.7, -1.7, 2.5, 1.0]), {"qform_code": 0, "sform_code": 0}))
    assert not orientation_unknown(_volume(np.diag([-1.7, -1.7, 2.5, 1.0]), {"qform_code": 1, "sform_code": 1}))


def test_volume_without_orientation_uses_the_classifier_and_maps_back():
    img = _volume(np.eye(4))
    net = StubNet(NAMES.index("flip_lr"))
    c = canonicalize(img, net)
    assert c.info["method"] == "orientation classifier" and "reason" in c.info
    assert c.info["transform"] == "flip_lr" and c.info["slices_used"] >= 3
    # display of slice z is data[:, :, z].T; a left-right flip of the display reverses X
    assert np.array_equal(c.image.data, img.data[::-1])
    assert np.array_equal(c.back(c.image.data), img.data)
    # a transpose changes the in-plane shape and still maps back exactly
    c2 = canonicalize(img, StubNet(NAMES.index("rot90")))
    assert c2.image.data.shape == (12, 20, 6)
    mask = np.zeros(c2.image.data.shape, bool)
    mask[2:5, 7:9, 3] = True
    back = c2.back(mask)
    assert back.shape == img.data.shape and back.sum() == mask.sum()


def test_classifier_unsure_or_identity_keeps_the_volume_as_stored():
    img = _volume(np.eye(4))
    for net in (StubNet(0), StubNet(NAMES.index("rot180"), p=0.3)):
        c = canonicalize(img, net)
        assert c.info["transform"] == "identity"
        assert np.array_equal(c.image.data, img.data)


def test_volume_with_header_orientation_is_not_mirrored_left_right_by_the_classifier():
    img = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), {"qform_code": 1, "sform_code": 1})  # RAS
    for net in (StubNet(NAMES.index("flip_lr")), StubNet(0), StubNet(NAMES.index("flip_ud"), p=0.5), None):
        c = canonicalize(img, net)
        assert c.info["method"] == "header geometry" and c.info["from"] == "RAS"
        assert "transform_after_header" not in c.info
        assert np.array_equal(c.image.data, img.data[::-1, ::-1])  # RAS -> LPS
        assert np.array_equal(c.back(c.image.data), img.data)
    assert canonicalize(img, StubNet(NAMES.index("flip_lr"))).info["anatomy_check"]["result"].startswith("consistent")


class SplitNet(StubNet):
    """Unsure between a view and its left-right mirror (rot180 / flip_ud: upside down either way)."""

    def predict(self, thumb):
        self.seen.append(thumb)
        probs = np.full(8, 0.01)
        probs[NAMES.index("rot180")] = probs[NAMES.index("flip_ud")] = 0.47
        return probs


def test_upside_down_split_between_mirrors_keeps_the_headers_left_and_right():
    img = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), {"qform_code": 1, "sform_code": 1})  # RAS
    c = canonicalize(img, SplitNet(0))
    assert c.info["transform_after_header"] == "flip_ud"  # rot180 would also mirror left and right
    assert np.array_equal(c.back(c.image.data), img.data)


def test_header_contradicted_by_anatomy_is_overruled_and_masks_map_back():
    """Slices restacked under a borrowed affine (spine at the top after the header's reorientation)."""
    img = _volume(np.diag([1.0, 1.0, 2.0, 1.0]), {"qform_code": 1, "sform_code": 1})  # RAS
    net = StubNet(NAMES.index("flip_ud"))
    c = canonicalize(img, net)
    assert net.seen and c.info["method"] == "header geometry" and c.info["transform_after_header"] == "flip_ud"
    assert c.info["anatomy_check"]["result"].startswith("contradicts the header")
    lps = img.data[::-1, ::-1]
    assert np.array_equal(c.image.data, lps[:, ::-1])  # flip_ud: the rows (Y) reversed
    assert np.array_equal(c.back(c.image.data), img.data)
    off = TextConfig(header_check_min_prob=None)
    assert np.array_equal(canonicalize(img, net, off).image.data, lps)


def test_classifier_sees_a_hounsfield_ct_through_its_soft_tissue_window():
    """Thumbnails are scaled as the network's pictures are: a CT in HU through the soft-tissue window, not raw
    min-max (which leaves soft tissue a flat grey the classifier was never shown)."""
    from medground.io.intensity import to_unit_range
    from medground.train.cache import thumbnail

    rng = np.random.default_rng(1)
    data = rng.normal(40, 60, (40, 32, 8)).astype(np.float32)  # soft tissue
    data[:4] = -1000.0  # air
    data[-3:, :, :] = 1800.0  # dense bone
    img = MedImage(data, np.diag([-0.8, -0.8, 2.0, 1.0]), 3, "CT", True, "MONOCHROME2", None, "nifti",
                   {"qform_code": 1, "sform_code": 1})
    net = StubNet(0, 0.99)
    canonicalize(img, net)
    assert net.seen
    z = 8 // 4  # the first slice the check reads (middle half of the volume)
    want = thumbnail(to_unit_range(img, z=z).T)
    raw = thumbnail(data[:, :, z].T)
    assert np.array_equal(net.seen[0], want)
    assert not np.array_equal(net.seen[0], raw)


def test_real_hu_ct_series_agrees_with_its_header(shared_data):
    """The dcmqi 3-slice CT series (HU, DICOM): the classifier must recognise the header's view (with raw min-max
    thumbnails it gave that view 0.04 and the upside-down one 0.65, a step from being overruled)."""
    import medground
    from medground.models.grounding import load_grounding

    c = canonicalize(medground.load(shared_data / "ct-3slice"), load_grounding().orientation)
    probs = c.info["anatomy_check"]["probabilities"]
    assert probs["identity"] + probs["flip_lr"] > 0.9, probs
    assert "transform_after_header" not in c.info


def test_forward_brings_an_input_grid_array_to_the_canonical_frame_on_every_route():
    """``Canonical.forward`` (a label map of the input -> the canonical frame, as training slices need) is the inverse
    of ``back`` and matches the image's own canonicalisation: classifier-turned, header-reoriented, header
    overruled by anatomy, and as stored."""
    header = {"qform_code": 1, "sform_code": 1}
    cases = [
        (_volume(np.eye(4)), StubNet(NAMES.index("rot90"))),  # no orientation: the classifier turns it
        (_volume(np.diag([1.5, -1.5, 3.0, 1.0]), header), None),  # header geometry
        (_volume(np.diag([-1.5, -1.5, 3.0, 1.0]), header), StubNet(NAMES.index("flip_ud"), 0.95)),  # overruled
        (_volume(np.eye(4)), StubNet(0)),  # as stored
    ]
    routes = []
    for img, net in cases:
        c = canonicalize(img, net)
        routes.append(c.info.get("transform_after_header") or c.info.get("transform") or c.info["method"])
        assert np.array_equal(c.forward(img.data), c.image.data), c.info
        assert np.array_equal(c.back(c.forward(img.data)), img.data), c.info
    assert routes[0] != "identity" and routes[1:] == ["header geometry", "flip_ud", "identity"]
