"""TextConfig.extend_runs: a term's mask grows past the ends of its presence run while the decoder, prompted with
the previous slice's box, keeps drawing the same structure; it stops where the structure ends, leaks, changes grey
value or the head's presence is nil. A stand-in decoder draws the true structure inside the box it is given."""
from types import SimpleNamespace

import numpy as np

from medground.segment.text import TextConfig, _extend_ends


class TubeDecoder:
    """Draws, on slice z, the part of ``truth`` inside the box (as a perfect box-prompted decoder would)."""

    def __init__(self, truth: np.ndarray, grey: np.ndarray, iou: float = 0.9):
        self.truth, self._unit, self.iou, self.calls = truth, grey, iou, []

    def predict_many(self, z, boxes=None, model=None):
        self.calls.append(z)
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[0])
        m = np.zeros(self.truth.shape[:2], bool)
        m[x0:x1 + 1, y0:y1 + 1] = self.truth[x0:x1 + 1, y0:y1 + 1, z]
        return [SimpleNamespace(mask=m, iou=self.iou)]


def tube(z0=10, z1=30, shape=(48, 48, 40)):
    truth = np.zeros(shape, bool)
    truth[20:28, 20:28, z0:z1] = True
    grey = np.where(truth, 0.8, 0.2).astype(np.float32)
    return truth, grey


def test_grows_to_where_the_structure_ends_and_no_further():
    truth, grey = tube()
    vol = np.zeros_like(truth)
    vol[:, :, 15:25] = truth[:, :, 15:25]  # the head found the middle only
    dec = TubeDecoder(truth, grey)
    added = _extend_ends(vol, dec, None, np.ones(40), 0.5, 3.0, TextConfig())
    assert added == list(range(10, 15)) + list(range(25, 30))
    assert (vol == truth).all()


def test_stops_where_the_heads_presence_is_nil_or_at_the_length_limit():
    truth, grey = tube()
    vol = np.zeros_like(truth)
    vol[:, :, 15:25] = truth[:, :, 15:25]
    pz = np.ones(40)
    pz[:13] = 0.0  # nothing of the term below slice 13
    added = _extend_ends(vol, TubeDecoder(truth, grey), None, pz, 0.5, 3.0, TextConfig(extend_max_mm=9.0))
    assert added == [13, 14, 25, 26, 27]  # 3 slices of 3 mm at most per end, none where the presence is 0


def test_stops_where_the_mask_leaks_or_changes_grey_value():
    truth, grey = tube()
    truth[16:32, 16:32, 27:] = True  # above slice 27 the structure merges into a much larger one
    grey[:, :, :13] = np.where(truth[:, :, :13], 0.3, 0.2)  # below slice 13 it is another tissue
    vol = np.zeros_like(truth)
    vol[:, :, 15:25] = truth[:, :, 15:25]
    added = _extend_ends(vol, TubeDecoder(truth, grey), None, np.ones(40), 0.5, 3.0, TextConfig())
    assert added == [13, 14, 25, 26]


def test_a_decoder_unsure_of_its_mask_adds_nothing():
    truth, grey = tube()
    vol = np.zeros_like(truth)
    vol[:, :, 15:25] = truth[:, :, 15:25]
    assert _extend_ends(vol, TubeDecoder(truth, grey, iou=0.3), None, np.ones(40), 0.5, 3.0, TextConfig()) == []


def test_stops_where_another_term_is_hotter_inside_the_grown_mask():
    truth, grey = tube()
    vol = np.zeros_like(truth)
    vol[:, :, 15:25] = truth[:, :, 15:25]
    seen = []

    def rival(z, mask):  # below slice 12 the head calls it something else
        seen.append(z)
        return z < 12

    added = _extend_ends(vol, TubeDecoder(truth, grey), None, np.ones(40), 0.5, 3.0, TextConfig(), rival=rival)
    assert added == [12, 13, 14] + list(range(25, 30))
    assert 11 in seen
    vol[:, :, :] = False
    vol[:, :, 15:25] = truth[:, :, 15:25]
    off = _extend_ends(vol, TubeDecoder(truth, grey), None, np.ones(40), 0.5, 3.0, TextConfig(), rival=None)
    assert off == list(range(10, 15)) + list(range(25, 30))


def test_the_setting_is_per_term_and_the_packaged_head_extends_the_tubes_and_the_left_adrenal():
    """Chosen on validation patients (benchmarks/README.md, session 20): the aorta, the oesophagus and the left
    adrenal gland (which, without the rival-heat stop, grew into the splenic vein on another scanner's CT)."""
    from medground.models.grounding import CALIBRATED, load_grounding
    from medground.segment.text import _per_term

    assert "extend_runs" in CALIBRATED and TextConfig().extend_runs == "auto"
    head = load_grounding()
    on = {t for t in head.term_ids if _per_term("auto", t, head, "extend_runs", False) is True}
    assert on == {"aorta", "esophagus", "adrenal_gland_left"}
    rival = {t: _per_term("auto", t, head, "extend_max_rival_heat", 0.3) for t in on}
    assert rival == {"aorta": 0.3, "adrenal_gland_left": 0.3, "esophagus": None}  # val: the oesophagus lost with it
    from medground.segment.text import _rival_heat

    assert _rival_heat(head, None, "esophagus", TextConfig()) is None
    assert _per_term({"liver": True}, "liver", head, "extend_runs", False) is True
    assert _per_term({"liver": True}, "aorta", head, "extend_runs", False) is True  # others: "auto"
    assert _per_term(False, "aorta", head, "extend_runs", False) is False


def test_a_real_aorta_grows_past_its_run_and_says_so(shared_data, tmp_path):
    """40 slices of a BTCV validation patient around the lower aorta (LiteMedSAM and the packaged head): the
    packaged setting grows the aorta's run, only by whole slices beyond the run drawn without it, and findings say
    how many; off, nothing is said."""
    import nibabel as nib
    from PIL import Image

    import medground
    from medground.segment.text import segment_text

    src = shared_data / "btcv-ct"
    lab_img = nib.load(str(src / "labels" / "patient_08.nii.gz"))
    zs = range(30, 70)
    img = np.stack([np.asarray(Image.open(src / "images" / "patient_08" / f"slice_{z:03d}.jpg").convert("L"))
                    for z in zs], -1)
    nib.save(nib.Nifti1Image(img, lab_img.affine), str(tmp_path / "crop.nii.gz"))
    image = medground.load(tmp_path / "crop.nii.gz")
    (on,), _ = segment_text(image, ["aorta"])
    (off,), _ = segment_text(image, ["aorta"], cfg=TextConfig(extend_runs=False))
    z_on, z_off = (set(np.where(r.mask.any(axis=(0, 1)))[0]) for r in (on, off))
    added = on.info["terms"][0]["extended_slices"]
    assert added >= 1 and z_off < z_on and len(z_on) - len(z_off) == added
    assert (on.mask[..., sorted(z_off)] == off.mask[..., sorted(z_off)]).all()  # the run itself is unchanged
    assert "extended_slices" not in off.info["terms"][0]
