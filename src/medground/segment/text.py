"""Text-prompted segmentation: words -> ontology terms -> heatmaps -> boxes -> LiteMedSAM masks.

1. Each prompt is resolved to ontology terms ("kidneys" -> left and right kidney).
2. The image is brought to canonical orientation: from its geometry when it has one (axial slices in
   radiological view: patient right on the image left, anterior at the top), else (pictures) by the
   orientation classifier choosing one of the 8 rotations/flips.
3. Every slice is encoded once by the LiteMedSAM image encoder; the grounding head turns each
   (slice, term) into a presence score and a heatmap; present heatmap blobs become boxes, and the
   LiteMedSAM decoder draws the mask inside each box. Two heads read the same embedding: the organ
   head (``grounding.pt``) and the findings head (``grounding_findings.pt``: lesions, tumours,
   polyps, skin lesions); a term goes to the findings head when only that head was trained on it
   (:func:`route_terms`).
4. Volumes are cleaned in 3D (contiguous slices, largest connected component per term with the pieces that
   continue it along z, ``TextConfig.keep_stacked``) and every mask is mapped back to the input's own grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medground.io.image import MedImage, orientation_unknown
from medground.io.intensity import to_unit_range
from medground.models.orientation import INVERSE, NAMES, dihedral
from medground.segment.air import LUNG_TERMS, lung_masks, looks_like_hu, picture_lung_masks
from medground.segment.atlas import is_atlas_term, segment_atlas
from medground.segment.engine import SegmentationResult, _unit_gray, components, largest_component
from medground.segment.predictor import MODEL_SIZE, SlicePredictor


@dataclass
class TextConfig:
    # a slice shows a term when its presence probability reaches this; None: the head's calibrated value for
    # the term (chosen on validation patients), else 0.5
    presence_threshold: float | None = None
    heat_threshold: float = 0.5
    # findings head only: on a slice where the finding is present, heat above this fraction of the
    # slice's peak also counts (small lesions rarely reach 0.5 on the coarse grid); None: off
    findings_relative_heat: float | None = 0.5
    findings_min_peak: float = 0.1  # ... when the slice's peak heat probability reaches this
    # the same rule for the organ head's terms (chosen on the validation slices' grid heat: aorta .38 -> .55,
    # IVC .37 -> .50, gallbladder .14 -> .25, RV .45 -> .55, no class lower by more than .01); None: off
    organ_relative_heat: float | None = 0.5
    min_blob_cells: float = 0.5  # heat blobs smaller than this many cells of a 32 x 32 grid are ignored
    # each heat box grows by this many pixels of the network's 256 x 256 frame on every side before it prompts
    # the decoder (a box thresholded from the coarse heat sits ~1-2 pixels inside the structure, while the
    # decoder was trained on boxes around it); "auto": per term, the head's calibration (0 when it says nothing)
    box_margin: Any = "auto"
    orientation_min_prob: float = 0.6  # below this the picture is used as given
    # ... and a transform that mirrors (swaps the patient's left and right) needs this on a picture the image
    # classifier takes for a radiograph (with family_gate's probability): radiographs rarely arrive mirrored, and
    # over every covid-cxr frontal radiograph as stored the classifier wrongly chose a mirror for 26 of 418 at 0.6,
    # 2 at 0.9 (which still catches 85 of their 418 mirrored copies and 144 of JSRT's 247); None: orientation_min_prob
    radiograph_mirror_min_prob: float | None = 0.9
    # a volume reoriented by its header is checked by the orientation classifier too (probabilities pooled over
    # left-right mirror pairs): when the header's own view gets at most header_check_max_identity and another
    # view at least header_check_min_prob, the anatomy overrules the header (said in findings.json); None: the
    # header is always trusted. Chosen on 137 correctly oriented volumes (none overruled; the closest, a brain MR
    # outside the classifier's training, 0.13 / 0.70) and BTCV slices restacked under a borrowed affine (0.04-0.11
    # / 0.88-0.96)
    header_check_min_prob: float | None = 0.8
    header_check_max_identity: float = 0.15
    max_gap: int = 1  # slices without presence tolerated inside an organ's z range
    # volumes: the first and last slices of a structure's run whose presence stays below this are dropped (the
    # slice just past an organ's end often scores 0.5-0.8); a run where no slice reaches it is kept whole. None: off;
    # a number, a dict term id -> number, or "auto": per term, the head's calibration (off when it says nothing)
    run_end_presence: Any = "auto"
    # volumes: each slice's heat logits become (1 - 2w) x its own + w x each neighbour's (0: off); a number, a dict
    # term id -> number, or "auto": per term, the head's calibration (0 when it says nothing)
    heat_z_smooth: Any = "auto"
    batch_size: int = 8
    keep_largest_3d: bool = True
    # volumes with a trusted slice spacing: a structure drawn over less than this fraction of the shortest
    # head-to-foot extent its training references showed whole (medground.ontology.anatomy_extents) is reported
    # absent, unless what was drawn comes within a quarter of that extent (at least 2 slices) of the volume's first
    # or last slice (it may be cut by the field of view). A few slices of "liver" on a brain MR are not a liver.
    # None: off. 0.5 (session 9) removed one partly found stomach of the held-out BTCV test patients (0.663 ->
    # 0.641) while it changed no validation Dice, so the default is a tenth (session 23): a liver drawn over 1 mm
    # of a head CT angiogram (when a findings prompt made every slice be read) is not a liver, while a partly
    # found organ of a few slices stays (no validation or test Dice changed; benchmarks/README.md)
    min_extent: float | None = 0.1
    # ... for structures whose shortest whole extent is at least this (mm): a small one (adrenal gland,
    # gallbladder) may be caught on a single slice and is better drawn there than not at all (validation BTCV:
    # applying the rule to all terms cost the left adrenal gland 0.33 -> 0.30)
    min_extent_of: float = 40.0
    # what draws the mask on a slice where a term is present: "decoder" (LiteMedSAM inside each heat box),
    # "heat" (the heat blobs the boxes come from, i.e. the heat map itself), "blend" (the mean of the decoder's and the heat's
    # probabilities above 0.5), "gated" (the decoder's mask where the heat exceeds heat_gate), or "auto":
    # per term, what the head's checkpoint says measured best on its validation patients ("decoder" when
    # it says nothing). A dict term id -> mode overrides per term.
    mask_from: Any = "auto"
    heat_gate: float = 0.2
    # the mask source "refine" (chosen per term like the others): the refinement network
    # (medground.models.refine) redraws the term from the slice picture and the head's heat of all the terms it was
    # trained on, at 256 x 256. Each network was trained on one domain and modality (its card says which) and is used
    # only on images the classifier takes for that modality; elsewhere (and for terms no network covers) "refine"
    # falls back to "decoder". "refine_blend": the mean of the network's and the decoder's probabilities above 0.5
    # (falls back to "decoder" likewise). None: the packaged networks (models/weights/refine_*.pt); a path: that
    # network only
    refine_weights: str | None = None
    # where "refine" draws: "run" (the slices of the term's presence run that have heat boxes, like the other
    # sources) or "volume" (every encoded slice of a volume in which the term is present at all: the network,
    # trained on every slice, decides slice by slice; then the largest 3D component). "auto": the calibration's
    # ``refine_slices`` ("run" when it says nothing). A dict term id -> value overrides per term.
    refine_slices: Any = "auto"
    # a LiteMedSAM decoder fine-tuned on one kind of image (medground.models.decoders; the image encoder is shared)
    # draws the masks of the terms it was trained on when the image classifier takes the input for that kind:
    # "auto": the packaged CT decoder when installed; None: the pretrained decoder everywhere; a path: that
    # checkpoint (for CT)
    ct_decoder: str | None = "auto"
    # a thoracic, abdominal or pelvic structure asked of an image the classifier takes for the head with at least
    # this probability is reported absent, its mask empty (findings.json: "absent_because"). Head probability: brain
    # MR 0.94-0.98, a head CT 0.71; val/test BTCV <= 0.19, CHAOS <= 0.32, ACDC <= 0.54, radiographs <= 0.05. None: off
    head_region_gate: float | None = 0.9
    # ... unless the image's geometry shows a body wider than this (mm, patient left to right, the median over
    # slices of the middle half): an adult head is ~140-170 mm wide, an abdomen 300-400 (TotalSegmentator's
    # abdominal MR, not fat-suppressed, is "head" 0.74 to the classifier). None: the classifier alone.
    head_max_width_mm: float | None = 230.0
    # an organ-head term asked of a kind of image the head never learned it from (radiographs vs CT / MR; the head
    # learned no organ from ultrasound, endoscopy or photographs) is not drawn: present false, confidence 0.5,
    # "not assessed" (findings.json: "absent_because"), for the head's answer there is a guess by position (on
    # chest radiographs it drew "liver" over the right lung; on CT, "right lung", learned from radiographs, over
    # the liver). The kind: volumes and DICOM tags say it; a 2D picture is what the image classifier takes it
    # for, with at least this probability (benchmarks/family_gate.py). None: off
    family_gate: float | None = 0.75
    # the lungs of a CT in Hounsfield units are found by their air (medground.segment.air), not by the organ head,
    # which learned them from radiographs only. False: the family gate then reports them not assessed
    ct_lungs_by_air: bool = True
    # the lungs on an 8-bit picture of a CT slice (PNG / JPEG, classified CT) in a lung window, by their air
    # (medground.segment.air.picture_lung_masks); other windows, or False: the family gate reports them not assessed
    picture_lungs_by_air: bool = True
    # a radiograph whose whole-lung mask is one lung field across the middle of the picture (one component holding
    # at least lateral_min_share of the mask, its centre within lateral_centre of the middle, at least lateral_width
    # of the picture wide) is a lateral view: the left and right lungs overlap there and the heart and clavicles were
    # learned from frontal views only, so those terms are not assessed ("lungs" is drawn). Chosen on covid-cxr
    # (benchmarks/lateral_view.py); a frontal view with one lung whited out keeps a single field off the middle.
    # False: off
    lateral_check: bool = True
    lateral_min_share: float = 0.9
    lateral_centre: float = 0.15
    lateral_width: float = 0.42
    # ... unless the left and right lungs were drawn this alike in area (a frontal view whose lung fields the
    # whole-lung mask bridged below the heart: 2 of 418 covid-cxr frontal views, left / right 0.74 and 0.91, while 4
    # of the 35 lateral views reach 0.7)
    lateral_pair_ratio: float = 0.7
    # volumes: a cardiac chamber (left / right ventricle, myocardium; learned from cardiac cine MR) drawn on a slice
    # where at least half of it lies inside a kidney drawn by the same head is that kidney, and is removed from the
    # slice ("right ventricle" on an abdominal MR was the right kidney, 222 mL at 0.85); the kidneys are segmented for
    # this when not asked for. False: off
    chamber_kidney_check: bool = True
    # volumes: a term's mask grows past the ends of its presence run slice by slice, the box of the previous
    # slice's mask prompting the decoder (as box prompts propagate), while the new mask touches and overlaps the
    # previous one (Dice >= extend_min_overlap), stays within extend_max_growth of its area, has a predicted IoU >=
    # extend_min_iou and a mean grey value near the run end's, and the head's presence there reaches
    # extend_min_presence x the term's threshold; at most extend_max_mm (volumes without a trusted spacing:
    # extend_max_slices). The head's presence falls off before some structures end (the aorta below the renal
    # arteries, the stomach's greater curve). True / False, a dict term id -> either, or "auto": the head's
    # calibration (chosen on validation patients; off where it says nothing)
    extend_runs: Any = "auto"
    extend_min_overlap: float = 0.5
    extend_max_growth: float = 1.5
    extend_min_iou: float = 0.5
    extend_min_presence: float = 0.1
    extend_max_mm: float = 100.0
    extend_max_slices: int = 20
    # ... and stops where another term the head knows is hotter than this inside the grown mask (mean heat
    # probability; the left adrenal gland walked down into what the head calls pancreas and splenic vein). None: off;
    # a dict term id -> either, or "auto": the head's calibration (0.3 where it says nothing)
    extend_max_rival_heat: Any = "auto"
    # volumes: the largest 3D component is kept, and with it every component that continues it along z (its slices
    # lie past one end of what is kept, at most max_gap + 1 slices away, and its in-plane box overlaps the kept one's)
    # holding at least this fraction of the largest's voxels: where two neighbouring slices' masks miss each other the
    # organ splits in two (a stomach's fundus and body) and the smaller half was thrown away. None: off (the largest
    # component only); a number, a dict term id -> either, or "auto": the head's calibration (0.25 where it says
    # nothing; validation BTCV stomach 0.81 -> 0.84, no other class of BTCV, CHAOS or ACDC changed at 0.1 or 0.25)
    keep_stacked: Any = "auto"
    # ... only for structures whose shortest whole head-to-foot extent in training references
    # (medground.ontology.anatomy_extents; unknown: kept) reaches this (mm): beside a short one (an adrenal gland,
    # 15-24 mm) a piece on the next slices is as likely a neighbour (TotalSegmentator's example CT: the left adrenal
    # gland took one, 0.625 -> 0.401)
    keep_stacked_min_extent: float = 40.0
    # a finding neither head was trained on (a kidney cyst, a pleural effusion): "not assessed" (present false,
    # confidence 0.5, said in findings.json) or "zero-shot" (the organ head's untrained guess, flagged)
    untrained_findings: str = "not assessed"
    # ... when the classifier's CT probability reaches this (BTCV volumes 0.81-0.96, real HU CT 0.99; the MR volumes
    # it takes for CT, 3 of 20 CHAOS and 2 of 60 ACDC, at most 0.59)
    ct_decoder_min_prob: float = 0.7
    # the heat map is coarse (a 64 x 64 grid): "guided" sharpens it along the slice's own edges (a guided
    # filter with the slice as guide, radius heat_refine_cells grid cells, regularisation heat_refine_eps)
    # before it is thresholded and boxed; None: bilinear only; "auto": per term, what the head's calibration
    # says (None when it says nothing)
    heat_refine: str | None = "auto"
    heat_refine_cells: float = 1.0
    heat_refine_eps: float = 0.001
    # volumes: which slices the image encoder sees. "all": every slice. "adaptive": slices spaced at most
    # sparse_first_gap_mm apart (a power-of-two step) first; then the slice between two encoded ones wherever
    # their outputs disagree (a term present on one and not the other, heat blobs overlapping less than
    # sparse_iou, or a term absent on both but with a presence of at least sparse_near x its threshold on
    # one) or wherever a term is present and they are more than sparse_gap_mm apart, down to neighbouring
    # slices. A slice left out lies between two encoded ones that agree and takes their interpolated heat,
    # presence and (shape-interpolated) masks. Volumes without a trusted slice
    # spacing, fewer than sparse_min_slices slices, or a findings-head term (lesions can be small) use "all".
    slice_sampling: str = "adaptive"
    sparse_first_gap_mm: float = 20.0
    sparse_gap_mm: float = 10.0
    # where a term starts or ends, encode down to gaps of at most this (0: to the slice); a slice left out there
    # is present when its interpolated presence is, its mask the present side's shrunk in proportion
    sparse_edge_mm: float = 10.0
    sparse_iou: float = 0.4
    sparse_near: float = 0.5  # ... and wherever a term absent at both ends reaches this fraction of its threshold
    sparse_min_slices: int = 24
    # a wall drawn around a cavity (the myocardium around the left ventricle's blood pool, see CAVITIES) is
    # filled across the cavity and the cavity's own mask is cut out of it, slice by slice: the coarse heat of a
    # ring spills into its lumen. The cavity is segmented for this even when it was not asked for.
    carve_cavities: bool = True
    # a prompt naming a pair or a group ("lungs" = left + right lung) is segmented as its parts, unless the head
    # was trained on the whole and this says so: True / False, a list of the image kinds ("2d", "3d") where the
    # whole is used, a dict whole term id -> one of those, or "auto": the head's calibration (chosen on
    # validation patients; e.g. the whole lung on radiographs, whose references draw the lung behind the heart)
    whole: Any = "auto"
    # MR grey scale (medground.segment.contrast): the organ head learned abdominal MR from fat-suppressed T2 and cardiac
    # MR from cine; on an image the classifier takes for MR (and not for the head), a few probe slices are scored
    # as acquired and with their grey values inverted inside the body, and the inverse is used when the presence of
    # the organs learned from MR (``mr_probe_terms``: liver, spleen, kidneys, heart chambers, whatever is asked; mean
    # over the probe slices and those terms) is higher by contrast_margin and reaches contrast_min (findings.json:
    # "contrast"). "auto": that check; "off": as acquired; "inverted": always inverted. Chosen (with the asked terms,
    # session 11) on CHAOS / ACDC val+test volumes as acquired (inverse lower by 0.34-0.96) and inverted (higher by
    # 0.31-0.72) and the one real T1 abdomen at hand (TotalSegmentator's MR example, +0.25); re-measured with the
    # fixed probe set in session 23: benchmarks/results/contrast_probe.md
    contrast_check: str = "auto"
    contrast_margin: float = 0.15
    contrast_min: float = 0.4
    contrast_probe_slices: int = 6


def use_wholes(resolved: list, organs, cfg: TextConfig, kind: str) -> list:
    """``resolved`` with each prompt that named a whole ("lungs") segmented as that whole instead of its parts
    where ``TextConfig.whole`` says so for this kind of image ("2d" or "3d") and the organ head knows the whole."""
    import dataclasses

    known = set(getattr(organs, "term_ids", []))
    out = []
    for r in resolved:
        if len(r.terms) > 1 and r.term.id in known:
            v = _per_term(cfg.whole, r.term.id, organs, "whole", False)
            if v is True or (isinstance(v, (list, tuple)) and kind in v):
                r = dataclasses.replace(r, terms=[r.term])
        out.append(r)
    return out


def use_containing(resolved: list, organs, findings, onto) -> tuple[list, list[dict]]:
    """``resolved`` with each anatomy term that no head was trained on (and no atlas labels) replaced by its ontology
    parent when the organ head was trained on that parent and the parent is named as a combination that includes it:
    "portal vein" is drawn as "portal vein and splenic vein", the trained structure made of it and one other vein,
    instead of a zero-shot guess (which on TotalSegmentator's example CT drew a blob beside the vein). A part that is
    a small share of its parent (hepatic vessels of the liver, a lobe of the lung, an atrium of the heart) keeps the
    zero-shot answer: the whole would not be an answer to it. Also returns, per prompt, parent id -> the term it
    stands in for (findings.json says so)."""
    import dataclasses

    from medground.segment.vocab import stand_in

    known = set(getattr(organs, "term_ids", []))
    fknown = set(getattr(findings, "term_ids", [])) if findings is not None else set()
    out, stand_ins = [], []
    for r in resolved:
        terms, mine = [], {}
        for t in r.terms:
            parent = stand_in(t, onto, known, fknown)
            if parent is not None:
                mine[parent.id] = t
                t = parent
            if t not in terms:
                terms.append(t)
        out.append(dataclasses.replace(r, terms=terms) if mine else r)
        stand_ins.append(mine)
    return out, stand_ins


# wall term -> the cavity it encloses (both must be organ-head terms)
CAVITIES = {"myocardium": "left_ventricle"}
CHAMBERS = ("left_ventricle", "right_ventricle", "myocardium")  # cardiac chambers (TextConfig.chamber_kidney_check)
KIDNEYS = ("kidney_left", "kidney_right")
# the dihedral transforms that mirror (swap the patient's left and right): orientation.NAMES indices
MIRRORS = frozenset(i for i, n in enumerate(NAMES) if n in ("flip_lr", "flip_ud", "transpose", "anti_transpose"))
# learned from frontal chest radiographs only (JSRT): not assessed on a lateral view (TextConfig.lateral_check)
FRONTAL_ONLY = ("lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right")


def lateral_view(lungs: np.ndarray, cfg: TextConfig) -> dict | None:
    """The whole-lung mask (X, Y) of a radiograph -> why it looks like a lateral view (one lung field across the
    middle of the picture, see ``TextConfig.lateral_check``), or None."""
    from scipy import ndimage

    m = np.asarray(lungs, bool)
    if not m.any():
        return None
    lab, n = ndimage.label(m)
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    big = int(np.argmax(sizes)) + 1
    if sizes[big - 1] < cfg.lateral_min_share * m.sum():
        return None  # two lung fields (or more pieces): a frontal view
    xs = np.where((lab == big).any(axis=1))[0]
    X = m.shape[0]
    centre, width = (xs[0] + xs[-1] + 1) / 2 / X, (xs[-1] - xs[0] + 1) / X  # of the pixels covered
    if abs(centre - 0.5) > cfg.lateral_centre or width < cfg.lateral_width:
        return None  # one field off the middle: a frontal view with the other lung not drawn
    return {"lung_fields": 1, "centre": round(float(centre), 3), "width": round(float(width), 3)}


@dataclass
class Canonical:
    image: MedImage
    back: Any  # function: canonical (X', Y', Z') array -> input grid (X, Y, Z)
    info: dict = field(default_factory=dict)
    forward: Any = None  # function: input grid (X, Y, Z) array -> canonical (X', Y', Z'), e.g. a label map

    def __post_init__(self):
        if self.forward is None:
            self.forward = lambda a: a


# --------------------------------------------------------------------------- orientation
def _in_plane(a: np.ndarray, k: int) -> np.ndarray:
    """Dihedral transform ``k`` of every slice of an (X, Y, Z[, C]) array, in display terms (rows = Y)."""
    return np.ascontiguousarray(np.swapaxes(dihedral(np.swapaxes(a, 0, 1), k), 0, 1))


def orientation_slices(Z: int) -> list[int]:
    """The slices the orientation classifier looks at in a stack of Z: up to 7 spread over its middle half."""
    return [0] if Z == 1 else sorted(set(np.linspace(Z // 4, max(Z // 4, (3 * Z) // 4 - 1), min(Z, 7)).astype(int)))


def _orientation_probs(image: MedImage, orient_net) -> tuple[np.ndarray, int]:
    """The orientation classifier's probabilities for the 8 transforms (for a volume, the mean over up to 7
    slices of its middle half) and how many slices they came from. The slices are scaled as the network and the
    classifier's training pictures are (:func:`medground.io.intensity.to_unit_range`: a CT in Hounsfield units
    through its soft-tissue window); raw HU scaled min-max leaves the soft tissue a flat grey the classifier
    cannot read (a real HU CT series: p(header's own view) 0.04 raw, 1.00 windowed)."""
    from medground.io.intensity import to_unit_range
    from medground.train.cache import thumbnail

    zs = orientation_slices(image.shape[2])
    probs = np.mean([orient_net.predict(thumbnail(to_unit_range(image, z=int(z)).T)) for z in zs], axis=0)
    return probs, len(zs)


def _probs_info(probs: np.ndarray) -> dict:
    return {NAMES[i]: round(float(p), 4) for i, p in enumerate(probs)}


def _lr_partner(k: int) -> int:
    """The transform that differs from ``k`` by a left-right mirror of the anatomy (identity <-> flip_lr,
    flip_ud <-> rot180, rot90 <-> transpose, rot270 <-> anti_transpose)."""
    x = np.arange(16.0).reshape(4, 4)
    y = dihedral(dihedral(x, NAMES.index("flip_lr")), k)
    return next(j for j in range(8) if np.array_equal(dihedral(x, j), y))


def header_contradiction(probs: np.ndarray, max_identity: float, min_prob: float) -> tuple[np.ndarray, int, bool]:
    """The orientation classifier's probabilities (8 transforms of a header-reoriented volume) pooled over left-right
    mirror pairs; the likeliest transform outside the header's own pair; and whether that pair overrules the header
    (the header's pair gets at most ``max_identity`` and that one at least ``min_prob``)."""
    pair = np.array([probs[k] + probs[_lr_partner(k)] for k in range(8)])
    k = max((j for j in range(8) if j not in (0, _lr_partner(0))), key=lambda j: pair[j])
    return pair, k, bool(pair[0] <= max_identity and pair[k] >= min_prob)


def _anatomy_check(hc: Canonical, orient_net, cfg: TextConfig) -> Canonical:
    """A volume reoriented by its header is shown to the orientation classifier. The header is trusted on left and
    right (the classifier confuses a view with its left-right mirror more often than a header does), so the
    classifier's probabilities are pooled over mirror pairs; when the pair holding the header's own view gets at
    most ``header_check_max_identity`` and another pair at least ``header_check_min_prob`` (e.g. slices exported
    from another tool and restacked under a borrowed affine: spine at the top), that pair's transform is applied
    on top of the header's - the member keeping the header's left-right axis where one does (flip_ud), else the
    likelier - and ``findings.json`` says so. Masks still map back to the input's own grid."""
    if orient_net is None or cfg.header_check_min_prob is None:
        return hc
    probs, n = _orientation_probs(hc.image, orient_net)
    pair, k, overrules = header_contradiction(probs, cfg.header_check_max_identity, cfg.header_check_min_prob)
    check = {"probabilities": _probs_info(probs), "slices_used": n}
    hc.info["anatomy_check"] = check
    if not overrules:
        check["result"] = "consistent with the header (left-right mirrors pooled)"
        return hc
    j = _lr_partner(k)
    keeps_x = [m for m in (k, j) if NAMES[m] in ("identity", "flip_ud")]  # the column (left-right) axis kept
    k = keeps_x[0] if keeps_x else (k if probs[k] >= probs[j] else j)
    inv_k = INVERSE[k]
    check["result"] = (f"contradicts the header: the slices look {NAMES[k]} (with its mirror, p = {pair[k]:.2f}); "
                       f"{NAMES[inv_k]} applied after the header's reorientation")
    img = hc.image
    canon = MedImage(_in_plane(img.data, inv_k), np.asarray(img.affine, dtype=float).copy(), img.ndim, img.modality,
                     img.has_geometry, img.photometric, img.source_path, img.source_format, dict(img.meta))
    back, fwd = hc.back, hc.forward
    return Canonical(canon, lambda a: back(_in_plane(a, k)), {**hc.info, "transform_after_header": NAMES[inv_k]},
                     lambda a: _in_plane(fwd(a), inv_k))


def _axial_slice_with_header(image: MedImage) -> bool:
    """A single grey slice stored as NIfTI / NRRD with a real orientation whose third (singleton) axis runs head to
    foot: its header says how to turn it, like a volume's (an array saved as 2D NIfTI is stored x-first, not as a
    picture is shown)."""
    if image.ndim != 2 or not image.has_geometry or image.is_color or image.source_format not in ("nifti", "nrrd"):
        return False
    if orientation_unknown(image):
        return False
    from nibabel import orientations as no

    return int(no.io_orientation(np.asarray(image.affine, dtype=float))[2, 0]) == 2


def canonicalize(image: MedImage, orient_net=None, cfg: TextConfig | None = None,
                 memo: dict | None = None) -> Canonical:
    """The input in the canonical (radiological, RAS-display) orientation the models learned, and the way back.
    ``memo``: the image classifier's answer, shared with the caller."""
    cfg = cfg or TextConfig()
    header_2d = _axial_slice_with_header(image)
    if image.has_geometry and (image.ndim == 3 or image.source_format.startswith("dicom") or header_2d) \
            and not (image.ndim == 3 and orientation_unknown(image)):
        if image.ndim == 2 and not header_2d:
            return Canonical(image, lambda a: a, {"method": "as stored (DICOM picture)", "transform": "identity"})
        from nibabel import orientations as no

        src = no.io_orientation(image.affine)
        dst = no.axcodes2ornt(("L", "P", "S"))
        ornt = no.ornt_transform(src, dst)
        inv = no.ornt_transform(dst, src)
        data = no.apply_orientation(image.data, ornt)
        aff = image.affine @ no.inv_ornt_aff(ornt, image.data.shape[:3])
        canon = image.with_data(np.ascontiguousarray(data), affine=aff) if data.shape[:3] == image.shape else \
            MedImage(np.ascontiguousarray(data), aff, image.ndim, image.modality, image.has_geometry,
                     image.photometric, image.source_path, image.source_format, dict(image.meta))
        hc = Canonical(canon, lambda a: np.ascontiguousarray(no.apply_orientation(a, inv)),
                       {"method": "header geometry", "from": "".join(no.ornt2axcodes(src)), "to": "LPS"},
                       lambda a: np.ascontiguousarray(no.apply_orientation(a, ornt)))
        return _anatomy_check(hc, orient_net, cfg)
    # a picture, or a volume whose header has no orientation: ask the orientation classifier (for a volume,
    # the mean of its probabilities over slices of the middle half; one transform for every slice)
    no_header = image.ndim == 3 and image.has_geometry
    if orient_net is None:
        info = {"method": "as stored", "transform": "identity"}
        if no_header:
            info["reason"] = "the header has no orientation (identity affine or no qform/sform)"
        return Canonical(image, lambda a: a, info)
    probs, n = _orientation_probs(image, orient_net)
    k = int(np.argmax(probs))
    info = {"method": "orientation classifier", "probabilities": _probs_info(probs)}
    if no_header:
        info["reason"] = "the header has no orientation (identity affine or no qform/sform)"
        info["slices_used"] = n
    need = cfg.orientation_min_prob
    if k in MIRRORS and image.ndim == 2 and cfg.radiograph_mirror_min_prob is not None and probs[k] >= need:
        fam, p = image_family(image, {} if memo is None else memo)
        if fam == "radiograph" and cfg.family_gate is not None and p >= cfg.family_gate:
            need = max(need, cfg.radiograph_mirror_min_prob)
            info["mirror_needs"] = need  # a radiograph: a mirror must be this sure
    if k == 0 or probs[k] < need:
        info["transform"] = "identity"
        return Canonical(image, lambda a: a, info)
    inv_k = INVERSE[k]  # seen = dihedral(canonical, k)  =>  canonical = dihedral(seen, inverse k)
    info["transform"] = NAMES[inv_k]
    info["input_was"] = NAMES[k]
    d = _in_plane(image.data, inv_k)
    canon = MedImage(d, np.eye(4) if not no_header else np.asarray(image.affine, dtype=float).copy(), image.ndim,
                     image.modality, image.has_geometry if no_header else False, image.photometric,
                     image.source_path, image.source_format, dict(image.meta))
    return Canonical(canon, lambda a: _in_plane(a, k), info, lambda a: _in_plane(a, inv_k))


# --------------------------------------------------------------------------- helpers
def _runs(flags: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Contiguous runs of True (allowing gaps of up to max_gap False)."""
    idx = np.where(flags)[0]
    if idx.size == 0:
        return []
    runs = []
    start = prev = int(idx[0])
    for i in idx[1:]:
        if i - prev > max_gap + 1:
            runs.append((start, prev))
            start = int(i)
        prev = int(i)
    runs.append((start, prev))
    return runs


def _trusted_dz(image: MedImage) -> float | None:
    """The slice spacing (mm) of a volume whose geometry can be trusted; None for a picture, a volume without
    geometry or orientation (e.g. an identity affine), or a spacing that is not a positive number."""
    if image.ndim != 3 or not image.has_geometry or orientation_unknown(image):
        return None
    dz = float(image.spacing[2])
    return dz if np.isfinite(dz) and dz > 0 else None


def _too_short(vol: np.ndarray, term: str, image: MedImage, cfg: TextConfig) -> dict | None:
    """``{"drawn_mm", "shortest_seen_mm"}`` when ``vol`` (X, Y, Z) spans too little of ``term``'s known extent
    (see ``TextConfig.min_extent``), else None."""
    from medground.ontology import anatomy_extents

    seen = anatomy_extents().get(term)
    if cfg.min_extent is None or not seen or seen < cfg.min_extent_of or not vol.any():
        return None
    dz = _trusted_dz(image)
    if dz is None:
        return None
    zs = np.where(vol.any(axis=(0, 1)))[0]
    near = max(2, int(np.ceil(0.25 * seen / dz)))  # slices: a structure this close to an end may continue past it
    if zs[0] < near or zs[-1] > vol.shape[2] - 1 - near:
        return None
    drawn = (int(zs[-1]) - int(zs[0]) + 1) * dz
    if drawn >= cfg.min_extent * seen:
        return None
    return {"drawn_mm": round(drawn, 1), "shortest_seen_mm": seen}


def smooth_z(heat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Heat logits (Z, T, G, G): each slice's become (1 - 2 w_t) x its own + w_t x each neighbour's (the end slices
    count themselves as their missing neighbour); ``w``: (T,) per term."""
    w = w.to(heat.dtype)[None, :, None, None]
    return (1 - 2 * w) * heat + w * torch.cat([heat[:1], heat[:-1]]) + w * torch.cat([heat[1:], heat[-1:]])


def _trim_run(run: tuple[int, int], pz: np.ndarray, end: float | None) -> tuple[int, int]:
    """(first, last + 1) of a run of present slices once its weak ends (presence below ``end``) are dropped."""
    a, b = run
    if end is not None and float(pz[a: b + 1].max()) >= end:
        while pz[a] < end:
            a += 1
        while pz[b] < end:
            b -= 1
    return a, b + 1


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` steered by ``guide`` (He, Sun & Tang 2013), both 2D in [0, 1]."""
    from scipy.ndimage import uniform_filter

    size = 2 * max(1, int(radius)) + 1
    mean = lambda a: uniform_filter(a, size=size, mode="reflect")  # noqa: E731
    mi, ms = mean(guide), mean(src)
    cov = mean(guide * src) - mi * ms
    var = mean(guide * guide) - mi * mi
    a = cov / (var + eps)
    b = ms - a * mi
    return np.clip(mean(a) * guide + mean(b), 0.0, 1.0)


def heat_on_slice(heat: torch.Tensor, pred: SlicePredictor) -> torch.Tensor:
    """Heat logits (B, T, G, G) -> probabilities on the slice's own grid (B, T, Y, X), through the network's
    256 x 256 frame (the slice fills its top-left ``new_hw``)."""
    up = F.interpolate(torch.sigmoid(heat.float()), size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)
    h, w = pred.new_hw
    return F.interpolate(up[..., :h, :w], size=pred.hw, mode="bilinear", align_corners=False)


def heat_boxes(heat: torch.Tensor, pred: SlicePredictor, cfg: TextConfig,
               relative: float | None = None, z: int | None = None,
               refine: str | None = None, margin: float = 0.0) -> tuple[list, np.ndarray, np.ndarray]:
    """Heat logits (G, G) -> boxes (x0, y0, x1, y1) in slice pixels, one per blob (grown by ``margin``
    pixels of the 256 frame, clipped to the slice), the heat probability map on the slice grid (X, Y),
    and the mask of the blobs kept (X, Y)."""
    from scipy import ndimage

    g = heat.shape[-1]
    on_slice = heat_on_slice(heat[None, None], pred)[0, 0]
    pm = on_slice.T.numpy()  # (X, Y)
    if refine == "guided" and z is not None and float(pm.max()) > 0.05:
        guide = _unit_gray(pred, z).astype(np.float32)
        cell = max(pred.hw) / g
        pm = guided_filter(guide, pm.astype(np.float32), round(cfg.heat_refine_cells * cell), cfg.heat_refine_eps)
    thr = cfg.heat_threshold
    if relative is not None and pm.size and float(pm.max()) >= cfg.findings_min_peak:
        thr = min(thr, relative * float(pm.max()))
    m = pm > thr
    lab, n = ndimage.label(m)
    boxes = []
    kept = np.zeros(m.shape, bool)
    cell_px = (max(pred.hw) / 32) ** 2  # the same area whatever the head's grid
    grow = float(margin) / pred.scale  # 256-frame pixels -> slice pixels
    X, Y = m.shape
    for i in range(1, n + 1):
        comp = lab == i
        if comp.sum() < cfg.min_blob_cells * cell_px:
            continue
        kept |= comp
        xs = np.where(comp.any(axis=1))[0]
        ys = np.where(comp.any(axis=0))[0]
        boxes.append((max(0.0, xs[0] - grow), max(0.0, ys[0] - grow),
                      min(X - 1.0, xs[-1] + grow), min(Y - 1.0, ys[-1] + grow)))
    return boxes, pm, kept


MASK_MODES = ("decoder", "heat", "blend", "gated", "refine", "refine_blend")


def _calibrated(term: str, bundle, key: str, default):
    """The head checkpoint's calibrated value of ``key`` for ``term`` (``default`` when it has none)."""
    return (getattr(bundle, "calibration", None) or {}).get(term, {}).get(key, default)


def _per_term(value, term: str, bundle, key: str, default):
    """A ``TextConfig`` setting for ``term``: the value itself, or from a dict term id -> value (terms it lacks:
    "auto"); "auto" = the head's calibrated ``key`` (``default`` when it has none)."""
    if isinstance(value, dict):
        value = value.get(term, "auto")
    return _calibrated(term, bundle, key, default) if value == "auto" else value


def mask_mode(term: str, bundle, cfg: TextConfig) -> str:
    """How the mask of ``term`` is drawn (see ``TextConfig.mask_from``)."""
    m = _per_term(cfg.mask_from, term, bundle, "mask_from", "decoder")
    if m not in MASK_MODES:
        raise ValueError(f"unknown mask mode {m!r}; use one of {MASK_MODES} or 'auto'")
    return m


def heat_refine(term: str, bundle, cfg: TextConfig) -> str | None:
    """How the heat map of ``term`` is brought to the slice's resolution (see ``TextConfig.heat_refine``)."""
    r = _per_term(cfg.heat_refine, term, bundle, "heat_refine", None)
    if r not in (None, "guided"):
        raise ValueError(f"unknown heat_refine {r!r}; use 'guided', None or 'auto'")
    return r


def box_margin(term: str, bundle, cfg: TextConfig) -> float:
    """How far the heat boxes of ``term`` grow before they prompt the decoder (see ``TextConfig.box_margin``)."""
    return float(_per_term(cfg.box_margin, term, bundle, "box_margin", 0.0))


def refine_slices(term: str, bundle, cfg: TextConfig) -> str:
    """Where the "refine" source of ``term`` draws (see ``TextConfig.refine_slices``)."""
    r = _per_term(cfg.refine_slices, term, bundle, "refine_slices", "run")
    if r not in ("run", "volume"):
        raise ValueError(f"unknown refine_slices {r!r}; use 'run', 'volume' or 'auto'")
    return r


def presence_threshold(term: str, bundle, cfg: TextConfig) -> float:
    if cfg.presence_threshold is not None:
        return float(cfg.presence_threshold)
    return float(_calibrated(term, bundle, "presence_threshold", 0.5))


# --------------------------------------------------------------------------- adaptive slice sampling
def _coarse_step(image: MedImage, cfg: TextConfig, findings_used: bool = False, gap_mm: float | None = None) -> int:
    """The first sampling step (in slices) of a volume: the largest power of two whose gap stays within
    ``gap_mm`` (default ``cfg.sparse_first_gap_mm``); 1 (every slice) when sampling is off or cannot be trusted."""
    Z = image.shape[2] if image.ndim == 3 else 1
    if cfg.slice_sampling == "all" or Z < max(3, cfg.sparse_min_slices) or findings_used:
        return 1
    if cfg.slice_sampling != "adaptive":
        raise ValueError(f"unknown slice_sampling {cfg.slice_sampling!r}; use 'adaptive' or 'all'")
    dz = _trusted_dz(image)
    if dz is None:
        return 1
    gap = cfg.sparse_first_gap_mm if gap_mm is None else gap_mm
    step = 1
    while step * 2 * dz <= gap and step < 16:
        step *= 2
    return step


def _disagree(a: int, b: int, heat: dict, pres: dict, thresholds: dict, cfg: TextConfig, max_step: int,
              edge_step: int = 1) -> bool:
    """Must the slice between encoded slices a and b be encoded too? (see ``TextConfig.slice_sampling``)"""
    for h in heat:
        fa = pres[h][a] >= thresholds[h]
        fb = pres[h][b] >= thresholds[h]
        if (b - a > edge_step and np.any(fa != fb)) or (b - a > max_step and np.any(fa | fb)):
            return True
        # absent at both ends but not clearly so at one: something short may lie between them
        near = cfg.sparse_near * thresholds[h]
        if np.any(~fa & ~fb & ((pres[h][a] >= near) | (pres[h][b] >= near))):
            return True
        for j in np.where(fa & fb)[0]:
            ma, mb = heat[h][a][j] > 0, heat[h][b][j] > 0
            union = int((ma | mb).sum())
            if union and int((ma & mb).sum()) < cfg.sparse_iou * union:
                return True
    return False


def _score_slices(pred: SlicePredictor, Z: int, step: int, heads: dict, used: list, temb: dict,
                  thresholds: dict, cfg: TextConfig, max_step: int = 1, edge_step: int = 1):
    """Heat logits (Z, T, G, G) and presence probabilities (Z, T) per head for every slice, and which
    slices were encoded. With ``step`` > 1, slices are encoded coarse to fine where outputs change;
    the others get values interpolated linearly between their nearest encoded neighbours."""
    heat: dict[str, dict[int, torch.Tensor]] = {h: {} for h in used}
    pres: dict[str, dict[int, np.ndarray]] = {h: {} for h in used}

    def score(zs):
        zs = [z for z in zs if z not in heat[used[0]]]
        pred.prepare(zs)
        with torch.inference_mode():
            for i in range(0, len(zs), 16):
                chunk = zs[i: i + 16]
                emb = torch.cat([pred.embedding(z) for z in chunk])
                for hname in used:  # one shared embedding per slice, read by each head
                    hh, p = heads[hname].head(emb, temb[hname])
                    pp = torch.sigmoid(p).cpu().numpy()
                    for k, z in enumerate(chunk):
                        heat[hname][z] = hh[k].cpu()
                        pres[hname][z] = pp[k]

    score(sorted(set(range(0, Z, step)) | {Z - 1}))
    while step > 1:
        step //= 2
        done = sorted(heat[used[0]])
        score([(a + b) // 2 for a, b in zip(done, done[1:])
               if b - a > 1 and _disagree(a, b, heat, pres, thresholds, cfg, max_step, edge_step)])
    encoded = np.zeros(Z, dtype=bool)
    encoded[sorted(heat[used[0]])] = True
    done = np.where(encoded)[0]
    heat_t, pres_t = {}, {}
    for h in used:
        hs = torch.stack([heat[h][int(z)] for z in done])
        ps = np.stack([pres[h][int(z)] for z in done])
        if len(done) == Z:
            heat_t[h], pres_t[h] = hs, ps
            continue
        hi = np.clip(np.searchsorted(done, np.arange(Z)), 1, len(done) - 1)
        lo = hi - 1
        w = (np.arange(Z) - done[lo]) / np.maximum(done[hi] - done[lo], 1)
        w = np.clip(w, 0.0, 1.0).astype(np.float32)
        wt = torch.from_numpy(w)[:, None, None, None]
        heat_t[h] = hs[lo] * (1 - wt) + hs[hi] * wt
        pres_t[h] = ps[lo] * (1 - w[:, None]) + ps[hi] * w[:, None]
    return heat_t, pres_t, encoded


def _fill_skipped(vol: np.ndarray, zs: list[int], encoded: np.ndarray) -> None:
    """Masks of the slices in ``zs`` that were not encoded, by shape interpolation (signed distances) between
    the nearest encoded slices below and above; where one of those is empty, the other's mask shrinks
    towards it (eroded in proportion to the distance)."""
    from scipy import ndimage

    if encoded.all() or not zs:
        return
    done = np.where(encoded)[0]
    for z in zs:
        if encoded[z]:
            continue
        i = int(np.searchsorted(done, z))
        if i == 0 or i >= len(done):
            continue
        a, b = int(done[i - 1]), int(done[i])
        ma, mb = vol[:, :, a], vol[:, :, b]
        if not ma.any() and not mb.any():
            continue
        w = (z - a) / (b - a)
        if not ma.any() or not mb.any():
            # the structure ends between a and b (and z is still flagged present): the shape shrinks to
            # nothing towards the empty side, i.e. the present side's mask eroded in proportion
            m, wf = (mb, w) if not ma.any() else (ma, 1 - w)
            d = ndimage.distance_transform_edt(m)
            vol[:, :, z] = d > (1 - wf) * float(d.max())
            continue
        both = ma | mb
        xs, ys = np.where(both.any(axis=1))[0], np.where(both.any(axis=0))[0]
        sl = (slice(max(0, xs[0] - 2), xs[-1] + 3), slice(max(0, ys[0] - 2), ys[-1] + 3))
        ca, cb = ma[sl], mb[sl]
        da = ndimage.distance_transform_edt(~ca) - ndimage.distance_transform_edt(ca)
        db = ndimage.distance_transform_edt(~cb) - ndimage.distance_transform_edt(cb)
        vol[sl + (z,)] = (1 - w) * da + w * db < 0


def _refine_plans(plans: dict, cimg: MedImage, pred: SlicePredictor, g, cfg: TextConfig, extra: dict) -> dict:
    """For the terms whose mask source is "refine": a refinement network's probability map (X, Y) on every slice
    where the term has a heat box, keyed (term, z). Each network covers the terms of one domain and the modality it
    was trained on (its card: CT for abdominal CT, MR for cardiac cine MR); a term goes to the first installed network
    that covers it and whose modality is the image classifier's. Terms no network covers for this image fall back to
    the decoder (``plans`` edited; findings.json says which, and why)."""
    want = [t for t, pl in plans.items() if pl["mode"] in ("refine", "refine_blend") and pl["hname"] == "organs"]
    for t, pl in plans.items():
        if pl["mode"] in ("refine", "refine_blend") and t not in want:
            pl["mode"] = "decoder"
    if not want:
        return {}
    from medground.models.refine import choose_refiners, load_refiners

    bundles = load_refiners(cfg.refine_weights)
    modality = None
    if bundles:
        from medground.classify import classify

        modality = classify(cimg)["modality"]
    which = choose_refiners(want, bundles, modality)
    cover = [t for t in want if which[t] is not None]
    for t in want:
        if t not in cover:
            plans[t]["mode"] = "decoder"
    info = {"terms": cover, "network": sorted({which[t].name for t in cover}) if cover else None}
    if not cover:
        info["fell_back_to_decoder"] = ("no refinement network installed" if not bundles else
                                        f"no installed network covers these terms on {modality} images")
    elif len(cover) < len(want):
        info["fell_back_to_decoder_for"] = [t for t in want if t not in cover]
    extra["mask_refinement"] = info
    out: dict[tuple[str, int], np.ndarray] = {}
    h, w = pred.new_hw
    for bundle in {id(which[t]): which[t] for t in cover}.values():
        mine = [t for t in cover if which[t] is bundle]
        vecs = g.term_vectors(bundle.term_ids)
        temb = torch.stack([vecs[t] for t in bundle.term_ids]).to(pred.device)
        zs = sorted({z for t in mine for z in [*plans[t]["boxes"], *plans[t].get("free", [])]})
        cols = [bundle.term_ids.index(t) for t in mine]
        for i in range(0, len(zs), 8):
            chunk = zs[i: i + 8]
            with torch.inference_mode():
                emb = torch.cat([pred.embedding(z) for z in chunk])
                heat, _ = g.head(emb, temb)
                pics = torch.cat([pred._slice_tensor(z)[:, 0] for z in chunk])
                prob = bundle.probabilities(pics, heat.float().cpu(), emb.float().cpu())[:, cols, :h, :w]
                prob = F.interpolate(prob, size=pred.hw, mode="bilinear", align_corners=False).transpose(2, 3)
            for k, z in enumerate(chunk):
                for j, t in enumerate(mine):
                    if z in plans[t]["boxes"] or z in plans[t].get("free", ()):
                        out[(t, z)] = prob[k, j].numpy()
    return out


BODY_REGIONS = ("thorax", "abdomen", "pelvis")


def _classified(image: MedImage, memo: dict) -> dict:
    """`medground classify`'s answer for the input, computed once per segment call."""
    if "c" not in memo:
        from medground.classify import classify

        memo["c"] = classify(image)
    return memo["c"]


def _head_probability(c: dict) -> float:
    """The classifier's probability that the image shows the head."""
    return float(c.get("probabilities", {}).get("body_region", {}).get("head", 0.0))


def _out_of_region(tids: list[str], image: MedImage, cfg: TextConfig, onto, memo: dict | None = None) -> dict[str, dict]:
    """term -> why it cannot be in this image: thoracic / abdominal / pelvic terms on an image the classifier takes
    for the head (see ``TextConfig.head_region_gate``)."""
    body = [t for t in tids if getattr(onto.get(t), "region", None) in BODY_REGIONS]
    if cfg.head_region_gate is None or not body:
        return {}
    c = _classified(image, {} if memo is None else memo)
    p = _head_probability(c)
    if c.get("warning") or p < cfg.head_region_gate:
        return {}
    if _too_wide_for_a_head(image, cfg, {} if memo is None else memo):
        return {}  # whatever it looks like
    return {t: {"image_region": "head", "probability": round(p, 3), "term_region": onto.get(t).region} for t in body}


def _too_wide_for_a_head(image: MedImage, cfg: TextConfig, memo: dict) -> bool:
    """``TextConfig.head_max_width_mm``; the width is measured once per segment call (``memo``)."""
    if cfg.head_max_width_mm is None:
        return False
    if "body_width_mm" not in memo:
        memo["body_width_mm"] = body_width_mm(image)
    width = memo["body_width_mm"]
    return width is not None and width > cfg.head_max_width_mm


def body_width_mm(image: MedImage, n: int = 5) -> float | None:
    """The body's width from the patient's right to left (mm, world coordinates): the largest foreground component
    (CT: above -500 HU; otherwise above a tenth of the 0.5-99.5 percentile range) of up to ``n`` axial slices of
    the middle half, the median. None without a trusted geometry (pictures, an identity affine) or foreground."""
    if not image.has_geometry or image.is_color or (image.ndim == 3 and orientation_unknown(image)):
        return None
    a = np.asarray(image.data)
    aff = np.asarray(image.affine, dtype=float)
    ax = int(np.argmax(np.abs(aff[2, :3])))  # the array axis that runs head to foot
    Z = a.shape[ax]
    widths = []
    for k in sorted({int(v) for v in np.linspace(0.25 * (Z - 1), 0.75 * (Z - 1), n)}):
        sl = np.take(a, k, axis=ax).astype(np.float32)
        if image.modality == "CT":
            fg = sl > -500
        else:
            lo, hi = np.percentile(sl, [0.5, 99.5])
            fg = sl > lo + 0.1 * (hi - lo)
        body = largest_component(fg)
        if not body.any():
            continue
        ijk = np.insert(np.array(np.nonzero(body)), ax, k, axis=0)
        wx = aff[0, :3] @ ijk + aff[0, 3]
        widths.append(float(wx.max() - wx.min()))
    return float(np.median(widths)) if widths else None


def hu_ct(image: MedImage) -> bool:
    """A CT whose grey values are Hounsfield units: not tagged as another modality, and looking like HU."""
    if image.modality not in ("CT", "OT") or image.is_color:
        return False
    return looks_like_hu(image.data)


# the air rule's fixed confidence when it finds lungs / finds none (a rule, not a calibrated probability: a cropped
# field of view can hide lungs from it)
AIR_CONFIDENCE = (0.95, 0.8)
# kinds of image: the image classifier's classes and the DICOM / registry modality codes of each
FAMILY_CLASSES = {"radiograph": ("X-ray", "mammography"), "cross-sectional": ("CT", "MRI", "PET"),
                  "ultrasound": ("ultrasound",), "endoscopy": ("endoscopy",), "photograph": ("dermoscopy", "fundus"),
                  "pathology": ("pathology",), "planar nuclear medicine": ("nuclear medicine",)}
FAMILY_MODALITIES = {"radiograph": {"XR", "CR", "DX", "MG", "RF", "XA", "RG"}, "cross-sectional": {"CT", "MR", "PT"},
                     "ultrasound": {"US"}, "endoscopy": {"ES"}, "photograph": {"XC", "OP"}, "pathology": {"SM"},
                     "planar nuclear medicine": {"NM"}}
FAMILY_WORDS = {"radiograph": "a projection radiograph", "cross-sectional": "a cross-sectional image (CT / MR)",
                "ultrasound": "an ultrasound image", "endoscopy": "an endoscopy frame",
                "photograph": "a clinical photograph", "pathology": "a pathology slide",
                "planar nuclear medicine": "a planar nuclear medicine image"}


def image_family(image: MedImage, memo: dict) -> tuple[str | None, float]:
    """(kind of image, probability): "radiograph", "cross-sectional", "ultrasound", "endoscopy", "photograph",
    "pathology" or "planar nuclear medicine" (``FAMILY_CLASSES``); a volume is cross-sectional, a DICOM image is
    what its modality tag says; a 2D picture without one is what the image classifier takes it for (summed over
    the family's classes); None when no family gets more than half."""
    if image.ndim == 3 and image.shape[2] > 1:
        return "cross-sectional", 1.0
    for fam, tags in FAMILY_MODALITIES.items():
        if image.modality in tags:
            return fam, 1.0
    c = _classified(image, memo)
    if c.get("warning"):
        return None, 0.0
    pm = c.get("probabilities", {}).get("modality", {})
    p = {f: float(sum(pm.get(k, 0.0) for k in ks)) for f, ks in FAMILY_CLASSES.items()}
    best = max(p, key=p.get)
    return (best, p[best]) if p[best] > 0.5 else (None, p[best])


def cross_sectional_modality(image: MedImage, memo: dict, min_prob: float = 0.75) -> str | None:
    """"CT" or "MR" for a cross-sectional image: its modality tag (DICOM, or CT guessed from Hounsfield units), else
    what the image classifier takes it for with probability >= ``min_prob``; None when neither says."""
    if image.modality in ("CT", "MR"):
        return image.modality
    c = _classified(image, memo)
    if c.get("warning"):
        return None
    pm = c.get("probabilities", {}).get("modality", {})
    best = max(("CT", "MRI"), key=lambda k: float(pm.get(k, 0.0)))
    return ("MR" if best == "MRI" else "CT") if float(pm.get(best, 0.0)) >= min_prob else None


def ct_picture(image: MedImage, memo: dict) -> bool:
    """A picture (one slice) of a CT: tagged CT, or cross-sectional to the image classifier (its CT / MR / PET
    classes together above half) with CT at least as likely as MR (JPEG figures of chest CT in a lung window are often
    CT 0.45-0.7 / MR 0.2-0.5 to it)."""
    if image.shape[2] != 1:
        return False
    if image.modality == "CT":
        return True
    fam, _ = image_family(image, memo)
    if fam != "cross-sectional" or image.modality not in ("OT", "", None):
        return False
    pm = _classified(image, memo).get("probabilities", {}).get("modality", {})
    return float(pm.get("CT", 0.0)) >= float(pm.get("MRI", 0.0))


def _kinds(modalities) -> str:
    """Registry modality codes in words: "CT, MR and radiograph"."""
    kinds = sorted({"XR": "radiograph", "ES": "endoscopy", "XC": "photograph"}.get(m, m) for m in modalities)
    return " and ".join(filter(None, (", ".join(kinds[:-1]), kinds[-1]))) if kinds else "no"


def _untaught_family(plans: dict, image: MedImage, cfg: TextConfig, onto, memo: dict) -> dict[str, dict]:
    """term -> why it is not answered on this image (see ``TextConfig.family_gate``): a term a head was trained on,
    but never on this kind of image (the organ head: radiographs vs CT / MR, no organ on ultrasound, endoscopy,
    photographs...; the findings head: CT lesions, MR tumours, endoscopy polyps, skin lesions, nothing on
    ultrasound or radiographs, a term counting what it learned as its descendants: "breast lesion" on a breast
    ultrasound with a malignant mass came back absent at confidence 1.00), and untrained anatomy terms (the organ
    head's zero-shot guess) on a kind of image the organ head learned no structure from at all ("retinal vessels" on a
    fundus photograph came back absent)."""
    from medground.segment.vocab import learned_modalities, taught_modalities

    card = {"organs": "grounding", "findings": "grounding_findings"}
    taught = {h: taught_modalities(c) for h, c in card.items()}
    anything = {h: frozenset().union(*t.values()) for h, t in taught.items()}  # what each head learned anything from

    ask = [t for t, pl in plans.items() if pl["hname"] == "findings" or (  # untrained findings: _untrained_findings
        pl["hname"] == "organs" and (taught["organs"].get(t) or onto.get(t).kind != "finding"))]
    if cfg.family_gate is None or not ask:
        return {}
    fam, p = image_family(image, memo)
    if fam is None or p < cfg.family_gate:
        return {}
    seen = FAMILY_MODALITIES[fam]
    out = {}
    for t in ask:
        h = plans[t]["hname"]
        said = f"the image was classified as {FAMILY_WORDS[fam]} (probability {p:.2f}); "
        learned = learned_modalities(t, card[h])
        if learned and not learned & seen:
            because = (f"the {'findings' if h == 'findings' else 'organ'} model learned {onto.get(t).name} from "
                       f"{_kinds(learned)} images only, so it is not drawn here")
        elif not learned and not anything[h] & seen:  # untrained, on a kind of image the head never saw
            because = (f"no model here was trained on {onto.get(t).name}, and the organ model learned structures "
                       f"from {_kinds(anything[h])} images only, so a guess here would be meaningless")
        else:
            continue
        out[t] = {"probability": round(p, 3), "image_family": fam, "not_assessed": True,
                  "because": said + because + ": not assessed rather than absent"}
    return out


def _untrained_findings(plans: dict, heads: dict, cfg: TextConfig, onto) -> dict[str, dict]:
    """term -> why it is not answered: findings (tumours, cysts, effusions...) that neither head was trained on
    (``TextConfig.untrained_findings``). Asked of the organ head untrained, such a finding came back as a guess
    (findings prompts on the organ head alone scored 0.00 Dice on every held-out set, benchmarks/README.md
    section 5; "left kidney cyst" on TotalSegmentator's CT drew the whole kidney, 71 mL, where there is none)."""
    if cfg.untrained_findings != "not assessed":
        return {}
    known = set(getattr(heads["organs"], "term_ids", []) or [])
    fb = heads.get("findings")
    fknown = sorted(getattr(fb, "term_ids", []) or []) if fb is not None else []
    names = ", ".join(onto.get(f).name for f in fknown) or "none"
    out = {}
    for t, pl in plans.items():
        term = onto.get(t)
        if pl["hname"] == "organs" and t not in known and term.kind == "finding":
            out[t] = {"not_assessed": True,
                      "because": f"no model here was trained to find {term.name}; the findings model knows: {names}"}
    return out


def _domain_decoders(plans: dict, cimg: MedImage, pred: SlicePredictor, cfg: TextConfig, extra: dict) -> dict:
    """term -> the fine-tuned LiteMedSAM that decodes it (``TextConfig.ct_decoder``): the organ-head terms the CT
    decoder was trained on, when the image classifier takes the input for CT. findings.json says which terms
    used it, or why none did."""
    want = [t for t, pl in plans.items() if pl["hname"] == "organs" and pl["mode"] not in ("heat", "refine")
            and pl["boxes"]]
    if cfg.ct_decoder is None or not want:
        return {}
    from medground.models.decoders import apply_decoder, packaged_decoder, read_decoder

    path = packaged_decoder("ct") if cfg.ct_decoder == "auto" else cfg.ct_decoder
    if path is None:
        return {}
    _, card = read_decoder(path)
    cover = [t for t in want if t in set(card.get("terms", []))]
    if not cover:
        return {}
    from medground.classify import classify

    c = classify(cimg)
    modality, prob = c["modality"], float(c.get("modality_confidence", 1.0))
    use = modality == "CT" and prob >= cfg.ct_decoder_min_prob
    info = {"decoder": card.get("name", "ct decoder"), "terms": cover if use else []}
    if not use:
        info["not_used_because"] = (f"the image was classified as {modality}, not CT" if modality != "CT" else
                                    f"the image was classified as CT with probability {prob:.2f} only")
    extra["fine_tuned_decoder"] = info
    if not use:
        return {}
    model = apply_decoder(pred.model, path)
    return {t: model for t in cover}


NOT_MR = {"CT", "CR", "DX", "MG", "XA", "RF", "US", "XC", "PT", "NM", "ES", "SM", "OP"}


def mr_probe_terms(g) -> list[str]:
    """The organ-head terms the contrast check looks for: those learned from at least ``WEAK_SLICES`` MR training
    slices (liver, spleen, kidneys, the heart's chambers), whatever the prompt asks: with the asked terms instead,
    "liver, pancreas, left kidney" left TotalSegmentator's T1 MR as acquired (the pancreas, learned from CT only,
    dragged the mean) and drew 8 mL of liver, while "liver" alone inverted it and drew 588 mL."""
    from medground.segment.vocab import WEAK_SLICES, training_slices_by_modality

    known = set(getattr(g, "term_ids", []) or [])
    return sorted(t for t, by in training_slices_by_modality("grounding").items()
                  if by.get("MR", 0) >= WEAK_SLICES and t in known)


def _check_contrast(image: MedImage, cimg: MedImage, pred: SlicePredictor, g, temb: torch.Tensor | None,
                    cfg: TextConfig, memo: dict) -> dict:
    """Grey scale as acquired or inverted inside the body (``TextConfig.contrast_check``, medground.segment.contrast):
    {} when not checked; else what was seen and used (with ``_image`` / ``_predictor`` to use when inverted)."""
    from medground.segment.contrast import invert_within_body

    mode = cfg.contrast_check
    if mode not in ("auto", "off", "inverted"):
        raise ValueError(f"unknown contrast_check {mode!r}; use 'auto', 'off' or 'inverted'")
    if mode == "off" or temb is None or image.is_color or image.modality in NOT_MR:
        return {}
    info: dict[str, Any] = {}
    if mode == "auto":
        c = _classified(image, memo)
        modality = c.get("modality")
        head = _head_probability(c)
        if c.get("warning") or (image.modality != "MR" and modality != "MRI"):
            return {}
        if cfg.head_region_gate is not None and head >= cfg.head_region_gate \
                and not _too_wide_for_a_head(image, cfg, memo):
            return {}  # a head: the organ head's body terms are gated anyway
    inv = invert_within_body(cimg)
    if inv is cimg:
        return {}
    pinv = SlicePredictor(inv, model=pred.model, device=pred.device, batch_size=pred.batch_size,
                          progress=pred.progress)
    if mode == "inverted":
        return {"used": "inverted", "checked": False, "_image": inv, "_predictor": pinv}
    Z = cimg.shape[2]
    n = max(1, min(cfg.contrast_probe_slices, Z))
    zs = sorted({int(round(v)) for v in np.linspace(0.1 * (Z - 1), 0.9 * (Z - 1), n)})
    probe = mr_probe_terms(g)
    pemb = torch.stack([v for v in g.term_vectors(probe).values()]).to(temb.device) if probe else temb
    seen = {}
    for name, p in (("as acquired", pred), ("inverted", pinv)):
        p.prepare(zs)
        with torch.inference_mode():
            emb = torch.cat([p.embedding(z) for z in zs])
            _, logits = g.head(emb, pemb)
        # the mean over the probe slices and the probe organs: the image's grey scale, not the prompt's
        seen[name] = round(float(torch.sigmoid(logits).mean()), 3)
    better = (seen["inverted"] >= seen["as acquired"] + cfg.contrast_margin and seen["inverted"] >= cfg.contrast_min)
    info.update({"used": "inverted" if better else "as acquired", "checked": True, "probe_slices": len(zs),
                 "organ_presence": seen,
                 "probe_terms": probe,
                 "why": "the organs learned from MR are clearer with grey values inverted inside the body (e.g. a "
                        "T1-weighted image; the organ head learned fat-suppressed T2 and cine MR)" if better else
                        "the organs learned from MR are at least as clear as acquired"})
    if better:
        info.update({"_image": inv, "_predictor": pinv})
    return info


# --------------------------------------------------------------------------- main entry
def route_terms(term_ids: list[str], organs, findings=None) -> dict[str, str]:
    """What segments each term: "organs" when the organ head was trained on it; else "findings" when the
    findings head was; else "atlas" for a brain atlas label (registration, :mod:`medground.segment.atlas`);
    else "organs" (a term nobody was trained on keeps the organ head with a text vector embedded on the fly;
    its answer is flagged ``trained: false``)."""
    known = set(getattr(organs, "term_ids", []))
    fknown = set(getattr(findings, "term_ids", [])) if findings is not None else set()

    def route(t: str) -> str:
        if t in known:
            return "organs"
        if t in fknown:
            return "findings"
        return "atlas" if is_atlas_term(t) else "organs"

    return {t: route(t) for t in dict.fromkeys(term_ids)}


def _check_lateral(per_term: dict, terms: list[str], image: MedImage, cfg: TextConfig, memo: dict,
                   extra: dict) -> None:
    """On a radiograph that looks like a lateral view (:func:`lateral_view`), ``terms`` (learned from frontal views)
    are not assessed; ``extra["view_check"]`` says what was seen."""
    # whatever kind of picture: one lung field across the middle is a side view (a sagittal slice alike)
    fam, p = image_family(image, memo)
    lat = lateral_view(per_term["lung"]["mask"][:, :, 0], cfg)
    areas = [float(per_term[t]["mask"].sum()) for t in ("lung_left", "lung_right")]
    if lat and min(areas) >= cfg.lateral_pair_ratio * max(areas) > 0:
        lat = None  # two lungs of a size: a frontal view after all
    extra["view_check"] = {"lateral": bool(lat), **(lat or {})}
    if not lat:
        return
    because = (f"the lungs were drawn as one lung field across the middle of the picture (centre {lat['centre']:.2f},"
               f" {lat['width']:.0%} of its width): a side view, on which the left and right lungs overlap, while "
               "the model learned this structure from frontal views only: not assessed rather than absent")
    for t in terms:
        pt = per_term[t]
        pt["mask"] = np.zeros_like(pt["mask"])
        pt["present"], pt["slices"] = False, []
        pt["outside"] = {"not_assessed": True, "because": because, "probability": round(p, 3),
                         "image_family": fam, "view": "lateral"}


def _rival_heat(bundle, pred: SlicePredictor, term: str, cfg: TextConfig):
    """(z, mask (X, Y)) -> whether any other term ``bundle`` knows has a mean heat probability inside ``mask`` of at
    least the term's ``extend_max_rival_heat``. None when that is off."""
    limit = _per_term(cfg.extend_max_rival_heat, term, bundle, "extend_max_rival_heat", 0.3)
    if limit is None:
        return None
    others = [t for t in bundle.term_ids if t != term]
    vecs = bundle.term_vectors(others)
    temb = torch.stack([vecs[t] for t in others]).to(pred.device)

    def rival(z: int, mask: np.ndarray) -> bool:
        with torch.inference_mode():
            heat, _ = bundle.head(pred.embedding(z), temb)
        on = heat_on_slice(heat, pred)[0]  # (T, Y, X)
        return float(on[:, torch.from_numpy(mask.T)].mean(dim=1).max()) >= float(limit)

    return rival


KEEP_STACKED = 0.25  # TextConfig.keep_stacked where the head's calibration says nothing


def stacked_fraction(term: str, bundle, cfg: TextConfig) -> float | None:
    """``TextConfig.keep_stacked`` for ``term`` (None: the largest 3D component only)."""
    from medground.ontology import anatomy_extents

    value = _per_term(cfg.keep_stacked, term, bundle, "keep_stacked", KEEP_STACKED)
    if value is None or anatomy_extents().get(term, np.inf) < cfg.keep_stacked_min_extent:
        return None
    return float(value)


def keep_stacked(vol: np.ndarray, min_fraction: float, max_gap: int, info: dict | None = None) -> np.ndarray:
    """The largest 3D component of ``vol`` (X, Y, Z) with the components that continue it along z (see
    ``TextConfig.keep_stacked``), added from the largest down while they touch what is kept. ``info["added"]``:
    how many were added to the largest."""
    from scipy import ndimage

    comps = components(vol)
    if comps is None:
        return vol
    crop, lab, sizes = comps
    objs = ndimage.find_objects(lab)
    order = [int(i) for i in np.argsort(-sizes)]
    kept = [order[0]]
    box = [[objs[order[0]][a].start, objs[order[0]][a].stop] for a in range(3)]
    rest = [i for i in order[1:] if sizes[i] >= min_fraction * sizes[order[0]]]
    grown = True
    while grown:
        grown = False
        for i in rest:
            o = objs[i]
            gap = max(o[2].start - box[2][1], box[2][0] - o[2].stop)  # slices between them along z (< 0: overlap)
            inplane = all(o[a].start < box[a][1] and box[a][0] < o[a].stop for a in (0, 1))
            if 0 <= gap <= max_gap and inplane:
                kept.append(i)
                for a in range(3):
                    box[a] = [min(box[a][0], o[a].start), max(box[a][1], o[a].stop)]
                rest.remove(i)
                grown = True
                break
    if info is not None:
        info["added"] = len(kept) - 1
    out = np.zeros_like(vol, dtype=bool)
    out[crop] = np.isin(lab, [k + 1 for k in kept])
    return out


def _extend_ends(vol: np.ndarray, pred: SlicePredictor, decoder, pz: np.ndarray, threshold: float, dz: float | None,
                 cfg: TextConfig, rival=None) -> list[int]:
    """``TextConfig.extend_runs``: grow ``vol`` (X, Y, Z) past both ends of its slices; returns the slices added.
    ``rival(z, mask)``: whether another term is too hot inside a grown mask (see ``extend_max_rival_heat``)."""
    from medground.evaluate.metrics import dice_score
    from medground.segment.engine import PropagationConfig, _connected_to, _expand, _mask_box, _unit_gray

    X, Y, Z = vol.shape
    zs = np.where(vol.any(axis=(0, 1)))[0]
    if zs.size == 0:
        return []
    pc = PropagationConfig()
    limit = int(cfg.extend_max_mm // dz) if dz else int(cfg.extend_max_slices)
    added = []
    for z0, step in ((int(zs[0]), -1), (int(zs[-1]), 1)):
        prev = vol[:, :, z0]
        vals = _unit_gray(pred, z0)[prev]
        ref_mean = float(vals.mean())
        max_shift = max(pc.intensity_min_shift, pc.intensity_sd * float(vals.std()))
        z, n = z0 + step, 0
        while 0 <= z < Z and n < limit and pz[z] >= cfg.extend_min_presence * threshold:
            box = _mask_box(prev)
            r = pred.predict_many(z, boxes=[_expand(box, pc, (X, Y))], model=decoder)[0]
            m = _connected_to(r.mask, prev)
            area, parea = int(m.sum()), int(prev.sum())
            if (area < pc.min_area_px or r.iou < cfg.extend_min_iou or area > cfg.extend_max_growth * parea
                    or dice_score(m, prev) < cfg.extend_min_overlap
                    or abs(float(_unit_gray(pred, z)[m].mean()) - ref_mean) > max_shift
                    or (rival is not None and rival(z, m))):
                break
            vol[:, :, z] = m
            added.append(z)
            prev, z, n = m, z + step, n + 1
    return sorted(added)


def _chambers_off_kidneys(per_term: dict, chambers: list[str]) -> None:
    """``TextConfig.chamber_kidney_check``: each chamber's slices that lie mostly inside a kidney are removed."""
    kid = np.zeros_like(per_term[KIDNEYS[0]]["mask"], dtype=bool)
    for k in KIDNEYS:
        kid |= per_term[k]["mask"].astype(bool)
    if not kid.any():
        return
    for t in chambers:
        pt = per_term[t]
        vol = pt["mask"].astype(bool)
        area = vol.sum(axis=(0, 1))
        inside = (vol & kid).sum(axis=(0, 1))
        off = np.where((area > 0) & (inside >= 0.5 * area))[0]
        if not len(off):
            continue
        vol = vol.copy()
        vol[:, :, off] = False
        pt["mask"], pt["present"] = vol, bool(vol.any())
        pt["on_kidneys"] = [int(z) for z in off]
        pt["slices"] = [z for z in pt.get("slices", []) if z not in pt["on_kidneys"]]
        if not vol.any():
            pt["kidney_instead"] = True


def _carve(per_term: dict, carve: dict) -> None:
    """Walls around cavities (``TextConfig.carve_cavities``): on every slice with the wall, the wall's mask with
    its holes and the cavity filled, minus the cavity."""
    from scipy import ndimage

    for wall, cav in carve.items():
        if wall not in per_term or cav not in per_term or not per_term[wall]["present"]:
            continue
        m, c = per_term[wall]["mask"], per_term[cav]["mask"]
        for z in np.where(m.any(axis=(0, 1)))[0]:
            m[:, :, z] = ndimage.binary_fill_holes(m[:, :, z] | c[:, :, z]) & ~c[:, :, z]
        pt = per_term[wall]
        pt["present"] = bool(m.any())
        pt["slices"] = [z for z in pt["slices"] if m[:, :, z].any()]


def _assemble(image: MedImage, prompts: list[str], resolved: list, per_term: dict, heads: dict,
              canon, stand_ins: list[dict] | None = None, family: str | None = None,
              modality: str | None = None) -> list[SegmentationResult]:
    """One result per prompt: the union of its terms' masks in the input's grid. ``modality``: "CT" or "MR" when
    the cross-sectional image is known to be one (an organ-head term learned only from the other is flagged)."""
    shape = image.data.shape[:3]
    trained = getattr(heads["organs"], "term_ids", None)
    trained = None if trained is None else set(trained)
    from medground.segment.vocab import WEAK_SLICES, training_slices, training_slices_by_modality, weak_finding

    slices_seen = (training_slices("grounding", FAMILY_MODALITIES.get(family)) if heads["organs"] is not None
                   and trained is not None else {})  # in this kind of image (all kinds when it is not known)
    by_modality = (training_slices_by_modality("grounding") if modality and family == "cross-sectional"
                   and heads["organs"] is not None and trained is not None else {})
    results = []
    for prompt, res, standing in zip(prompts, resolved, stand_ins or [{}] * len(prompts)):
        parts = [per_term[t.id] for t in res.terms]
        vol = np.zeros(shape, dtype=bool)
        for p in parts:
            vol |= p["mask"] if p.get("input_grid") else canon.back(p["mask"]).astype(bool)
        present = bool(vol.any())
        presence = max(p["presence"] for p in parts)
        conf = presence * (np.mean([p["iou"] for p in parts if p["present"]]) if present else 1.0)
        if not present:
            conf = 1.0 - presence  # confidence that it is absent
            gates = [p["outside"]["probability"] for p in parts
                     if p.get("outside") and not p["outside"].get("not_assessed")]
            if gates:
                conf = max(conf, min(gates))
        r = SegmentationResult(vol, {"type": "text", "text": prompt}, float(conf), prompt)
        terms = []
        for t in res.terms:
            pt = per_term[t.id]
            src = (pt["atlas"] + " atlas (registration)" if pt["head"] == "atlas" else
                   f"CT air rule ({pt['air_rule']}, no learned model)" if pt["head"] == "air" else heads[pt["head"]].name)
            entry = {"id": t.id, "name": t.name, "present": pt["present"],
                     "presence_probability": round(pt["presence"], 4), "grounding_head": src}
            if pt.get("too_short"):  # drawn, then judged too short to be this structure
                entry["absent_because"] = (f"drawn over {pt['too_short']['drawn_mm']} mm only; the shortest whole "
                                           f"one in the training references spans {pt['too_short']['shortest_seen_mm']} mm")
            if pt.get("kidney_instead"):  # everything drawn lay on the kidneys
                entry["absent_because"] = (f"what the model drew for {t.name} lay inside the kidneys it drew on "
                                           f"{len(pt['on_kidneys'])} slice(s): a kidney, not {t.name}")
            elif pt.get("on_kidneys"):
                entry["removed_slices_on_kidneys"] = len(pt["on_kidneys"])
            if pt.get("extended") and pt["present"]:  # TextConfig.extend_runs grew the run past the head's ends
                entry["extended_slices"] = pt["extended"]
            if pt.get("stacked") and pt["present"]:  # TextConfig.keep_stacked joined pieces split along z
                entry["stacked_pieces"] = pt["stacked"]
            if pt.get("outside"):  # a thoracic / abdominal / pelvic structure asked of a head image
                o = pt["outside"]
                entry["absent_because"] = o.get("because") or (
                    f"the image was classified as {o['image_region']} (probability {o['probability']:.2f}); "
                    f"{t.name} lies in the {o['term_region']}")
            if pt["head"] == "organs" and trained is not None and t.id not in trained:
                entry["trained"] = False  # the head never saw this term: its answer is zero-shot
            if pt["head"] == "organs" and 0 < slices_seen.get(t.id, WEAK_SLICES) < WEAK_SLICES:
                entry["training_slices"] = slices_seen[t.id]
            taught = {m: n for m, n in by_modality.get(t.id, {}).items() if n > 0 and m in ("CT", "MR")}
            if pt["head"] == "organs" and taught and modality not in taught:
                entry["learned_from"] = sorted(taught)  # e.g. the pancreas (CT only) asked of an MR
            if pt["head"] == "findings":  # few slices showing it, a poor held-out score: absent or present, weak
                wf = weak_finding(t.id, FAMILY_MODALITIES.get(family))
                if wf:
                    entry["training_slices"] = wf["training_slices"]
                    entry["heldout_dice"] = wf["heldout_dice"]
            if t.id in standing:  # drawn for an untrained part of it
                entry["stands_in_for"] = {"id": standing[t.id].id, "name": standing[t.id].name}
            terms.append(entry)
        r.info = {"terms": terms, "present": present, "presence_probability": round(float(presence), 4)}
        if standing:
            names = {t.id: t.name for t in res.terms}
            r.info["warning"] = "; ".join(f"no model was trained on {o.name}: the mask is of {names[pid]}, the trained "
                                          "structure that contains it" for pid, o in standing.items())
        weak = [e for e in terms if e.get("training_slices") is not None]
        findings_weak = bool(weak) and all("heldout_dice" in e for e in weak)  # its "absent" is no better either
        if (present or findings_weak) and weak and len(weak) == len(terms):  # learned from a handful of slices
            r.confidence = min(r.confidence, 0.5)
            r.info["training_slices"] = max(e["training_slices"] for e in weak)
            r.info["warning"] = (f"learned from at most {r.info['training_slices']} training slices"
                                 + (" showing it (held-out Dice " + ", ".join(
                                     f"{e['heldout_dice']:.2f}" for e in weak if e["heldout_dice"] is not None) + ")"
                                    if findings_weak else "")
                                 + ": a weak answer, confidence capped at 0.5")
        other = [e for e in terms if e.get("learned_from")]
        if other and len(other) == len(terms) and not r.info.get("warning"):  # never validated on this modality
            r.confidence = min(r.confidence, 0.5)
            r.info["learned_from"] = sorted({m for e in other for m in e["learned_from"]})
            r.info["warning"] = (f"learned from {_kinds(r.info['learned_from'])} images only, asked of {modality}: "
                                 f"{'drawn' if present else 'absent'} is not validated here, confidence capped at 0.5")
        if all(e.get("trained") is False for e in terms):  # a zero-shot guess is no better than even odds
            r.confidence = min(r.confidence, 0.5)
            r.info["warning"] = "no model was trained on this structure: a zero-shot guess, confidence capped at 0.5"
        if not present and all((per_term[t.id].get("outside") or {}).get("not_assessed") for t in res.terms):
            r.confidence = 0.5  # not looked for: no better than even odds either way
            r.info["not_assessed"] = "; ".join(dict.fromkeys(e["absent_because"] for e in terms))  # the reasons
            r.info["warning"] = ("not assessed: no model here was trained to find this structure in this kind of "
                                 "image (see absent_because)")
        results.append(r)
    return results


def segment_text(image: MedImage, prompts: list[str], device: str = "cpu", progress: bool = False,
                 model=None, grounding=None, cfg: TextConfig | None = None, findings: Any = "auto",
                 atlas_cfg=None) -> tuple[list[SegmentationResult], dict[str, Any]]:
    """Segment every text prompt; returns results in the input's grid and extra findings fields.

    ``grounding``: the organ head (default: the packaged one). ``findings``: the findings head
    (lesions, tumours, polyps...); ``"auto"`` loads the packaged one when ``grounding`` is not given,
    ``None`` disables it. Both heads read the same LiteMedSAM embedding of each slice."""
    from medground.io import validate
    from medground.models.grounding import load_findings, load_grounding
    from medground.ontology import Ontology

    cfg = cfg or TextConfig()
    validate(image)
    onto = Ontology.default()
    resolved = [onto.resolve(p) for p in prompts]  # unknown terms raise MedGroundInputError
    g = grounding or load_grounding(device=device)
    if isinstance(findings, str) and findings == "auto":
        findings = load_findings(device=device) if grounding is None else None
    fb = findings or None
    resolved = use_wholes(resolved, g, cfg, "2d" if image.ndim == 2 else "3d")
    resolved, stand_ins = use_containing(resolved, g, fb, onto)
    all_ids = [t.id for r in resolved for t in r.terms]
    route = route_terms(all_ids, g, fb)
    carve = {t: c for t, c in CAVITIES.items() if cfg.carve_cavities and route.get(t) == "organs"
             and c in set(getattr(g, "term_ids", []))}
    for c in carve.values():
        route.setdefault(c, "organs")  # segmented for the carving only when not asked for
    chambers = [t for t in CHAMBERS if route.get(t) == "organs"]
    if not (cfg.chamber_kidney_check and image.ndim == 3 and set(KIDNEYS) <= set(getattr(g, "term_ids", []))):
        chambers = []
    for t in KIDNEYS if chambers else ():
        route.setdefault(t, "organs")  # for the chamber check only when not asked for
    lateral_probe = [t for t in FRONTAL_ONLY if route.get(t) == "organs"]
    if not (cfg.lateral_check and image.ndim == 2 and "lung" in set(getattr(g, "term_ids", []))):
        lateral_probe = []
    if lateral_probe:  # the whole lung field and the two lungs, for the view check only when not asked for
        for t in ("lung", "lung_left", "lung_right"):
            route.setdefault(t, "organs")
    atlas_ids = [t for t in route if route[t] == "atlas"]
    per_term: dict[str, dict] = {}
    extra: dict[str, Any] = {}
    if atlas_ids:  # registration to the brain atlases; masks already in the input's grid
        ar = segment_atlas(image, atlas_ids, atlas_cfg)
        for t in atlas_ids:
            per_term[t] = {"mask": ar.masks[t], "presence": ar.inside[t] if ar.info.get("ok") else 0.0,
                           "iou": 1.0, "present": bool(ar.masks[t].any()), "head": "atlas", "input_grid": True,
                           "atlas": ar.atlas[t]}
        extra["atlas_registration"] = ar.info
    memo: dict = {}  # the image classifier's answer, asked once
    canon = None
    # the lungs by their air (medground.segment.air): of a CT in Hounsfield units, or of an 8-bit picture of a CT
    # slice when it is in a lung window
    air_ids = [t for t in route if t in LUNG_TERMS and route[t] == "organs"]
    hu = bool(air_ids) and hu_ct(image)
    air, rule = None, None
    if air_ids and cfg.ct_lungs_by_air and hu:
        air, info = lung_masks(image.data, image.affine)  # grey (X, Y, Z): hu_ct refuses colour
        rule = "Hounsfield units"
        extra["lungs_by_air"] = info
    elif air_ids and cfg.picture_lungs_by_air and image.shape[2] == 1 and not hu and ct_picture(image, memo):
        canon = canonicalize(image, g.orientation, cfg, memo)
        drawn, info = picture_lung_masks(to_unit_range(canon.image, z=0))
        info["orientation"] = canon.info  # left / right were read in this view
        rule = "lung window of a picture"
        extra["lungs_by_air"] = info
        if drawn is not None:
            air = {t: np.asarray(canon.back(drawn[t][:, :, None]), dtype=bool).reshape(image.shape) for t in air_ids}
    for t in air_ids if air is not None else ():
        found = bool(air[t].any())
        per_term[t] = {"mask": air[t], "presence": AIR_CONFIDENCE[0] if found else 1 - AIR_CONFIDENCE[1],
                       "iou": 1.0, "present": found, "head": "air", "input_grid": True, "air_rule": rule}
        route[t] = "air"
    heads = {"organs": g, "findings": fb}
    used = [h for h in ("organs", "findings") if h in route.values()]
    if not used:  # atlas / air terms only: no slice encoding needed
        extra["grounding_model"] = " + ".join(n for n, h in (("brain atlas registration", "atlas"),
                                                             ("CT air rule", "air")) if h in route.values())
        return _assemble(image, prompts, resolved, per_term, heads, None, stand_ins), extra
    term_vecs = {h: heads[h].term_vectors([t for t in route if route[t] == h], onto) for h in used}
    canon = canon or canonicalize(image, g.orientation, cfg, memo)
    cimg = canon.image
    pred = SlicePredictor(cimg, model=model, device=device, batch_size=cfg.batch_size, progress=progress)
    X, Y, Z = cimg.shape
    tids = [t for t in route if route[t] not in ("atlas", "air")]
    col = {h: [t for t in tids if route[t] == h] for h in used}
    temb = {h: torch.stack([term_vecs[h][t] for t in col[h]]).to(pred.device) for h in used}
    thresholds = {h: np.array([presence_threshold(t, heads[h], cfg) for t in col[h]]) for h in used}
    contrast = _check_contrast(image, cimg, pred, g, temb.get("organs"), cfg, memo)
    if contrast.get("used") == "inverted":
        cimg, pred = contrast.pop("_image"), contrast.pop("_predictor")
    step = _coarse_step(canon.image, cfg, findings_used="findings" in used)
    max_step = _coarse_step(canon.image, cfg, findings_used="findings" in used, gap_mm=cfg.sparse_gap_mm)
    edge_step = _coarse_step(canon.image, cfg, findings_used="findings" in used, gap_mm=cfg.sparse_edge_mm)
    heat_t, pres_t, encoded = _score_slices(pred, Z, step, heads, used, temb, thresholds, cfg, max_step, edge_step)
    if Z > 2:  # per term, each slice's heat logits mixed with its two neighbours' (TextConfig.heat_z_smooth)
        for h in used:
            w = torch.tensor([float(_per_term(cfg.heat_z_smooth, t, heads[h], "heat_z_smooth", 0.0)) for t in col[h]])
            if bool((w > 0).any()):
                heat_t[h] = smooth_z(heat_t[h], w)
    # 1. per term: the slices it is present on and its heat boxes there
    plans: dict[str, dict] = {}
    for tid in tids:
        hname = route[tid]
        j = col[hname].index(tid)
        heat_all = heat_t[hname][:, j]  # (Z, G, G)
        pz = pres_t[hname][:, j]
        flags = pz >= presence_threshold(tid, heads[hname], cfg)
        zs: list[int] = []
        if Z == 1:
            zs = [0] if flags[0] else []
        else:
            runs = _runs(flags, cfg.max_gap)
            if runs:
                best = max(runs, key=lambda r: pz[r[0]: r[1] + 1].sum())
                end = _per_term(cfg.run_end_presence, tid, heads[hname], "run_end_presence", None)
                zs = list(range(*_trim_run(best, pz, None if end is None else float(end))))
        relative = cfg.findings_relative_heat if hname == "findings" else cfg.organ_relative_heat
        refine = heat_refine(tid, heads[hname], cfg)
        margin = box_margin(tid, heads[hname], cfg)
        boxes = {z: heat_boxes(heat_all[z], pred, cfg, relative, z, refine, margin)
                 for z in zs if encoded[z]}  # the others are filled below
        plans[tid] = {"hname": hname, "pz": pz, "zs": zs, "boxes": {z: b for z, b in boxes.items() if b[0]},
                      "mode": mask_mode(tid, heads[hname], cfg)}
        if Z > 1 and zs and plans[tid]["mode"] == "refine" and refine_slices(tid, heads[hname], cfg) == "volume":
            plans[tid]["free"] = [int(z) for z in np.where(encoded)[0]]  # the network decides on every slice
    # a body organ asked of a head image: absent, so nothing of it is decoded
    outside = _out_of_region(list(plans), image, cfg, onto, memo)  # the input as `medground classify` sees it
    outside.update({t: o for t, o in _untaught_family(plans, image, cfg, onto, memo).items() if t not in outside})
    outside.update({t: o for t, o in _untrained_findings(plans, heads, cfg, onto).items() if t not in outside})
    for tid in outside:
        plans[tid]["boxes"] = {}
        plans[tid].pop("free", None)
    refined = _refine_plans(plans, canon.image, pred, g, cfg, extra)
    decoder_of = _domain_decoders(plans, canon.image, pred, cfg, extra)  # classified as acquired
    # 2. the decoder: every box of every term on a slice in one batch
    decoded: dict[tuple[str, int], list] = {}
    by_slice: dict[int, list[tuple[str, int]]] = {}
    for tid, pl in plans.items():
        if pl["mode"] not in ("heat", "refine"):
            for z, (bx, _, _) in pl["boxes"].items():
                by_slice.setdefault(z, []).extend((tid, i) for i in range(len(bx)))
    for z, req in sorted(by_slice.items()):
        groups: dict[int, list] = {}  # requests per decoder (the pretrained one, a domain's fine-tuned one)
        for t, k in req:
            groups.setdefault(id(decoder_of.get(t)), []).append((t, k))
        for grp in groups.values():
            dec = decoder_of.get(grp[0][0])
            rs = []
            for i in range(0, len(grp), 16):
                chunk = grp[i: i + 16]
                rs += pred.predict_many(z, boxes=[plans[t]["boxes"][z][0][k] for t, k in chunk], model=dec)
            for (t, _), r in zip(grp, rs):
                decoded.setdefault((t, z), []).append(r)
    # 3. per term: the masks, filled between encoded slices, cleaned in 3D
    for tid, pl in plans.items():
        mode, zs, pz = pl["mode"], pl["zs"], pl["pz"]
        vol = np.zeros((X, Y, Z), dtype=bool)
        ious = []
        free = pl.get("free") if mode == "refine" else None  # the network on every encoded slice of the volume
        if free:
            zs = list(range(Z))  # slices left out between encoded ones are filled below
        for z in free or sorted(pl["boxes"]):
            if mode == "refine":  # the refinement network's redrawing of the term
                m = refined[(tid, z)] > 0.5
                vol[:, :, z] |= m
                if m.any():
                    ious.append(float(refined[(tid, z)][m].mean()))
                continue
            _, pm, blobs = pl["boxes"][z]
            if mode == "heat":  # the blobs themselves (above the slice's heat threshold, big enough)
                vol[:, :, z] |= blobs
                ious.append(float(pm[blobs].mean()))
                continue
            rs = decoded[(tid, z)]
            if mode in ("blend", "refine_blend"):  # the decoder's probability with the heat's or the network's
                dec = np.max([r.prob for r in rs], axis=0)
                m = (dec + (refined[(tid, z)] if mode == "refine_blend" else pm)) / 2 > 0.5
                if m.any():
                    vol[:, :, z] |= m
                    ious.append(float(np.mean([r.iou for r in rs])))
                continue
            for r in rs:
                m = r.mask & (pm > cfg.heat_gate) if mode == "gated" else r.mask
                if not m.any():
                    continue
                vol[:, :, z] |= m
                ious.append(r.iou)
        _fill_skipped(vol, zs, encoded)
        extended, pieces = 0, {"added": 0}
        head = heads[pl["hname"]]
        if Z > 1 and cfg.keep_largest_3d and vol.any():
            stacked = stacked_fraction(tid, head, cfg)
            vol = largest_component(vol) if stacked is None else keep_stacked(vol, stacked, cfg.max_gap, pieces)
        if Z > 1 and vol.any() and tid not in outside and _per_term(cfg.extend_runs, tid, head, "extend_runs",
                                                                   False) is True:
            grown = _extend_ends(vol, pred, decoder_of.get(tid), pz, presence_threshold(tid, head, cfg),
                                 _trusted_dz(canon.image), cfg, rival=_rival_heat(head, pred, tid, cfg))
            zs = sorted(set(zs) | set(grown))
            extended = len(grown)
        short = _too_short(vol, tid, canon.image, cfg) if Z > 1 else None
        if short:
            vol[:] = False
        present = bool(vol.any())
        per_term[tid] = {"mask": vol, "too_short": short, "outside": outside.get(tid),
                         "presence": float(pz.max()) if Z > 1 else float(pz[0]),
                         "slices": [z for z in zs if vol[:, :, z].any()], "iou": float(np.mean(ious)) if ious else 0.0,
                         "present": present, "head": pl["hname"], "extended": extended,
                         "stacked": pieces["added"]}
    if chambers:
        _chambers_off_kidneys(per_term, chambers)
    _carve(per_term, carve)
    if lateral_probe:
        _check_lateral(per_term, lateral_probe, image, cfg, memo, extra)
    family = image_family(image, memo)[0]
    results = _assemble(image, prompts, resolved, per_term, heads, canon, stand_ins, family,
                        cross_sectional_modality(image, memo) if family == "cross-sectional" else None)
    extra = {**extra, "orientation": canon.info, **({"contrast": contrast} if contrast else {}),
             "slice_sampling": {"mode": "all" if step == 1 else "adaptive", "slices": int(Z),
                                "slices_encoded": int(encoded.sum()), "first_step": int(step)},
             "grounding_model": (" + ".join(heads[h].name for h in used) if used != ["organs"] else g.name)
             + (" + brain atlas registration" if atlas_ids else "")
             + (" + CT air rule" if "air" in route.values() else "")}
    return results, extra
