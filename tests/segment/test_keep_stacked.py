"""TextConfig.keep_stacked: an organ split along z by two slices whose masks miss each other keeps both halves;
side-by-side rivals, distant blobs and small fragments are still removed."""
import numpy as np

from medground.segment.engine import largest_component
from medground.segment.text import TextConfig, keep_stacked


def _block(vol, x, y, z):
    vol[x[0]:x[1], y[0]:y[1], z[0]:z[1]] = True


def _split_organ():
    vol = np.zeros((40, 40, 30), dtype=bool)
    _block(vol, (5, 25), (5, 9), (2, 12))    # upper half (fundus), an L in each slice
    _block(vol, (5, 9), (5, 25), (2, 12))
    _block(vol, (12, 30), (12, 30), (12, 25))  # lower half (body): inside the L's box, no voxel touches it
    return vol


def test_split_halves_both_kept():
    vol = _split_organ()
    assert vol[..., :12].sum() and vol[..., 12:].sum()
    only = largest_component(vol)
    assert not only[..., :12].any()  # the old rule threw the upper half away
    info = {}
    kept = keep_stacked(vol, 0.1, max_gap=1, info=info)
    assert kept.sum() == vol.sum() and info["added"] == 1


def test_side_by_side_rival_removed():
    vol = _split_organ()
    _block(vol, (33, 39), (33, 39), (14, 20))  # same slices as the body, beside it: not a continuation
    kept = keep_stacked(vol, 0.1, max_gap=1)
    assert not kept[33:, 33:, :].any()
    assert kept[..., :12].any()


def test_distant_and_small_removed():
    vol = _split_organ()
    _block(vol, (12, 30), (12, 30), (28, 30))  # past the body but 3 slices away (> max_gap)
    kept = keep_stacked(vol, 0.1, max_gap=1)
    assert not kept[..., 28:].any()
    vol = _split_organ()
    _block(vol, (12, 14), (12, 14), (1, 2))  # next to the upper half's end, 4 voxels (< 10% of the largest)
    kept = keep_stacked(vol, 0.1, max_gap=1)
    assert not kept[..., 1].any()
    assert keep_stacked(vol, 0.0, max_gap=1)[..., 1].any()


def test_chain_kept_and_no_overlap_in_plane_removed():
    vol = _split_organ()
    _block(vol, (5, 25), (5, 9), (0, 1))  # continues the upper half upwards (one empty slice between: gap 1)
    assert keep_stacked(vol, 0.01, max_gap=1)[..., 0].any()
    vol = _split_organ()
    _block(vol, (32, 40), (32, 40), (25, 30))  # next along z, but elsewhere in the slice
    assert not keep_stacked(vol, 0.01, max_gap=1)[..., 25:].any()


def test_default():
    from medground.models.grounding import load_grounding
    from medground.segment.text import stacked_fraction

    g = load_grounding()
    assert TextConfig().keep_stacked == "auto"
    assert stacked_fraction("stomach", g, TextConfig()) == 0.25
    assert stacked_fraction("inferior_vena_cava", g, TextConfig(keep_stacked={"stomach": 0.5})) == 0.25
    assert stacked_fraction("stomach", g, TextConfig(keep_stacked={"stomach": 0.5})) == 0.5
    assert stacked_fraction("stomach", g, TextConfig(keep_stacked=None)) is None
    # short structures keep their largest component only
    assert stacked_fraction("adrenal_gland_left", g, TextConfig()) is None
    assert stacked_fraction("gallbladder", g, TextConfig()) is None
    assert stacked_fraction("heart", g, TextConfig()) == 0.25  # no known extent


def test_a_real_stomach_split_along_z_keeps_both_halves(shared_data, tmp_path):
    """A BTCV validation patient's stomach (LiteMedSAM and the packaged head): two neighbouring slices' masks miss
    each other and the stomach falls into two 3D pieces; kept whole it matches the reference better, the largest
    piece is unchanged, and findings say a piece was added."""
    import nibabel as nib
    from PIL import Image

    import medground
    from medground.evaluate.metrics import dice_score
    from medground.segment.text import segment_text

    src = shared_data / "btcv-ct"
    lab_img = nib.load(str(src / "labels" / "patient_08.nii.gz"))
    zs = range(50, 126)
    img = np.stack([np.asarray(Image.open(src / "images" / "patient_08" / f"slice_{z:03d}.jpg").convert("L"))
                    for z in zs], -1)
    ref = np.asarray(lab_img.dataobj)[..., 50:126] == 7
    nib.save(nib.Nifti1Image(img, lab_img.affine), str(tmp_path / "crop.nii.gz"))
    image = medground.load(tmp_path / "crop.nii.gz")
    (on,), _ = segment_text(image, ["stomach"])
    (off,), _ = segment_text(image, ["stomach"], cfg=TextConfig(keep_stacked=None))
    assert on.info["terms"][0]["stacked_pieces"] >= 1 and "stacked_pieces" not in off.info["terms"][0]
    assert (on.mask >= off.mask).all() and on.mask.sum() > 1.2 * off.mask.sum()
    assert dice_score(on.mask, ref) > dice_score(off.mask, ref) + 0.05
