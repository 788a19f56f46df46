"""Box- and point-prompted segmentation of 2D images and 3D volumes.

3D: a box or a point on one slice is segmented there, then propagated slice by slice in both
directions: the box for the next slice is the bounding box of the previous slice's mask (with a small
margin) and the previous low-res logits are given as a dense mask prompt. Propagation stops where the
object ends: the mask vanishes, collapses, jumps away from the previous one or the network's own
quality estimate drops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.segment.predictor import SlicePredictor
from medground.segment.prompts import Prompt, validate_prompt
from medground.evaluate.metrics import dice_score as _dice


@dataclass
class PropagationConfig:
    margin_frac: float = 0.05  # box margin added around the previous mask, as a fraction of its size
    margin_min_px: float = 2.0
    min_area_px: int = 4  # below this the object has ended
    min_overlap: float = 0.3  # Dice between consecutive masks (after in-plane alignment) below this: ended
    max_growth: float = 2.0  # area more than this times the previous: leaked, ended
    min_iou: float = 0.35  # predicted IoU below this: ended
    intensity_sd: float = 2.0  # mean intensity drifting more than this many SDs of the first slice's: ended
    intensity_min_shift: float = 0.08  # ... and more than this (unit intensity range)
    use_mask_prompt: bool = False


@dataclass
class SegmentationResult:
    """One prompt's mask in the input's own grid (X, Y, Z), with what produced it."""

    mask: np.ndarray
    prompt: dict[str, Any]
    confidence: float
    name: str
    slices: list[int] = field(default_factory=list)
    per_slice_iou: dict[int, float] = field(default_factory=dict)


def _mask_box(m: np.ndarray) -> tuple[float, float, float, float] | None:
    xs = np.where(m.any(axis=1))[0]
    ys = np.where(m.any(axis=0))[0]
    if xs.size == 0:
        return None
    return float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1])


def _expand(box, cfg: PropagationConfig, shape) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    mx = max(cfg.margin_min_px, cfg.margin_frac * (x1 - x0 + 1))
    my = max(cfg.margin_min_px, cfg.margin_frac * (y1 - y0 + 1))
    return (max(0.0, x0 - mx), max(0.0, y0 - my), min(shape[0] - 1.0, x1 + mx), min(shape[1] - 1.0, y1 + my))


def bbox_slices(m: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a non-empty mask as slices (label only it: a large volume with a small organ)."""
    idx = [np.where(m.any(axis=tuple(a for a in range(m.ndim) if a != ax)))[0] for ax in range(m.ndim)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)


