"""The lungs of a CT in Hounsfield units, by their air: no learned model.

The organ head learned the lungs from chest radiographs only (JSRT, covid-cxr); on CT it drew "right lung" over the
liver. A CT whose intensities are Hounsfield units shows the aerated lung directly, so the lungs are found the
classic way (threshold, remove the air around the body, connected components), with two checks that keep bowel and
stomach gas out:

1. air: voxels below ``air_hu`` (-400 HU); on each axial slice the air regions that touch the slice's border (the
   air around the patient, the gap under the table) are removed; their median is the scanner's own air;
2. 3D connected components of what is left, each kept when it holds at least ``min_ml`` (on a single slice: covers
   at least ``min_area_mm2``) and the median of its
   interior (one voxel in from its edge, in plane) lies at least ``above_air_hu`` above the scanner's air and
   below ``max_median_hu``: aerated lung with its vessels reads about -850 to -750 HU (severe emphysema -900);
   gas in the bowel or the stomach is air (on TotalSegmentator's two example CTs 11-42 HU above their
   air, against 174-190 HU for the lung bases);
3. in a volume, a lung reaches the top ``top_share`` of the slices or spans at least ``min_span_mm`` head to
   foot (colon gas and stool low in an abdomen do neither);
4. left and right: each kept voxel goes to the patient's left or right of the body's midline on its slice, from
   world coordinates (the affine), not from array order.

Known limits: the trachea and main bronchi join the lungs (split at the midline); a field of view cropped
through the lungs (the lung touching the image border) loses them; stool mottled with gas high in the abdomen
can pass the checks. Measured in benchmarks/README.md (section 4, lungs on CT).

``lung_masks``: volumes (and single slices) whose grey values look like Hounsfield units (``looks_like_hu``).
``picture_lung_masks``: an 8-bit picture of a CT slice (a figure, a screenshot), read only when it is in a lung window
(``PictureAirConfig``); measured in benchmarks/README.md (section 4, lungs on 8-bit pictures of CT slices).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LUNG_TERMS = ("lung_left", "lung_right", "lung")


@dataclass
class AirConfig:
    air_hu: float = -400.0
    above_air_hu: float = 80.0
    max_median_hu: float = -600.0
    min_ml: float = 10.0
    # a single slice: a lung's in-plane area instead of ``min_ml`` (a 1.25 mm slice through both lungs holds only
    # ~8 mL of each: the volume threshold dropped them)
    min_area_mm2: float = 1000.0
    top_share: float = 0.15
    min_span_mm: float = 100.0


def looks_like_hu(data: np.ndarray) -> bool:
    """True when the grey values look like CT Hounsfield units: some air (-1100 to -900) and a good share of soft
    tissue (-200 to 300), whatever the padding outside the field of view (-1024, -2048, -3024)."""
    a = np.asarray(data)
    if a.ndim < 2 or not np.issubdtype(a.dtype, np.number) or a.size == 0:
        return False
    step = max(1, a.size // 2_000_000)
    v = a.reshape(-1)[::step].astype(np.float32)
    air = np.mean((v >= -1100) & (v <= -900))
    soft = np.mean((v >= -200) & (v <= 300))
    return bool(air >= 0.01 and soft >= 0.1)


def _internal_air(a: np.ndarray, cfg: AirConfig) -> np.ndarray:
    from scipy import ndimage

    air = a < cfg.air_hu
    out = np.zeros_like(air)
    for z in range(a.shape[2]):
        lab, n = ndimage.label(air[:, :, z])
        if n == 0:
            continue
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        out[:, :, z] = air[:, :, z] & ~np.isin(lab, edge[edge > 0])
    return out


def lung_masks(data: np.ndarray, affine: np.ndarray, cfg: AirConfig | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """term id -> mask in the input's grid (``lung_left``, ``lung_right``, ``lung`` = both) and what was found.

    ``data`` is (X, Y[, Z]) in Hounsfield units; ``affine`` maps voxel indices to world mm, RAS+ (as nibabel:
    +x points to the patient's right, so the patient's left has the smaller x). A volume stored in another axis
    order (sagittal or coronal slices, flipped axes) is brought to RAS axis order first, so that "slices" are
    axial and the head end is known, and the masks are brought back to the input's grid."""
    a = np.asarray(data, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] == 1:
        return _lung_masks_ras(a, affine, cfg)
    from nibabel import orientations as no

    ornt = no.io_orientation(affine)
    if np.array_equal(ornt, no.axcodes2ornt(("R", "A", "S"))):
        return _lung_masks_ras(a, affine, cfg)
    ras = no.apply_orientation(a, ornt)
    masks, info = _lung_masks_ras(ras, affine @ no.inv_ornt_aff(ornt, a.shape), cfg)
    back = no.ornt_transform(no.axcodes2ornt(("R", "A", "S")), ornt)
    return {k: np.ascontiguousarray(no.apply_orientation(m, back)) for k, m in masks.items()}, info


