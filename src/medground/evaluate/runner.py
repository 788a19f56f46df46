"""Run medground on a converted dataset (standard layout) and score it against the references.

Two modes: ``text`` (the prompts are the structures' names: grounding + LiteMedSAM) and ``box``
(LiteMedSAM given, on every slice where the reference is present, the reference's bounding box:
the upper bound the grounding step could reach).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from medground.evaluate.aggregate import Aggregator
from medground.evaluate.metrics import compute_metrics


def _ref_masks(case: dict, label: np.ndarray, masks: dict, labels: dict[int, str], terms: list[str]) -> dict:
    out = {}
    for t in terms:
        if t in masks:
            out[t] = masks[t]
        else:
            ids = [k for k, v in labels.items() if v == t]
            out[t] = np.isin(label, ids) if ids else None
    return out


def _box_predict(pred, ref_xyz: np.ndarray) -> np.ndarray:
    """LiteMedSAM with the reference's box on every slice where the reference is present."""
    out = np.zeros(ref_xyz.shape, bool)
    for z in range(ref_xyz.shape[2]):
        m = ref_xyz[:, :, z]
        if not m.any():
            continue
        xs = np.where(m.any(axis=1))[0]
        ys = np.where(m.any(axis=0))[0]
        out[:, :, z] = pred.predict(z, box=(xs[0], ys[0], xs[-1], ys[-1])).mask
    return out


def evaluate_dataset(dataset_root: str | Path, split: str = "val", prompts: list[str] | None = None,
                     mode: str = "text", max_cases: int | None = None, device: str = "cpu",
                     nsd_tolerance_mm: float = 2.0, grounding=None, log: Callable = print, model=None,
                     text_config=None) -> Aggregator:
    """Score one dataset split. ``model``: the LiteMedSAM to use (default: the packaged one);
    ``text_config``: a :class:`medground.segment.text.TextConfig` for the text mode."""
    import medground
    from medground.data import list_cases, load_case, read_dataset
    from medground.ontology import Ontology

    root = Path(dataset_root)
    ds = read_dataset(root)
    labels = {int(k): v for k, v in ds["labels"].items() if int(k) != 0}
    modality = (ds.get("modality") or ["OT"])[0]
    onto = Ontology.default()
    if prompts:
        terms_of = {p: onto.resolve(p).ids for p in prompts}
    else:
        terms_of = {onto.get(t).name: [t] for t in sorted(set(labels.values()))}
    cases = list_cases(root, split)[: max_cases or None]
    agg = Aggregator(nsd_tolerance_mm=nsd_tolerance_mm)
    # slice-level presence on volumes: is the structure reported on the slices where it is (and only there)?
    agg.slice_presence = {"TP": 0, "FP": 0, "TN": 0, "FN": 0}
    for c in cases:
        image = medground.load(root / c["image"])
        _, label, masks = load_case(root, c)
        needed = sorted({t for ts in terms_of.values() for t in ts})
        refs = _ref_masks(c, label, masks, labels, needed)
        sp = image.spacing
        spacing = None if not image.has_geometry else (sp[2], sp[1], sp[0]) if image.ndim == 3 else (sp[1], sp[0])
        if mode == "box":
            from medground.segment.predictor import SlicePredictor

            predictor = SlicePredictor(image, model=model, device=device)  # one embedding per slice for every class
        if mode == "text":
            from medground.segment.text import segment_text

            results, _ = segment_text(image, list(terms_of), device=device, grounding=grounding, model=model,
                                      cfg=text_config)
            preds = {p: r.mask for p, r in zip(terms_of, results)}
        for p, ts in terms_of.items():
            parts = [refs[t] for t in ts if refs.get(t) is not None]
            if not parts:
                continue  # this dataset does not label it
            ref = np.any(parts, axis=0)
            if mode == "box":
                ref_xyz = np.transpose(ref, (2, 1, 0))
                pred_xyz = _box_predict(predictor, ref_xyz) if ref_xyz.any() else np.zeros_like(ref_xyz)
            else:
                pred_xyz = preds[p]
            pred = np.transpose(pred_xyz, (2, 1, 0))
            if image.ndim == 2:
                pred, r2 = pred[0], ref[0]
            else:
                r2 = ref
            if image.ndim == 3:
                pz, rz = pred.any(axis=(1, 2)), r2.any(axis=(1, 2))
                for key, v in (("TP", pz & rz), ("FP", pz & ~rz), ("TN", ~pz & ~rz), ("FN", ~pz & rz)):
                    agg.slice_presence[key] += int(v.sum())
            m = compute_metrics(pred, r2, spacing=spacing, nsd_tolerance_mm=nsd_tolerance_mm)
            agg.add(c["id"], modality, p, m)
        log(f"{c['id']}: done")
    return agg
