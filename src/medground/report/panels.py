"""Report panels (``panels.yaml``) and recognition of an image's modality and body region.

Recognition order (the first that answers wins, and the report says which one did):

1. DICOM header: ``Modality`` and ``BodyPartExamined`` (``MedImage.meta``);
2. NIfTI/NRRD geometry and intensities: a volume in Hounsfield units is CT (``MedImage.modality``);
3. ``medground.classify.classify`` when it is installed (another capability of medground);
4. a simple heuristic: a 2D grey image -> chest radiograph; a 3D CT -> chest when much of the body
   is air-filled lung (HU -950..-600), else abdomen; any other 3D volume -> MR abdomen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

MIN_CLASSIFIER_CONFIDENCE = 0.5  # below this the classifier's answer is not used
# kinds of image and body regions no default panel covers: a picture the classifier takes for one of them with at
# least this confidence gets no default panel (the report asks for --panel) rather than the fallback heuristics' chest
# radiograph panel (a breast ultrasound was reported as a chest radiograph whose lungs were "not assessed")
OTHER_CONFIDENCE = 0.8
# the head panel (brain MR, atlas registration) needs the classifier this sure of a head: brain MR volumes 0.83-0.98
# (the atlases, mr-tumour); cardiac cine MR (ACDC) up to 0.65 and TotalSegmentator's abdominal MR 0.74 were taken for
# heads before
HEAD_CONFIDENCE = 0.8
OTHER_MODALITIES = {"ultrasound": "US", "mammography": "MG", "endoscopy": "ES", "dermoscopy": "XC", "fundus": "OP",
                    "pathology": "SM", "nuclear medicine": "NM", "pet": "PT"}
OTHER_REGIONS = ("breast", "eye", "skin", "colon", "extremity", "tissue")
RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RG", "XR", "RF", "DF"}
_BODY_PARTS = {
    "chest": ("CHEST", "THORAX", "LUNG", "BREAST"),
    "abdomen": ("ABDOMEN", "ABD", "LIVER", "KIDNEY", "PELVIS", "PANCREAS", "SPLEEN"),
    "head": ("HEAD", "BRAIN", "SKULL", "NEURO"),
    "heart": ("HEART", "CARDIAC", "CARDIO"),
}


@dataclass
class PanelItem:
    term_id: str
    name: str
    prompt: str
    kind: str  # anatomy | finding
    region: str
    laterality: str  # left/right only for a side of a paired structure (not e.g. the right ventricle)
    measures: list[str] = field(default_factory=list)
    reference: dict[str, str] = field(default_factory=dict)


@dataclass
class Panel:
    key: str
    title: str
    modality: str
    region: str
    items: list[PanelItem]
    derived: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = "default"  # default | user


@lru_cache(maxsize=1)
def panels_data() -> dict[str, Any]:
    import yaml

    text = resources.files("medground.report").joinpath("panels.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["panels"]


def panel_keys() -> list[str]:
    return sorted(panels_data())


# --------------------------------------------------------------------------- recognition
def _modality_group(code: str | None) -> str | None:
    if not code:
        return None
    c = str(code).upper().strip()
    if c in RADIOGRAPH_MODALITIES:
        return "XR"
    if c in ("CT", "MR"):
        return c
    if c in OTHER_MODALITIES.values():  # no panel: the report then asks for --panel instead of guessing one
        return c
    return None


def _region_from_text(text: str | None) -> str | None:
    if not text:
        return None
    t = str(text).upper()
    for region, keys in _BODY_PARTS.items():
        if any(k in t for k in keys):
            return region
    return None


def _from_classifier(image: MedImage) -> dict[str, Any] | None:
    try:
        from medground.classify import classify  # written by another capability; optional
    except ImportError:
        return None
    try:
        res = classify(image)
    except Exception as exc:  # noqa: BLE001 - an optional helper must never break a report
        import logging

        logging.getLogger(__name__).warning("medground.classify failed (%s); using the fallback heuristics", exc)
        return None
    if res.get("warning"):  # e.g. no trained weights installed: do not trust it
        return None
    mod = str(res.get("modality", "")).lower()
    group = None
    if "ct" == mod or mod.startswith("ct") or "computed" in mod:
        group = "CT"
    elif mod.startswith("mr") or "magnetic" in mod:
        group = "MR"
    elif any(k in mod for k in ("x-ray", "xray", "radiograph", "xr", "cr", "dx")):
        group = "XR"
    elif mod in OTHER_MODALITIES and float(res.get("modality_confidence") or 0) >= OTHER_CONFIDENCE:
        group = OTHER_MODALITIES[mod]
    region = None
    br = str(res.get("body_region", "")).lower()
    rconf = float(res.get("body_region_confidence") or 0)
    probs = {str(k).lower(): float(v) for k, v in (res.get("probabilities", {}).get("body_region") or {}).items()}
    if _panel_region(br) == "head" and rconf < HEAD_CONFIDENCE and probs:
        # not sure enough of a head: the best of the other regions that have panels (a cardiac cine MR was
        # reported as a brain MR with every structure "not found")
        others = {k: v for k, v in probs.items() if _panel_region(k) not in (None, "head")}
        if others:
            br = max(others, key=others.get)
            rconf = others[br]
    region = _panel_region(br)
    if region is None and br in OTHER_REGIONS and rconf >= OTHER_CONFIDENCE:
        region = br
    if float(res.get("modality_confidence") or 0) < MIN_CLASSIFIER_CONFIDENCE:
        group = None
    if rconf < MIN_CLASSIFIER_CONFIDENCE and br == str(res.get("body_region", "")).lower():
        region = None  # the classifier's own choice, not sure enough (a region chosen over "head" is kept)
    return {"modality": group, "region": region,
            "modality_confidence": res.get("modality_confidence"),
            "region_confidence": round(rconf, 4),
            "raw": {"modality": res.get("modality"), "body_region": br}}


def _panel_region(name: str) -> str | None:
    """The panel region (chest, abdomen, head, heart) a classifier body region belongs to, or None."""
    for r, keys in (("chest", ("chest", "thorax", "lung")), ("abdomen", ("abdomen", "pelvis", "liver")),
                    ("head", ("head", "brain", "skull")), ("heart", ("heart", "cardiac"))):
        if any(k in name for k in keys):
            return r
    return None


def _ct_region_heuristic(image: MedImage) -> str:
    d = image.gray()
    body = d > -500
    lung = (d > -950) & (d < -600)
    # lungs are inside the body outline: count air-like voxels on slices that have body
    frac = float(lung.sum()) / max(1.0, float(body.sum() + lung.sum()))
    return "chest" if frac > 0.15 else "abdomen"


def detect_context(image: MedImage) -> dict[str, Any]:
    """Modality group (CT, MR, XR), body region (abdomen, chest, head, heart) and how they were found."""
    meta = image.meta or {}
    evidence: list[str] = []
    modality = _modality_group(meta.get("modality")) if image.source_format.startswith("dicom") else None
    if modality:
        evidence.append(f"DICOM Modality {meta.get('modality')}")
    region = _region_from_text(meta.get("body_part_examined"))
    if region:
        evidence.append(f"DICOM BodyPartExamined {meta.get('body_part_examined')}")
    if modality is None:
        modality = _modality_group(image.modality)
        if modality:
            evidence.append(f"image modality {image.modality} ({image.source_format})")
    if modality is None or region is None:
        c = _from_classifier(image)
        if c:
            if modality is None and c["modality"]:
                modality = c["modality"]
                evidence.append(f"medground.classify modality {c['raw']['modality']}")
            if region is None and c["region"]:
                region = c["region"]
                evidence.append(f"medground.classify body region {c['raw']['body_region']}")
    if modality is None:
        if image.ndim == 2:
            modality = "XR"
            evidence.append("heuristic: 2D grey image without a modality -> radiograph")
        else:
            modality = "MR"
            evidence.append("heuristic: 3D volume not in Hounsfield units -> MR")
    if region is None:
        if modality == "XR":
            region = "chest"
            evidence.append("heuristic: radiograph -> chest")
        elif modality == "CT" and image.ndim == 3:
            region = _ct_region_heuristic(image)
            evidence.append(f"heuristic: CT lung-air fraction -> {region}")
        else:
            region = "abdomen"
            evidence.append("heuristic: default body region abdomen")
    if region == "heart" and modality == "CT":
        region = "chest"
    if region == "head" and modality == "CT":
        region = "head"
    key = f"{modality.lower()}_{region}"
    return {"modality": modality, "region": region, "panel": key if key in panels_data() else None,
            "evidence": evidence, "ndim": image.ndim}


# --------------------------------------------------------------------------- panels
def _paired_side(term) -> str:
    """The body side of one side of a paired structure (kidney, lung...), else "none": the right
    ventricle is called right without lying on the patient's right."""
    from medground.ontology import Ontology

    onto = Ontology.default()
    if term.laterality in ("left", "right") and term.parent and term.parent in onto \
            and term.id in onto.get(term.parent).pair:
        return term.laterality
    return "none"