def _lung_masks_ras(a: np.ndarray, affine: np.ndarray, cfg: AirConfig | None = None) -> tuple[dict[str, np.ndarray], dict]:
    from scipy import ndimage

    cfg = cfg or AirConfig()
    flat = a.ndim == 2
    if flat:
        a = a[:, :, None]
    vox_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0 or 1e-3
    internal = _internal_air(a, cfg)
    step = max(1, a.size // 4_000_000)  # the scanner's air from a regular subsample of the voxels
    sub, isub = a.reshape(-1)[::step], internal.reshape(-1)[::step]
    outside = sub[(sub < cfg.air_hu) & ~isub & (sub > -1100)]  # padding outside the field of view is not air
    air_ref = float(np.median(outside)) if outside.size else -1000.0
    lab, n = ndimage.label(internal)
    lungs = np.zeros(a.shape, dtype=bool)
    kept, dropped = [], []
    Z = a.shape[2]
    dz = float(np.linalg.norm(affine[:3, 2]))
    head_up = affine[2, 2] >= 0  # world z (RAS) grows toward the head: is the head at the last slice?
    if n:
        idx = np.arange(1, n + 1)
        sizes = np.bincount(lab.reshape(-1), minlength=n + 1)[1:]
        objs = ndimage.find_objects(lab)
        if Z == 1:  # one slice: its thickness says nothing about the lung's size
            big = sizes * float(np.linalg.norm(np.cross(affine[:3, 0], affine[:3, 1]))) >= cfg.min_area_mm2
        else:
            big = sizes * vox_ml >= cfg.min_ml
        for i in idx[big]:
            sl = objs[i - 1]
            m = lab[sl] == i
            inner = ndimage.binary_erosion(m, structure=np.ones((3, 3, 1), bool))
            med = float(np.median(a[sl][inner if inner.any() else m]))
            z0, z1 = sl[2].start, sl[2].stop - 1
            top = (Z - 1 - z1) if head_up else z0  # slices between the component and the head end
            span = (z1 - z0 + 1) * dz
            c = {"ml": round(float(sizes[i - 1] * vox_ml), 1), "interior_median_hu": round(med, 1),
                 "above_air_hu": round(med - air_ref, 1), "span_mm": round(span, 1)}
            ok = med - air_ref >= cfg.above_air_hu and med <= cfg.max_median_hu
            if ok and Z > 1:
                ok = top <= cfg.top_share * Z or span >= cfg.min_span_mm
            if ok:
                lungs[sl] |= m
                kept.append(c)
            else:
                dropped.append(c)
    # the patient's left / right of the body's midline, slice by slice, in world x (RAS: right is +x)
    body = a > cfg.air_hu
    X, Y = a.shape[:2]
    ii, jj = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    wx0 = affine[0, 0] * ii + affine[0, 1] * jj + affine[0, 3]
    left = np.zeros_like(lungs)
    for z in np.where(lungs.any(axis=(0, 1)))[0]:
        wx = wx0 + affine[0, 2] * z
        b = body[:, :, z] & ~internal[:, :, z]
        mid = float(np.median(wx[b])) if b.any() else float(np.median(wx[lungs[:, :, z]]))
        left[:, :, z] = lungs[:, :, z] & (wx < mid)
    right = lungs & ~left
    masks = {"lung_left": left, "lung_right": right, "lung": lungs}
    if flat:
        masks = {k: v[:, :, 0] for k, v in masks.items()}
    info = {"method": "air threshold in Hounsfield units (no learned model)", "air_hu": cfg.air_hu,
            "scanner_air_hu": round(air_ref, 1), "above_air_hu": cfg.above_air_hu,
            **({"min_area_mm2": cfg.min_area_mm2} if Z == 1 else {"min_ml": cfg.min_ml}),
            "components_kept": kept, "components_dropped_as_gas_or_other": dropped[:10]}
    return masks, info


# --------------------------------------------------------------------------- pictures (8-bit, window unknown)
@dataclass
class PictureAirConfig:
    """The lungs on an 8-bit picture of a CT slice (PNG / JPEG, a figure, a screenshot), whose window is unknown.

    Only a **lung window** is read: the picture's bright class (above its Otsu threshold: soft tissue, fat, bone)
    has its median at or above ``min_tissue_grey`` (a lung window puts muscle at ~0.9 of the grey range; a
    soft-tissue or mediastinal window at ~0.4-0.5, where air, lung and gas are all clipped to black and cannot be
    told apart: there the lungs are not assessed). Then, as the Hounsfield rule does:

    1. dark = below the Otsu threshold; the dark regions touching the picture's border are the air around the body
       (or the figure's padding) and are dropped; the air's grey is theirs (the padding at the picture's minimum
       left out), else the darkest inside the body;
    2. a dark region inside the body is lung when it covers at least ``min_frac`` of the body and
       ``min_picture_frac`` of the picture (in-plane; one that
       touches the border, a lung cut by the picture's edge, at least ``border_min_frac`` of the picture) and its
       median lies ``min_rel`` to ``max_rel`` of the way from the air's grey to the threshold: aerated lung with its
       vessels is a little lighter than air (0.3-0.6 of the way on TotalSegmentator's CT through a -600 / 1500
       window), gas in the bowel or the stomach is air (0.02-0.06);
    3. regions smaller than ``min_of_largest`` of the largest kept one are dropped; the holes inside a lung
       (vessels, nodules, opacities) are filled;
    4. left and right: the picture is in the canonical display orientation (the patient's left on the image's
       right); each lung pixel goes to the side of the body's midline it lies on."""
    min_tissue_grey: float = 0.7
    min_rel: float = 0.08
    border_min_rel: float = 0.12
    max_rel: float = 0.3
    min_frac: float = 0.01
    min_picture_frac: float = 0.002
    border_min_frac: float = 0.05
    min_of_largest: float = 0.1


def picture_lung_masks(grey: np.ndarray, cfg: PictureAirConfig | None = None) -> tuple[dict[str, np.ndarray] | None, dict]:
    """term id -> mask (``lung_left``, ``lung_right``, ``lung``) on a 2D picture ``grey`` (X, Y) scaled to [0, 1],
    given in the canonical display orientation (X grows toward the patient's left), and what was found; the masks
    are None when the picture is not in a lung window (``PictureAirConfig``: not assessed). No learned model."""
    from scipy import ndimage

    from medground.segment.contrast import otsu_threshold

    cfg = cfg or PictureAirConfig()
    g = np.asarray(grey, dtype=np.float32)
    if g.ndim != 2 or g.size == 0:
        raise ValueError("picture_lung_masks takes one 2D grey picture")
    t = otsu_threshold(g.ravel(), 256, (0.0, 1.0))
    bright = g >= t
    tissue = float(np.median(g[bright])) if bright.any() else 0.0
    info: dict = {"method": "dark regions inside the body of an 8-bit picture in a lung window (no learned model)",
                  "otsu_threshold": round(t, 3), "tissue_grey": round(tissue, 3)}
    if tissue < cfg.min_tissue_grey:
        info["lung_window"] = False
        info["why"] = (f"the picture is not in a lung window (soft tissue at {tissue:.2f} of the grey range, below "
                       f"{cfg.min_tissue_grey}): air, lung and gas are alike there")
        return None, info
    info["lung_window"] = True
    empty = {k: np.zeros(g.shape, dtype=bool) for k in LUNG_TERMS}
    dark = g < t
    lab, n = ndimage.label(dark)
    if n == 0:
        info["components_kept"] = []
        return empty, info
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    edge = set(int(e) for e in edge[edge > 0])
    touching = np.isin(lab, list(edge))
    # the air's grey: the low end of what touches the border (the figure's padding at the picture's minimum left
    # out; a lung cut by the picture's edge is lighter), else the darkest inside the body
    out_vals = g[touching & (g > float(g.min()) + 1.5 / 255)]
    air = float(np.percentile(out_vals, 10)) if out_vals.size >= 0.002 * g.size else \
        float(np.percentile(g[dark & ~touching], 1)) if (dark & ~touching).any() else float(g.min())
    info["air_grey"] = round(air, 3)
    sizes = np.bincount(lab.reshape(-1), minlength=n + 1)[1:]

    def rel(i: int) -> float:  # the region's median grey, from the air's (0) to the soft tissue's (1)
        return (float(np.median(g[lab == i])) - air) / max(tissue - air, 1e-6)

    # a region touching the border is the air around the body unless it reads as lung (a lung cut by the edge)
    cut = {i for i in edge if sizes[i - 1] >= cfg.border_min_frac * g.size
           and cfg.border_min_rel <= rel(i) <= cfg.max_rel}
    outside = np.isin(lab, [i for i in edge if i not in cut])
    body_px = max(1, int((~outside).sum()))
    X = g.shape[0]
    mid = float(np.median(np.nonzero(~outside)[0])) if (~outside).any() else X / 2.0
    cand = []
    for i in np.where((sizes >= cfg.min_frac * body_px) & (sizes >= cfg.min_picture_frac * g.size))[0] + 1:
        i = int(i)
        if i in edge and i not in cut:
            continue
        r = rel(i)
        c = {"share_of_body": round(float(sizes[i - 1]) / body_px, 4), "relative_grey": round(r, 3),
             "side": "left" if float(np.nonzero(lab == i)[0].mean()) > mid else "right",
             "touches_border": i in edge, "_id": i, "_ok": cfg.min_rel <= r <= cfg.max_rel}
        cand.append(c)
    ok = [c for c in cand if c["_ok"]]
    if ok:
        top = max(c["share_of_body"] for c in ok)
        ok = [c for c in ok if c["share_of_body"] >= cfg.min_of_largest * top]
    lungs = np.zeros(g.shape, dtype=bool)
    for c in ok:
        lungs |= ndimage.binary_fill_holes(lab == c["_id"])
    left = lungs & (np.arange(X)[:, None] > mid)
    info["body_midline_x"] = round(mid, 1)
    info["components_kept"] = [{k: v for k, v in c.items() if not k.startswith("_")} for c in ok]
    info["components_dropped_as_gas_or_other"] = [{k: v for k, v in c.items() if not k.startswith("_")}
                                                  for c in cand if c not in ok][:10]
    return {"lung_left": left, "lung_right": lungs & ~left, "lung": lungs}, info