def components(m: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """The connected components of a mask, labelled inside its bounding box only: (the box, the labels there, the
    voxel count of labels 1..n); None when the mask is empty or a single component (nothing to choose)."""
    from scipy import ndimage

    if not m.any():
        return None
    box = bbox_slices(m)
    lab, n = ndimage.label(m[box])
    if n <= 1:
        return None
    return box, lab, np.bincount(lab.ravel(), minlength=n + 1)[1:]


def largest_component(m: np.ndarray) -> np.ndarray:
    """The largest connected component of a 2D or 3D mask."""
    comps = components(m)
    if comps is None:
        return m
    box, lab, sizes = comps
    out = np.zeros_like(m, dtype=bool)
    out[box] = lab == int(np.argmax(sizes)) + 1
    return out


def _connected_to(m: np.ndarray, prev: np.ndarray, radius: int = 3) -> np.ndarray:
    """Components of ``m`` that touch ``prev`` (dilated): an object may split (aortic arch) but not jump."""
    from scipy import ndimage

    lab, n = ndimage.label(m)
    if n == 0:
        return m
    near = ndimage.binary_dilation(prev, iterations=radius)
    keep = np.unique(lab[near & m])
    return np.isin(lab, keep[keep > 0])


def _unit_gray(pred: SlicePredictor, z: int) -> np.ndarray:
    u = pred._unit[:, :, z]
    return u.mean(axis=-1) if u.ndim == 3 else u


def propagate(pred: SlicePredictor, z0: int, first, cfg: PropagationConfig | None = None) -> SegmentationResult:
    """Propagate a first-slice result through the volume in both directions."""
    cfg = cfg or PropagationConfig()
    X, Y, Z = pred.image.shape
    vol = np.zeros((X, Y, Z), dtype=bool)
    vol[:, :, z0] = first.mask
    ious = {z0: first.iou}
    if not first.mask.any():
        return SegmentationResult(vol, {}, 0.0, "", [z0], ious)
    vals = _unit_gray(pred, z0)[first.mask]
    ref_mean, ref_sd = float(vals.mean()), float(vals.std())
    max_shift = max(cfg.intensity_min_shift, cfg.intensity_sd * ref_sd)
    for step in (1, -1):
        prev = first
        prev_mask = first.mask
        z = z0 + step
        while 0 <= z < Z:
            box = _mask_box(prev_mask)
            if box is None:
                break
            pred.prepare([z + step * k for k in range(pred.batch_size) if 0 <= z + step * k < Z])
            res = pred.predict(z, box=_expand(box, cfg, (X, Y)),
                               mask_logits=prev.logits if cfg.use_mask_prompt else None)
            m = _connected_to(res.mask, prev_mask)
            area, parea = int(m.sum()), int(prev_mask.sum())
            if (area < cfg.min_area_px or res.iou < cfg.min_iou or area > cfg.max_growth * max(parea, 1)
                    or _dice(m, prev_mask) < cfg.min_overlap
                    or abs(float(_unit_gray(pred, z)[m].mean()) - ref_mean) > max_shift):
                break
            vol[:, :, z] = m
            ious[z] = res.iou
            prev, prev_mask = res, m
            z += step
    return SegmentationResult(vol, {}, float(np.mean(list(ious.values()))), "", sorted(ious), ious)


def _border_fraction(m: np.ndarray, box) -> float:
    """Fraction of the box's border pixels the mask covers (a mask cut by its box is too small a box)."""
    x0, y0, x1, y1 = [int(round(v)) for v in box]
    x1, y1 = min(x1, m.shape[0] - 1), min(y1, m.shape[1] - 1)
    edge = np.concatenate([m[x0:x1 + 1, y0], m[x0:x1 + 1, y1], m[x0, y0:y1 + 1], m[x1, y0:y1 + 1]])
    return float(edge.mean()) if edge.size else 1.0


def point_result(pred: SlicePredictor, z: int, x: float, y: float):
    """Segment the object under a point. LiteMedSAM was trained with boxes, so a point alone gives
    poor masks: boxes of several sizes centred on the point are tried in one decoder batch and the
    one whose mask holds the point, is not cut by its box and has the best predicted IoU wins."""
    X, Y = pred.image.shape[:2]
    sizes = [s / pred.scale for s in (12, 24, 40, 64, 96, 140, 200)]
    boxes = []
    for s in sizes:
        h = s / 2
        boxes.append((max(0.0, x - h), max(0.0, y - h), min(X - 1.0, x + h), min(Y - 1.0, y + h)))
    res = pred.predict_many(z, boxes=boxes)
    xi, yi = int(round(x)), int(round(y))
    best, best_score = None, -1.0
    for b, r in zip(boxes, res):
        if not r.mask.any() or not r.mask[xi, yi]:
            continue
        score = r.iou * (1.0 - _border_fraction(r.mask, b))
        if score > best_score:
            best, best_score = r, score
    if best is None:  # nothing holds the point: the smallest box's result
        best = res[0]
        best.mask = np.zeros_like(best.mask)
    return best


def segment_prompt(pred: SlicePredictor, p: Prompt, cfg: PropagationConfig | None = None,
                   propagate_3d: bool = True) -> SegmentationResult:
    image = pred.image
    p = validate_prompt(p, image)
    X, Y, Z = image.shape
    if p.kind == "box3d":
        x0, y0, z0, x1, y1, z1 = p.coords
        zs = list(range(int(round(z0)), int(round(z1)) + 1))
        pred.prepare(zs)
        vol = np.zeros((X, Y, Z), dtype=bool)
        ious = {}
        for z in zs:
            r = pred.predict(z, box=(x0, y0, x1, y1))
            vol[:, :, z] = r.mask
            ious[z] = r.iou
        res = SegmentationResult(vol, {}, float(np.mean(list(ious.values()))), "", zs, ious)
    else:
        z = int(p.z)
        if p.kind == "box":
            first = pred.predict(z, box=p.coords)
        else:
            first = point_result(pred, z, p.coords[0], p.coords[1])
        if Z > 1 and propagate_3d:
            first.mask = largest_component(first.mask)
            res = propagate(pred, z, first, cfg)
        else:
            vol = np.zeros((X, Y, Z), dtype=bool)
            vol[:, :, z] = first.mask
            res = SegmentationResult(vol, {}, first.iou, "", [z], {z: first.iou})
    res.prompt = p.describe()
    return res


def segment(image: MedImage, boxes=None, points=None, prompts: list[Prompt] | None = None, model=None,
            device: str = "cpu", propagate_3d: bool = True, progress: bool = False,
            cfg: PropagationConfig | None = None) -> list[SegmentationResult]:
    """Segment ``image`` from spatial prompts.

    ``boxes``: list of (x0, y0, x1, y1) for 2D images, (x0, y0, x1, y1, z) for one slice of a volume or
    (x0, y0, z0, x1, y1, z1) for a 3D box. ``points``: list of (x, y) or (x, y, z). ``prompts``: parsed
    :class:`Prompt` objects. Returns one :class:`SegmentationResult` per prompt, in order.
    """
    from medground.io import validate

    validate(image)
    all_prompts: list[Prompt] = list(prompts or [])
    for b in boxes or []:
        b = [float(v) for v in b]
        if len(b) == 4:
            all_prompts.append(Prompt("box", tuple(b), z=None))
        elif len(b) == 5:
            all_prompts.append(Prompt("box", tuple(b[:4]), z=int(b[4])))
        elif len(b) == 6:
            all_prompts.append(Prompt("box3d", tuple(b)))
        else:
            raise MedGroundInputError(f"box {b} needs 4, 5 or 6 numbers")
    for pt in points or []:
        pt = [float(v) for v in pt]
        if len(pt) not in (2, 3):
            raise MedGroundInputError(f"point {pt} needs 2 or 3 numbers")
        all_prompts.append(Prompt("point", tuple(pt), z=int(round(pt[2])) if len(pt) == 3 else None))
    if not all_prompts:
        raise MedGroundInputError("no prompt given: pass a box, a point or a text prompt")
    for p in all_prompts:  # validate everything before any compute
        validate_prompt(p, image)
    pred = SlicePredictor(image, model=model, device=device, progress=progress)
    results = []
    for i, p in enumerate(all_prompts, 1):
        r = segment_prompt(pred, p, cfg=cfg, propagate_3d=propagate_3d)
        r.name = p.label or f"{p.kind.replace('3d', '')}-{i}"
        results.append(r)
    return results
