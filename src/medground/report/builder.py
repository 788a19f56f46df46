"""build_report: panel -> text-prompted segmentation -> measurements -> grounded report files.

Two stages, each callable on its own:

* :func:`build_report` chooses the panel, runs ``segment_text`` for the panel's structures, then
* :func:`report_from_masks` measures given masks (from the segmenter, reference labels or a test),
  words the report and writes every file (masks/findings.json/overlays/SEG via ``write_results``,
  report.json, report.md, report.html, report.dcm).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.report.panels import Panel, choose_panel, grounding_vocabulary

REPORT_VERSION = "1.0"
# Reports use the organ grounding head only: the findings head (lesion, tumour...) is not reliable enough on
# CT/MR yet (held-out text Dice 0.09 on CT lesions, 0 on a brain tumour: benchmarks/README.md section 5).
NOT_IN_VOCABULARY = "no validated automatic detector for it yet"
NOT_FOUND = "not found"
DISCLAIMER = ("Automatic measurements from automatic segmentations: a reader's aid, not a diagnosis. "
              "Check every mask against the images before using a number.")
log = logging.getLogger(__name__)


def _patient_block(image: MedImage) -> dict[str, Any] | None:
    ds = (image.dicom_datasets or [None])[0]
    if ds is None:
        return None
    out = {}
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "AccessionNumber"):
        v = ds.get(kw, None)
        if v not in (None, ""):
            out[kw] = str(v)
    return out


def build_report(image: MedImage, out_dir, input_path=None, panel: list[str] | str | None = None,
                 device: str = "cpu", *, include_identifiers: bool = False, dicom_sr: bool = True,
                 progress: bool = False, model=None, grounding=None) -> dict[str, Any]:
    """Segment the panel's structures in ``image`` and write the report files to ``out_dir``.

    ``panel``: structure words (``["liver", "spleen", "kidneys"]`` or ``"liver,spleen"``) or a panel
    name (``ct_abdomen``...); default: the panel of the recognised modality and body region.
    Structures outside the grounding model's vocabulary are reported as not assessed (no guess).
    ``model``/``grounding`` are passed to ``segment_text`` (tests use small stand-ins).
    Returns the report.json content.
    """
    from medground.io import validate
    from medground.segment.text import segment_text

    validate(image)
    pnl, ctx = choose_panel(image, panel)
    vocab = set(getattr(grounding, "term_ids", [])) if grounding is not None else grounding_vocabulary()
    reasons: dict[str, str] = {}
    if grounding is None and vocab is not None:  # brain atlas structures: by registration, when installed
        from medground.segment.atlas import find_atlas_root, is_atlas_term

        atlas_items = {it.term_id for it in pnl.items if is_atlas_term(it.term_id)}
        if atlas_items:
            try:
                find_atlas_root()
                vocab = vocab | atlas_items
            except MedGroundInputError:
                reasons.update({t: "the brain atlases are not installed (set MEDGROUND_ATLASES)" for t in atlas_items})
    todo = [it for it in pnl.items if vocab is None or it.term_id in vocab]
    masks: dict[str, np.ndarray | None] = {}
    confidences: dict[str, float] = {}
    for it in pnl.items:
        if it not in todo:
            reasons.setdefault(it.term_id, NOT_IN_VOCABULARY)
    seg_info: dict[str, Any] = {"method": "text-prompted segmentation (medground.segment.text)",
                                "prompts": [it.prompt for it in todo]}
    if todo:
        try:
            results, extra = segment_text(image, [it.prompt for it in todo], device=device, progress=progress,
                                          model=model, grounding=grounding)
        except MedGroundInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed segmentation is reported, not fatal
            log.warning("segmentation failed: %s", exc)
            for it in todo:
                reasons[it.term_id] = f"segmentation failed ({type(exc).__name__}: {str(exc)[:120]})"
            results, extra = [], {}
        for it, r in zip(todo, results):
            why = (getattr(r, "info", None) or {}).get("not_assessed")
            if why:  # no model here finds it in this kind of image
                masks[it.term_id] = None
                reasons[it.term_id] = why
                continue
            masks[it.term_id] = r.mask
            confidences[it.term_id] = float(r.confidence)
        seg_info.update({k: v for k, v in extra.items() if k in ("orientation", "grounding_model")})
    return report_from_masks(image, masks, out_dir, input_path=input_path, panel=pnl, context=ctx,
                             reasons=reasons, confidences=confidences, segmentation=seg_info,
                             include_identifiers=include_identifiers, dicom_sr=dicom_sr)


def report_from_masks(image: MedImage, masks: dict[str, Any], out_dir, input_path=None,
                      panel: Panel | list[str] | str | None = None, context: dict[str, Any] | None = None,
                      reasons: dict[str, str] | None = None, confidences: dict[str, float] | None = None,
                      segmentation: dict[str, Any] | None = None, include_identifiers: bool = False,
                      dicom_sr: bool = True, overlays: bool = True) -> dict[str, Any]:
    """Measure ``masks`` and write the report (the measurement/report stage of :func:`build_report`).

    ``masks``: structure word or ontology term id -> bool mask in ``image``'s grid (``None`` = not
    assessed). Without ``panel`` the panel is the masks' own structures. Panel structures without a
    mask are reported "not assessed" with ``reasons[term_id]`` (default: "no mask given").
    """
    from medground.ontology import Ontology
    from medground.report.assess import Assessor, compose
    from medground.report.render import write_html, write_markdown
    from medground.report.sr import prepare_sources, write_sr
    from medground.segment.outputs import input_summary, write_results

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onto = Ontology.default()
    by_term: dict[str, Any] = {}
    for k, v in masks.items():
        tid = k if k in onto else None
        if tid is None:
            res = onto.resolve(k)
            if len(res.terms) != 1:
                raise MedGroundInputError(f"mask name {k!r} names {len(res.terms)} structures; give one per side.")
            tid = res.terms[0].id
        by_term[tid] = v
    if panel is None or isinstance(panel, (list, str)):
        pnl, ctx = choose_panel(image, panel if panel is not None else [onto.get(t).name for t in by_term])
    else:
        pnl, ctx = panel, context or {}
    ctx = dict(context or ctx)
    listed = {it.term_id for it in pnl.items}
    extra = [t for t in by_term if t not in listed]
    if extra:  # masks of structures outside the panel are reported too, after the panel's own
        from medground.report.panels import _default_spec, _item

        pnl = dataclasses.replace(pnl, items=list(pnl.items) + [
            _item(onto.get(t), onto.get(t).name, _default_spec(onto.get(t))) for t in extra])
    reasons = dict(reasons or {})
    confidences = dict(confidences or {})

    out_image = image
    if image.dicom_datasets:
        out_image = dataclasses.replace(image, dicom_datasets=prepare_sources(image.dicom_datasets,
                                                                              include_identifiers))

    # masks -> write_results (mask files, label map, findings.json, overlays, DICOM SEG)
    results, order = [], []
    for it in pnl.items:
        m = by_term.get(it.term_id)
        if m is None:
            continue
        m = np.asarray(m)
        if m.ndim == 2:
            m = m[:, :, None]
        if m.shape != image.shape:
            raise MedGroundInputError(f"the {it.name} mask has shape {m.shape}, the image {image.shape}.")
        m = m > 0
        conf = confidences.get(it.term_id, 1.0)
        results.append(SimpleNamespace(mask=m, name=it.name, prompt={"type": "text", "text": it.prompt},
                                       confidence=conf, info={"term_id": it.term_id}))
        order.append(it.term_id)
    findings = write_results(out_image, results, out, input_path=str(input_path) if (input_path and include_identifiers) else None,
                             overlay=overlays, extra=None) if results else {"findings": []}
    fmap = {tid: f for tid, f in zip(order, findings.get("findings", []))}

    # measurements
    a = Assessor(image, pnl, ctx)
    seg_numbers = bool(findings.get("dicom_seg"))
    for it in pnl.items:
        f = fmap.get(it.term_id)
        if f is None:
            a.add_structure(it, None, "not_assessed", reasons.get(it.term_id, "no mask given"))
            continue
        mref = {"id": f"mask-{f['label_value']}", "file": f["mask_file"], "label_value": f["label_value"],
                "label_map": findings.get("label_map", {}).get("file"), "overlay": f.get("overlay"),
                "segment_number": f["label_value"] if seg_numbers else None}
        if f["present"]:
            a.add_structure(it, results[order.index(it.term_id)].mask, "present", None, mref, f["confidence"])
        else:
            a.add_structure(it, None, "not_found", reasons.get(it.term_id, NOT_FOUND), mref, f["confidence"])
    notes = a.derived()
    extra_pictures: list[str] = []
    if overlays:
        from medground.report.render import ctr_overlay

        for m in a.measurements:
            if m["name"] == "cardiothoracic_ratio":
                sids = m["structure_ids"]
                names = {x["id"]: x["name"] for x in a.structures}
                ctr_overlay(image, {names[i]: a.masks[i] for i in sids}, m, out / "overlay_ctr.png")
                m["overlay"] = "overlay_ctr.png"
                extra_pictures.append("overlay_ctr.png")
        from medground.report.render import lesion_overlay
        from medground.segment.outputs import safe_name

        meas_by_id = {m["id"]: m for m in a.measurements}
        for s in a.structures:
            if not s["lesions"]:
                continue
            comps = measure_components(a.masks[s["id"]], image)
            for les in s["lesions"]:
                ms = [meas_by_id[i] for i in les["measurement_ids"]]
                long_m = next(m for m in ms if m["name"] == "recist_long_axis")
                short_m = next(m for m in ms if m["name"] == "recist_short_axis")
                if long_m["endpoints_voxel"] is None:
                    continue
                name = f"overlay_{safe_name(s['name'])}-lesion-{les['component']}.png"
                lesion_overlay(image, comps == les["component"], long_m["endpoints_voxel"],
                               short_m["endpoints_voxel"], out / name, f"{s['name']} {les['component']}")
                les["overlay"] = name
                extra_pictures.append(name)
    sentences, impression, not_assessed = compose(a, notes)

    summary = input_summary(image, None)
    summary.pop("file", None)
    if include_identifiers and input_path:
        summary["file"] = Path(str(input_path)).name
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "medground_version": findings.get("medground_version") or _version(),
        "input": summary,
        "identifiers_included": bool(include_identifiers),
        "context": {**ctx, "panel": pnl.key, "panel_title": pnl.title, "panel_source": pnl.source,
                    "panel_notes": pnl.notes},
        "segmentation": segmentation or {"method": "masks given by the caller"},
        "structures": a.structures,
        "measurements": a.measurements,
        "sentences": sentences,
        "impression": impression,
        "not_assessed": not_assessed,
        "files": {"findings": "findings.json" if results else None,
                  "label_map": findings.get("label_map", {}).get("file"),
                  "dicom_seg": findings.get("dicom_seg"),
                  "overlays": list(findings.get("overlays", [])) + extra_pictures,
                  "markdown": "report.md", "html": "report.html", "dicom_sr": None},
        "references": _references(a.measurements),
        "disclaimer": DISCLAIMER,
    }
    if include_identifiers:
        report["patient"] = _patient_block(image)
    # DICOM SR
    if dicom_sr:
        seg_path = out / findings["dicom_seg"] if findings.get("dicom_seg") else None
        try:
            sr = write_sr(report, out_image, seg_path, out / "report.dcm")
        except Exception as exc:  # noqa: BLE001 - the other report files are still useful
            log.warning("DICOM SR failed: %s", exc)
            sr = {"written": False, "file": None, "reason": f"DICOM SR failed ({type(exc).__name__}: {str(exc)[:150]})"}
    else:
        sr = {"written": False, "file": None, "reason": "not requested (--no-dicom-sr)"}
    report["dicom_sr"] = sr
    report["files"]["dicom_sr"] = sr.get("file")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, out / "report.md")
    write_html(report, out, out / "report.html")
    return report


def measure_components(mask: np.ndarray, image: MedImage) -> np.ndarray:
    from medground import measure

    return measure.components(mask, image)["labels"]


def _references(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for m in measurements:
        ref = m.get("reference")
        if ref and ref["measure"] not in seen:
            seen[ref["measure"]] = {"measure": ref["measure"], "source": ref["source"],
                                    "population": ref["population"], "measurement_ids": []}
        if ref:
            seen[ref["measure"]]["measurement_ids"].append(m["id"])
    return list(seen.values())


def _version() -> str:
    from medground import __version__

    return __version__