def _item(term, prompt: str, spec: dict[str, Any]) -> PanelItem:
    return PanelItem(term_id=term.id, name=term.name, prompt=term.name, kind=term.kind,
                     region=term.region or "body", laterality=_paired_side(term),
                     measures=list(spec.get("measures", [])), reference=dict(spec.get("reference", {})))


def _default_spec(term) -> dict[str, Any]:
    """Measures for a user-given term: look for the same term in any default panel, else by kind."""
    for p in panels_data().values():
        for it in p["items"]:
            from medground.ontology import Ontology

            ids = [t.id for t in Ontology.default().resolve(it["prompt"]).terms]
            if term.id in ids:
                return it
    if term.kind == "finding":
        return {"measures": ["recist"]}
    if term.id == "aorta":
        return {"measures": ["aorta"], "reference": {"aorta_diameter_mm": "abdominal_aorta_diameter_mm"}}
    return {"measures": ["intensity"]}


def load_panel(key: str) -> Panel:
    from medground.ontology import Ontology

    data = panels_data()
    if key not in data:
        raise MedGroundInputError(f"unknown panel {key!r}; known: {', '.join(sorted(data))}.")
    p = data[key]
    onto = Ontology.default()
    items: list[PanelItem] = []
    for spec in p["items"]:
        for term in onto.resolve(spec["prompt"]).terms:
            items.append(_item(term, spec["prompt"], spec))
    return Panel(key=key, title=p["title"], modality=p["modality"], region=p["region"], items=items,
                 derived=list(p.get("derived", [])), notes=list(p.get("notes", [])))


