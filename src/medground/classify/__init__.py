"""Image classification: modality, body region and view, and zero-shot scoring of free-text labels.

``classify(image, labels=None)`` returns::

    {"modality": "CT", "modality_confidence": 0.97, "body_region": "abdomen", "body_region_confidence": 0.9,
     "view": "axial", "view_confidence": 1.0,
     "probabilities": {"modality": {...}, "body_region": {...}, "view": {...}},
     # with labels:
     "label": "pneumonia", "label_confidence": 0.6, "label_probabilities": {...}}

Volumes are classified from a few slices of their acquisition plane (the view then comes from the affine);
a DICOM Modality tag, when present, decides the modality. Zero-shot labels are scored in the shared
image-text space of :mod:`medground.embed`; labels that all name modalities, body regions or views are
answered by the corresponding trained head instead.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from medground.classify.net import MODALITIES, REGIONS, VIEWS
from medground.io.image import MedGroundInputError, MedImage

__all__ = ["classify", "classify_many", "MODALITIES", "REGIONS", "VIEWS", "parse_labels"]

# names people use for each modality / region / view (lower case) -> our label
MODALITY_SYNONYMS = {
    "ct": "CT", "ct scan": "CT", "computed tomography": "CT", "cat scan": "CT", "cta": "CT",
    "mri": "MRI", "mr": "MRI", "magnetic resonance": "MRI", "magnetic resonance imaging": "MRI", "mri scan": "MRI",
    "x-ray": "X-ray", "xray": "X-ray", "x ray": "X-ray", "radiograph": "X-ray", "radiography": "X-ray",
    "plain film": "X-ray", "cxr": "X-ray", "chest x-ray": "X-ray",
    "ultrasound": "ultrasound", "us": "ultrasound", "sonography": "ultrasound", "ultrasonography": "ultrasound",
    "echo": "ultrasound",
    "pathology": "pathology", "histology": "pathology", "histopathology": "pathology", "microscopy": "pathology",
    "h&e": "pathology",
    "endoscopy": "endoscopy", "colonoscopy": "endoscopy", "gastroscopy": "endoscopy",
    "fundus": "fundus", "fundus photography": "fundus", "retinal photograph": "fundus", "fundoscopy": "fundus",
    "dermoscopy": "dermoscopy", "dermatoscopy": "dermoscopy", "skin photograph": "dermoscopy",
    "mammography": "mammography", "mammogram": "mammography",
    "pet": "PET", "pet/ct": "PET", "positron emission tomography": "PET",
    "nuclear medicine": "nuclear medicine", "scintigraphy": "nuclear medicine", "spect": "nuclear medicine",
    "bone scan": "nuclear medicine", "nm": "nuclear medicine",
}
REGION_SYNONYMS = {r: r for r in REGIONS} | {
    "brain": "head", "skull": "head", "abdominal": "abdomen", "abd": "abdomen", "thorax": "chest", "lung": "chest",
    "lungs": "chest", "cardiac": "heart", "retina": "eye", "bowel": "colon", "limb": "extremity",
    "arm": "extremity", "leg": "extremity", "knee": "extremity", "hand": "extremity", "foot": "extremity",
    "spinal": "spine", "vertebra": "spine", "pelvic": "pelvis", "whole-body": "whole body",
}
VIEW_SYNONYMS = {v.lower(): v for v in VIEWS} | {
    "transverse": "axial", "axial plane": "axial", "coronal plane": "coronal", "sagittal plane": "sagittal",
    "posteroanterior": "PA", "anteroposterior": "AP", "lat": "lateral", "ap supine": "AP",
}

HEADER_WEIGHT = 0.95
# which views make sense for which modality (the view probabilities are restricted to these)
CROSS_SECTIONAL = {"CT", "MRI", "PET"}
VIEW_SETS = {"CT": ["axial", "coronal", "sagittal"], "MRI": ["axial", "coronal", "sagittal"],
             "PET": ["axial", "coronal", "sagittal", "n/a"], "X-ray": ["PA", "AP", "lateral"],
             "mammography": ["MLO", "n/a"], "nuclear medicine": ["n/a", "AP", "coronal"],
             "ultrasound": ["n/a"], "pathology": ["n/a"], "endoscopy": ["n/a"], "fundus": ["n/a"], "dermoscopy": ["n/a"]}


def _restrict(p: np.ndarray, names: list[str], allowed: list[str] | None) -> np.ndarray:
    if not allowed:
        return p
    mask = np.array([n in allowed for n in names], dtype=float)
    q = p * mask
    return q / q.sum() if q.sum() > 0 else mask / mask.sum()


def parse_labels(labels) -> list[str] | None:
    """``"a,b,c"`` or a list -> clean list of distinct labels (None for none); fewer than 2 is an error."""
    if labels is None:
        return None
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    out: list[str] = []
    for it in items:
        t = re.sub(r"\s+", " ", str(it)).strip()
        if t and t not in out:
            out.append(t)
    if not out:
        return None
    if len(out) < 2:
        raise MedGroundInputError("give at least two labels to choose between, e.g. --labels 'pneumonia,normal'.")
    return out


def _as_dict(names: list[str], probs) -> dict[str, float]:
    return {n: round(float(p), 4) for n, p in zip(names, probs)}


def _top(d: dict[str, float]) -> tuple[str, float]:
    k = max(d, key=d.get)
    return k, d[k]


def _map_labels(labels: list[str], table: dict[str, str]) -> list[str] | None:
    out = []
    for lab in labels:
        key = lab.lower().strip()
        key = re.sub(r"^(an?|the)\s+", "", key)
        key = re.sub(r"\s+(image|scan|view|photograph|photo)$", "", key)
        if key not in table:
            return None
        out.append(table[key])
    return out if len(set(out)) == len(out) else None


def classify(image: MedImage, labels: list[str] | str | None = None, weights=None) -> dict:
    """Modality, body region and view of one image (and zero-shot ``labels`` when given)."""
    return classify_many([image], labels, weights)[0]


def classify_many(images: list[MedImage], labels=None, weights=None) -> list[dict]:
    from medground.classify.model import image_outputs, load_classifier
    from medground.embed import _label_matrix

    labels = parse_labels(labels)
    b = load_classifier(weights)
    label_vecs = _label_matrix(labels, b) if labels else None
    results = []
    for image in images:
        if not isinstance(image, MedImage):
            raise MedGroundInputError(f"classify needs a MedImage, not {type(image).__name__}.")
        o = image_outputs(b, image)
        pm = o["modality"].numpy().astype(float)
        header = o["header_modality"]
        if header in b.modalities:
            pm = _mix(pm, b.modalities.index(header))
        pr = o["body_region"].numpy().astype(float)
        pv = o["view"].numpy().astype(float)
        region_tag = _header_region(image)
        if region_tag in b.regions:
            pr = _mix(pr, b.regions.index(region_tag))
        modality = b.modalities[int(np.argmax(pm))]
        plane = o["plane"] if modality in CROSS_SECTIONAL else None
        pv = _restrict(pv, b.views, VIEW_SETS.get(modality))
        view_tag = _header_view(image)
        if view_tag in b.views and plane is None:
            pv = _mix(pv, b.views.index(view_tag))
        if plane is not None and plane in b.views:
            pv = np.zeros_like(pv)
            pv[b.views.index(plane)] = 1.0
        probs = {"modality": _as_dict(b.modalities, pm), "body_region": _as_dict(b.regions, pr),
                 "view": _as_dict(b.views, pv)}
        res: dict = {}
        for key in ("modality", "body_region", "view"):
            name, conf = _top(probs[key])
            res[key], res[f"{key}_confidence"] = name, conf
        res["probabilities"] = probs
        res["view_source"] = "geometry" if plane is not None else "image"
        res["modality_source"] = "metadata" if header in b.modalities else "image"
        res["body_region_source"] = "metadata" if region_tag in b.regions else "image"
        if view_tag in b.views and plane is None:
            res["view_source"] = "metadata"
        if not b.trained:
            res["warning"] = "no trained classifier weights installed: outputs are not meaningful"
        if labels:
            res.update(_score_labels(labels, probs, o["embedding"], label_vecs, b))
        results.append(res)
    return results


_BODY_PARTS = {"CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "ABDOMEN": "abdomen", "ABD": "abdomen",
               "LIVER": "abdomen", "PANCREAS": "abdomen", "KIDNEY": "abdomen", "HEAD": "head", "BRAIN": "head",
               "SKULL": "head", "NECK": "neck", "PELVIS": "pelvis", "BREAST": "breast", "HEART": "heart",
               "EYE": "eye", "SKIN": "skin", "COLON": "colon", "SPINE": "spine", "CSPINE": "spine", "TSPINE": "spine",
               "LSPINE": "spine", "WHOLEBODY": "whole body", "WHOLE BODY": "whole body", "EXTREMITY": "extremity",
               "HAND": "extremity", "FOOT": "extremity", "KNEE": "extremity", "ARM": "extremity", "LEG": "extremity",
               "SHOULDER": "extremity", "ELBOW": "extremity", "WRIST": "extremity", "ANKLE": "extremity",
               "HIP": "pelvis", "CHESTABDPELVIS": "whole body", "ABDOMENPELVIS": "abdomen"}


def _header_region(image: MedImage) -> str | None:
    v = str(image.meta.get("body_part_examined", "") or "").strip().upper()
    return _BODY_PARTS.get(v) or _BODY_PARTS.get(v.replace(" ", "").replace("_", ""))


def _header_view(image: MedImage) -> str | None:
    v = str(image.meta.get("view_position", "") or "").strip().upper()
    return {"PA": "PA", "AP": "AP", "LAT": "lateral", "LL": "lateral", "RL": "lateral", "LATERAL": "lateral",
            "MLO": "MLO"}.get(v)


def _mix(p: np.ndarray, k: int) -> np.ndarray:
    onehot = np.zeros_like(p)
    onehot[k] = 1.0
    return HEADER_WEIGHT * onehot + (1 - HEADER_WEIGHT) * p


def _score_labels(labels: list[str], probs: dict, emb: torch.Tensor, label_vecs: torch.Tensor, b) -> dict:
    for key, table, names in (("modality", MODALITY_SYNONYMS, b.modalities),
                              ("body_region", REGION_SYNONYMS, b.regions), ("view", VIEW_SYNONYMS, b.views)):
        mapped = _map_labels(labels, table)
        if mapped and all(m in names for m in mapped):
            p = np.array([probs[key][m] for m in mapped], dtype=float)
            p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
            lp = _as_dict(labels, p)
            lab, conf = _top(lp)
            return {"label": lab, "label_confidence": conf, "label_probabilities": lp, "label_source": key + "-head"}
    scale = float(b.net.logit_scale.detach().exp().clamp(max=100.0))
    sims = (label_vecs @ emb.reshape(-1, 1)).reshape(-1)
    p = torch.softmax(sims * scale, 0).numpy()
    lp = _as_dict(labels, p)
    lab, conf = _top(lp)
    return {"label": lab, "label_confidence": conf, "label_probabilities": lp, "label_source": "zero-shot"}