def user_panel(terms: list[str], context: dict[str, Any]) -> Panel:
    """A panel from user words (``--panel liver,spleen,kidneys``): unknown words raise with suggestions."""
    from medground.ontology import Ontology

    onto = Ontology.default()
    words = [t.strip() for t in terms if t and t.strip()]
    if not words:
        raise MedGroundInputError("--panel is empty; give structures, e.g. --panel liver,spleen,kidneys.")
    items: list[PanelItem] = []
    seen: set[str] = set()
    for w in words:
        res = onto.resolve(w)  # unknown -> MedGroundInputError("unknown term ...; did you mean ...?")
        for term in res.terms:
            if term.id in seen:
                continue
            seen.add(term.id)
            items.append(_item(term, w, _default_spec(term)))
    ids = {i.term_id for i in items}
    derived = []
    if (context.get("modality") == "XR" or context.get("ndim") == 2) and {"heart", "lung_left", "lung_right"} <= ids:
        derived.append("cardiothoracic_ratio")
    if "myocardium" in ids:
        derived.append("lv_myocardial_mass")
    return Panel(key="custom", title="custom panel", modality=context.get("modality") or "",
                 region=context.get("region") or "", items=items, derived=derived, source="user")


def choose_panel(image: MedImage, panel: list[str] | str | None = None) -> tuple[Panel, dict[str, Any]]:
    """The panel for ``image``: the user's terms or panel key, else the default for its context."""
    ctx = detect_context(image)
    if isinstance(panel, str):
        panel = [p for p in panel.split(",")]
    if panel:
        if len(panel) == 1 and panel[0].strip() in panels_data():
            return load_panel(panel[0].strip()), ctx
        return user_panel(panel, ctx), ctx
    if ctx["panel"] is None:
        raise MedGroundInputError(
            f"no default report panel for {ctx['modality']} {ctx['region']} ({'; '.join(ctx['evidence'])}); give "
            f"--panel with structures "
            f"(e.g. --panel liver,spleen) or a panel name ({', '.join(panel_keys())}).")
    return load_panel(ctx["panel"]), ctx


def grounding_vocabulary() -> set[str] | None:
    """Term ids the packaged organ grounding head was trained on (None if it cannot be read). The findings
    head is left out on purpose: see ``NOT_IN_VOCABULARY`` in ``medground.report.builder``."""
    from medground.segment.vocab import trained_terms

    terms = trained_terms("grounding")
    return None if terms is None else set(terms)


def body_midline_x(image: MedImage) -> float | None:
    """World x (RAS mm) of the body's centre of mass, used to tell patient left from right."""
    if not image.has_geometry or image.ndim != 3:
        return None
    d = image.gray()
    thr = -300.0 if image.modality == "CT" else float(np.percentile(d, 60))
    body = d > thr
    if not body.any():
        return None
    c = np.argwhere(body).mean(axis=0)
    return float(image.voxel_to_world(c)[0])
