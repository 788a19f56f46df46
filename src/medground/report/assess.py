"""Measurement and wording stage of a report: masks in, structures / measurements / sentences out.

Everything here works on masks in the input's own grid (from the segmenter or given by the caller),
so it can be tested on reference or synthetic masks without running any network.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medground import measure
from medground.io.image import MedImage
from medground.report.panels import Panel, PanelItem, body_midline_x

MIN_CONFIDENCE = 0.5  # segmenter confidence below which sizes are not compared with reference ranges
# a whole (not truncated) organ mask whose length is below this fraction of the reference range's lower bound, or
# whose volume is below this fraction cubed of its lower bound, is implausible for that organ (a 2 mL "kidney" is a
# false detection far more often than a kidney): its sizes are not compared with reference ranges, and it says so
IMPLAUSIBLE_FRACTION = 0.4
MAX_LESIONS = 5  # RECIST 1.1: at most 5 target lesions in total
MYOCARDIUM_DENSITY_G_ML = 1.05
SIDE_METHOD_3D = ("side from world coordinates: the mask centroid's RAS x compared with the body's centre of mass "
                  "(x > midline + 10 mm = patient right, < midline - 10 mm = patient left, else midline)")
SIDE_METHOD_2D = ("side from the image position, assuming the standard radiological display of a PA radiograph "
                  "(the patient's right on the image left): centroid column vs the image centre (+-5% = midline)")
VOLUME_METHOD = "voxel count x voxel volume |det(affine[:3, :3])| from the image header"
AREA_METHOD = "pixel count x pixel area from the image geometry"
AREA_PX_METHOD = "pixel count (the picture has no physical pixel size)"
INTENSITY_METHOD = "mean and population SD of the voxel values inside the mask"
LENGTH_METHOD = measure.max_3d_diameter.__doc__.split("\n")[0] if measure.max_3d_diameter.__doc__ else ""
LV_MASS_METHOD = f"myocardium volume x {MYOCARDIUM_DENSITY_G_ML} g/mL (myocardial tissue density)"
REGION_TITLES = {"abdomen": "Abdomen", "thorax": "Chest", "pelvis": "Pelvis", "head": "Head", "heart": "Heart",
                 "neck": "Neck", "body": "Findings elsewhere", "spine": "Spine", "limbs": "Limbs"}


def _r(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(float(v), nd)


def _fmt(v: float | None, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{nd}f}"


class Assessor:
    """Collects structures and measurements (with ids) for one image and one panel."""

    def __init__(self, image: MedImage, panel: Panel, context: dict[str, Any]):
        self.image = image
        self.panel = panel
        self.context = context
        self.structures: list[dict[str, Any]] = []
        self.measurements: list[dict[str, Any]] = []
        self.masks: dict[str, np.ndarray] = {}  # structure id -> mask
        self.midline = body_midline_x(image)
        # a volume whose header carries no orientation (an identity affine: an array saved without its geometry,
        # as the ACDC files are) has no known voxel size or sides either: voxel counts, no side
        from medground.io.image import orientation_unknown

        self.geometry = bool(image.has_geometry) and not (image.ndim == 3 and orientation_unknown(image))
        self.len_unit = "mm" if self.geometry else "px"

    # ----------------------------------------------------------------- records
    def add_measurement(self, structure_ids: list[str], name: str, label: str, value: float | None, unit: str,
                        method: str, reference: str | None = None, nd: int = 2, **extra) -> dict[str, Any]:
        m = {"id": f"meas-{len(self.measurements) + 1}", "structure_ids": list(structure_ids), "name": name,
             "label": label, "value": _r(value, nd), "unit": unit, "method": method,
             "reference": None, "status": None}
        if reference and value is not None and (unit != "px" or reference == "cardiothoracic_ratio"):
            f = measure.flag(reference, value)
            m["reference"] = {k: f[k] for k in ("measure", "range", "unit", "population", "source", "finding")}
            m["status"] = f["status"]
        m.update(extra)
        self.measurements.append(m)
        return m

    def add_structure(self, item: PanelItem, mask: np.ndarray | None, status: str, reason: str | None = None,
                      mask_ref: dict[str, Any] | None = None, confidence: float | None = None) -> dict[str, Any]:
        s = {"id": f"struct-{len(self.structures) + 1}", "term_id": item.term_id, "name": item.name,
             "kind": item.kind, "region": item.region, "laterality": item.laterality, "status": status,
             "reason": reason, "mask": mask_ref, "confidence": _r(confidence, 4), "side": None,
             "measurement_ids": [], "lesions": [], "warnings": [], "truncated": False, "low_confidence": False}
        self.structures.append(s)
        if mask is not None and status == "present":
            self.masks[s["id"]] = np.asarray(mask, dtype=bool)
            self._measure(s, item, self.masks[s["id"]])
        return s

    def _link(self, s: dict[str, Any], m: dict[str, Any]) -> None:
        s["measurement_ids"].append(m["id"])

    # ----------------------------------------------------------------- measurements
    def _side(self, mask: np.ndarray) -> dict[str, Any] | None:
        img = self.image
        if img.ndim == 3 and self.midline is not None and self.geometry:
            c = measure.centroid(mask, img)["world_mm"]
            dx = c[0] - self.midline
            side = "right" if dx > 10 else "left" if dx < -10 else "midline"
            return {"side": side, "offset_mm": round(dx, 1), "method": SIDE_METHOD_3D}
        if img.ndim == 2:
            cx = measure.centroid(mask, img)["voxel"][0]
            w = img.shape[0]
            rel = (cx - (w - 1) / 2) / w
            side = "right" if rel < -0.05 else "left" if rel > 0.05 else "midline"
            return {"side": side, "offset_fraction": round(rel, 3), "method": SIDE_METHOD_2D}
        return None

    def _touches_edge(self, mask: np.ndarray) -> bool:
        m = mask if mask.ndim == 3 else mask[:, :, None]
        faces = [m[0], m[-1], m[:, 0], m[:, -1]]
        if self.image.ndim == 3:
            faces += [m[:, :, 0], m[:, :, -1]]
        return any(bool(f.any()) for f in faces)

    def _measure(self, s: dict[str, Any], item: PanelItem, mask: np.ndarray) -> None:
        img = self.image
        sid = s["id"]
        name = item.name
        ref = dict(item.reference)
        if s.get("confidence") is not None and s["confidence"] < MIN_CONFIDENCE:
            s["low_confidence"] = True  # an unsure mask: its sizes are not compared with reference ranges
            ref = {}
        if "aorta" not in item.measures and self._touches_edge(mask):
            s["truncated"] = True  # partly outside the field of view: sizes are lower bounds, not flagged
            ref.pop("volume_ml", None)
            ref.pop("length_mm", None)
        v = measure.volume_ml(mask, img) if img.ndim == 3 and self.geometry else None
        d = measure.max_3d_diameter(mask, img) if "length" in item.measures and img.ndim == 3 else None
        if v is not None:
            self._plausible(s, ref, v, d["diameter_mm"] if d else None)
        if img.ndim == 3:
            if self.geometry:
                self._link(s, self.add_measurement([sid], "volume", f"{name} volume", v, "mL", VOLUME_METHOD,
                                                   ref.get("volume_ml"), nd=2))
            else:
                self._link(s, self.add_measurement([sid], "volume", f"{name} volume", int(mask.sum()), "voxels",
                                                   "voxel count (the image has no physical voxel size)", nd=0))
        else:
            if self.geometry:
                a = measure.area_mm2(mask, img)
                self._link(s, self.add_measurement([sid], "area", f"{name} area", a, "mm2", AREA_METHOD, nd=1))
            else:
                self._link(s, self.add_measurement([sid], "area", f"{name} area", int(mask.sum()), "px",
                                                   AREA_PX_METHOD, nd=0))
        side = self._side(mask)
        if side:
            s["side"] = side
            if item.laterality in ("left", "right") and side["side"] not in (item.laterality, "midline"):
                s["warnings"].append(f"the {name} mask lies on the patient's {side['side']} "
                                     f"({'world coordinates' if img.ndim == 3 else 'image position'}): check it")
        if "intensity" in item.measures:
            st = measure.intensity_stats(mask, img)
            unit = "HU" if img.modality == "CT" else "a.u."
            self._link(s, self.add_measurement([sid], "mean_intensity", f"{name} mean {'attenuation' if unit == 'HU' else 'intensity'}",
                                               st["mean"], unit, INTENSITY_METHOD, nd=1, sd=_r(st["sd"], 1),
                                               n_voxels=st["n"]))
        if d is not None:
            self._link(s, self.add_measurement([sid], "length", f"{name} length", d["diameter_mm"], self.len_unit,
                                               d["method"], ref.get("length_mm"), nd=1))
        if "aorta" in item.measures and img.ndim == 3:
            a = measure.aortic_max_diameter(mask, img)
            self._link(s, self.add_measurement([sid], "aorta_diameter", "maximal aortic diameter", a["diameter_mm"],
                                               self.len_unit, a["method"], ref.get("aorta_diameter_mm"), nd=1,
                                               slice_index=a["slice_index"],
                                               equivalent_diameter_mm=_r(a["equivalent_diameter_mm"], 1)))
        if "recist" in item.measures or item.kind == "finding":
            self._lesions(s, item, mask)

    @staticmethod
    def _plausible(s: dict[str, Any], ref: dict, volume_ml: float, length_mm: float | None) -> None:
        """Mark a whole organ mask far below its reference range as implausible (see IMPLAUSIBLE_FRACTION) and stop
        its sizes from being graded against the range (``ref`` loses them)."""
        checks = []
        if ref.get("length_mm") and length_mm is not None:
            checks.append(("length", length_mm, ref["length_mm"], "mm", IMPLAUSIBLE_FRACTION))
        if ref.get("volume_ml"):
            checks.append(("volume", volume_ml, ref["volume_ml"], "mL", IMPLAUSIBLE_FRACTION ** 3))
        for what, value, name, unit, frac in checks:
            lo = measure.flag(name, value)["range"]["min"]
            if value is not None and lo and value < frac * lo:
                s["implausible"] = {"measure": what, "value": _r(value, 1), "unit": unit, "reference_min": lo,
                                    "fraction": frac}
                ref.pop("volume_ml", None)
                ref.pop("length_mm", None)
                return

    def _lesions(self, s: dict[str, Any], item: PanelItem, mask: np.ndarray) -> None:
        img = self.image
        comps = measure.components(mask, img)
        min_vox = 3 if img.ndim == 3 else 9
        kept = [c for c in comps["components"] if c["voxels"] >= min_vox][:MAX_LESIONS]
        s["n_lesions"] = len([c for c in comps["components"] if c["voxels"] >= min_vox])
        for c in kept:
            lm = comps["labels"] == c["label"]
            r = measure.recist_diameters(lm, img, plane="axial")
            if r["short_axis_mm"] is not None and r["long_axis_mm"] is not None:
                # the short axis is sampled at 1/4 pixel: on tiny round lesions it can exceed the long axis
                r["short_axis_mm"] = min(r["short_axis_mm"], r["long_axis_mm"])
            lid = f"{s['id']}-lesion-{c['label']}"
            ids = []
            m1 = self.add_measurement([s["id"]], "recist_long_axis", f"{item.name} {c['label']} long axis",
                                      r["long_axis_mm"], self.len_unit, r["method"], nd=1,
                                      lesion=lid, plane=r["plane"], slice_index=r["slice_index"],
                                      endpoints_voxel=r["long_axis_endpoints"]["voxel"])
            m2 = self.add_measurement([s["id"]], "recist_short_axis", f"{item.name} {c['label']} short axis",
                                      r["short_axis_mm"], self.len_unit, r["method"], nd=1,
                                      lesion=lid, plane=r["plane"], slice_index=r["slice_index"],
                                      endpoints_voxel=r["short_axis_endpoints"]["voxel"])
            ids += [m1["id"], m2["id"]]
            if img.ndim == 3:
                if self.geometry:
                    m3 = self.add_measurement([s["id"]], "lesion_volume", f"{item.name} {c['label']} volume",
                                              measure.volume_ml(lm, img), "mL", VOLUME_METHOD, nd=3, lesion=lid)
                else:
                    m3 = self.add_measurement([s["id"]], "lesion_volume", f"{item.name} {c['label']} volume",
                                              int(lm.sum()), "voxels", "voxel count", nd=0, lesion=lid)
                ids.append(m3["id"])
            for i in ids:
                s["measurement_ids"].append(i)
            s["lesions"].append({"id": lid, "component": c["label"], "measurement_ids": ids,
                                 "long_axis": m1["value"], "short_axis": m2["value"], "slice_index": r["slice_index"]})

    # ----------------------------------------------------------------- derived measurements
    def _present(self, term_id: str) -> dict[str, Any] | None:
        for s in self.structures:
            if s["term_id"] == term_id and s["status"] == "present":
                return s
        return None

    def derived(self) -> list[dict[str, Any]]:
        """Measurements combining structures (cardiothoracic ratio, LV mass); returns notes on skipped ones."""
        notes = []
        for d in self.panel.derived:
            if d == "cardiothoracic_ratio":
                h, ll, rl = self._present("heart"), self._present("lung_left"), self._present("lung_right")
                if not (h and ll and rl):
                    notes.append({"measure": d, "reason": "needs heart, left lung and right lung masks"})
                    continue
                ctr = measure.cardiothoracic_ratio(self.masks[h["id"]], self.masks[ll["id"]],
                                                   self.masks[rl["id"]], self.image)
                view = str((self.image.meta or {}).get("view_position", "")).upper()
                caveat = None
                if view == "AP":
                    caveat = "AP view: the heart is magnified, the 0.5 threshold applies to PA films only"
                m = self.add_measurement([h["id"], ll["id"], rl["id"]], "cardiothoracic_ratio",
                                         "cardiothoracic ratio", ctr["ratio"], "ratio", ctr["method"],
                                         "cardiothoracic_ratio", nd=3,
                                         heart_width=ctr["heart_width_mm"] if ctr["heart_width_mm"] else ctr["heart_width_px"],
                                         thoracic_width=ctr["thoracic_width_mm"] if ctr["thoracic_width_mm"] else ctr["thoracic_width_px"],
                                         width_unit="mm" if ctr["heart_width_mm"] else "px",
                                         heart_x=ctr["heart_x"], heart_rows=ctr["heart_rows"],
                                         thoracic_x=ctr["thoracic_x"],
                                         thoracic_row=ctr["thoracic_row"], view_position=view or None,
                                         caveat=caveat)
                if caveat and m["status"] == "high":
                    m["status"] = "unknown"
                for s in (h,):
                    s["measurement_ids"].append(m["id"])
            elif d == "lv_myocardial_mass":
                my = self._present("myocardium")
                if not my or self.image.ndim != 3 or not self.geometry:
                    notes.append({"measure": d, "reason": "needs a myocardium mask on a 3D image with voxel size"})
                    continue
                v = measure.volume_ml(self.masks[my["id"]], self.image)
                m = self.add_measurement([my["id"]], "lv_myocardial_mass", "left-ventricular myocardial mass",
                                         v * MYOCARDIUM_DENSITY_G_ML, "g", LV_MASS_METHOD, nd=1)
                my["measurement_ids"].append(m["id"])
        return notes


# --------------------------------------------------------------------------- wording
def _value_text(m: dict[str, Any]) -> str:
    v, u = m["value"], m["unit"]
    if v is None:
        return "not measurable"
    if u == "ratio":
        return f"{v:.2f}"
    if u == "mL":
        return f"{v:.1f} mL" if v >= 1 else f"{v:.2f} mL"
    if u in ("voxels", "px"):
        return f"{v:.0f} {u}"
    if u == "mm2":
        return f"{v:.0f} mm²"
    return f"{v:.1f} {u}"


def _range_text(m: dict[str, Any]) -> str:
    ref = m.get("reference")
    if not ref:
        return ""
    rg = ref["range"]
    lo, hi = rg["min"], rg["max"]
    u = "" if ref["unit"] in (None, "ratio") else f" {ref['unit']}"
    if lo is not None and hi is not None:
        return f"{lo:g}-{hi:g}{u}"
    if hi is not None:
        return f"{'≤' if rg['max_inclusive'] else '<'} {hi:g}{u}"
    return f"{'≥' if rg['min_inclusive'] else '>'} {lo:g}{u}"


def _flag_text(m: dict[str, Any]) -> str:
    st = m.get("status")
    if st in ("high", "low"):
        word = "above" if st == "high" else "below"
        return f" ({word} the reference range {_range_text(m)}: {m['reference']['finding']})"
    if st == "normal":
        return f" (reference {_range_text(m)})"
    if m.get("caveat"):
        return f" ({m['caveat']})"
    return ""


def compose(a: Assessor, derived_notes: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    """Sentences grouped by region, the impression sentences, and the list of what was not assessed."""
    meas = {m["id"]: m for m in a.measurements}
    sentences: list[dict[str, Any]] = []
    not_assessed: list[dict[str, Any]] = []

    def add(section: str, text: str, structures: list[dict], mids: list[str], abnormal: bool = False,
            kind: str = "finding") -> dict:
        s = {"id": f"sent-{len(sentences) + 1}", "section": section, "kind": kind, "text": text,
             "structure_ids": [x["id"] for x in structures],
             "mask_ids": [x["mask"]["id"] for x in structures if x.get("mask")],
             "measurement_ids": list(mids), "abnormal": abnormal}
        sentences.append(s)
        return s

    panel_region = {"chest": "thorax"}.get(a.panel.region, a.panel.region) or "body"

    def section_of(s: dict[str, Any]) -> str:
        region = panel_region if (a.panel.source == "default" or s["region"] == "body") else s["region"]
        return REGION_TITLES.get(region, str(region).title())

    for s in a.structures:
        section = section_of(s)
        name = s["name"][0].upper() + s["name"][1:]
        if s["status"] != "present":
            add(section, f"{name} not assessed: {s['reason']}.", [s], [], kind="not_assessed")
            not_assessed.append({"structure_id": s["id"], "name": s["name"], "reason": s["reason"]})
            continue
        own = [meas[i] for i in s["measurement_ids"] if meas[i]["structure_ids"][0] == s["id"]
               and "lesion" not in meas[i] and meas[i]["name"] not in ("cardiothoracic_ratio", "lv_myocardial_mass")]
        parts = []
        for m in own:
            if m["name"] == "mean_intensity":
                sd = f" ± {m['sd']:.1f}" if m.get("sd") is not None else ""
                parts.append(f"{m['label'].replace(s['name'] + ' ', '')} {m['value']:.1f}{sd} {m['unit']}")
            else:
                parts.append(f"{m['label'].replace(s['name'] + ' ', '')} {_value_text(m)}{_flag_text(m)}")
        if s.get("low_confidence"):
            parts.append(f"low segmentation confidence ({s['confidence']:.2f}): not compared with reference ranges")
        if s.get("truncated"):
            parts.append("partly imaged (the mask touches the image edge: sizes are lower bounds)")
        if s.get("implausible"):
            q = s["implausible"]
            parts.append(f"implausibly small for a whole {s['name']} ({q['measure']} {q['value']} {q['unit']}, the "
                         f"reference range starts at {q['reference_min']:g} {q['unit']}): possibly another structure; "
                         "not compared with reference ranges")
        if s.get("side"):
            parts.append(f"on the patient's {s['side']['side']}" if s["side"]["side"] != "midline" else "midline")
        abnormal = any(m.get("status") in ("high", "low") for m in own)
        if s["kind"] == "finding":
            n = s.get("n_lesions", 0)
            txt = f"{name}: {n} lesion{'s' if n != 1 else ''} segmented"
            abnormal = True
        else:
            txt = f"{name}: present"
        add(section, txt + ("; " + "; ".join(parts) if parts else "") + ".", [s], [m["id"] for m in own], abnormal,
            kind="lesion_summary" if s["kind"] == "finding" else "finding")
        for les in s["lesions"]:
            ms = [meas[i] for i in les["measurement_ids"]]
            vol = next((m for m in ms if m["name"] == "lesion_volume"), None)
            plane = ms[0].get("plane")
            t = (f"{name} {les['component']}: {_fmt(les['long_axis'])} x {_fmt(les['short_axis'])} {a.len_unit} "
                 f"(RECIST long x short axis, {'axial' if plane == 'axial' else 'in-plane'}"
                 f"{', slice ' + str(les['slice_index']) if a.image.ndim == 3 else ''})")
            if vol:
                t += f", volume {_value_text(vol)}"
            add(section, t + ".", [s], les["measurement_ids"], False, kind="lesion")
        for w in s["warnings"]:
            add(section, f"Check: {w}.", [s], [], kind="warning")
    for m in a.measurements:
        if m["name"] == "cardiothoracic_ratio":
            structs = [x for x in a.structures if x["id"] in m["structure_ids"]]
            wu = m.get("width_unit")
            txt = (f"Cardiothoracic ratio {m['value']:.2f} (heart {m['heart_width']:.0f} {wu} / thorax "
                   f"{m['thoracic_width']:.0f} {wu}){_flag_text(m)}.")
            add(section_of(structs[0]), txt, structs, [m["id"]], m.get("status") == "high")
        elif m["name"] == "lv_myocardial_mass":
            structs = [x for x in a.structures if x["id"] in m["structure_ids"]]
            add(section_of(structs[0]), f"Left-ventricular myocardial mass {m['value']:.0f} g ({LV_MASS_METHOD}).", structs, [m["id"]])
    for n in derived_notes:
        label = n["measure"].replace("_", " ")
        add(REGION_TITLES.get(panel_region, "Chest"), f"{label[0].upper() + label[1:]} not assessed: {n['reason']}.", [], [], kind="not_assessed")
        not_assessed.append({"structure_id": None, "name": label, "reason": n["reason"]})

    # impression: what is abnormal, then what could not be assessed
    impression: list[dict[str, Any]] = []

    def imp(text: str, src: list[dict]) -> None:
        impression.append({"id": f"imp-{len(impression) + 1}", "text": text,
                           "sentence_ids": [x["id"] for x in src],
                           "structure_ids": sorted({i for x in src for i in x["structure_ids"]}),
                           "mask_ids": sorted({i for x in src for i in x["mask_ids"]}),
                           "measurement_ids": [i for x in src for i in x["measurement_ids"]]})

    for s in sentences:
        if not s["abnormal"]:
            continue
        flagged = [meas[i] for i in s["measurement_ids"] if meas[i].get("status") in ("high", "low")]
        if flagged:
            for m in flagged:
                imp(f"{m['reference']['finding'][0].upper() + m['reference']['finding'][1:]}: "
                    f"{m['label']} {_value_text(m)}.", [s])
        elif s["kind"] == "lesion_summary":
            first = [x for x in sentences if x["kind"] == "lesion" and x["structure_ids"] == s["structure_ids"]]
            imp(s["text"][:-1] + (f"; the largest measures {first[0]['text'].split(': ', 1)[1]}" if first else "."),
                [s] + first[:1])
    warn = [s for s in sentences if s["kind"] == "warning"]
    for s in warn:
        imp(s["text"], [s])
    if not impression:
        n_ok = sum(1 for s in a.structures if s["status"] == "present")
        imp(f"No abnormality flagged among the {n_ok} assessed structure{'s' if n_ok != 1 else ''}.",
            [s for s in sentences if s["kind"] == "finding"])
    unsure = [s for s in a.structures if s.get("low_confidence")]
    if unsure:
        imp("Low segmentation confidence, so sizes are not compared with reference ranges: "
            + ", ".join(s["name"] for s in unsure) + ".",
            [x for x in sentences if x["kind"] in ("finding", "lesion_summary")
             and set(x["structure_ids"]) & {s["id"] for s in unsure}])
    odd = [s for s in a.structures if s.get("implausible")]
    if odd:
        imp("Implausibly small for the organ named, so possibly another structure, and not compared with reference "
            "ranges: " + ", ".join(s["name"] for s in odd) + ".",
            [x for x in sentences if x["kind"] in ("finding", "lesion_summary")
             and set(x["structure_ids"]) & {s["id"] for s in odd}])
    cut = [s for s in a.structures if s.get("truncated")]
    if cut:
        imp("Partly imaged, so sizes are lower bounds and not compared with reference ranges: "
            + ", ".join(s["name"] for s in cut) + ".",
            [x for x in sentences if x["kind"] in ("finding", "lesion_summary")
             and set(x["structure_ids"]) & {s["id"] for s in cut}])
    if not_assessed:
        na = [s for s in sentences if s["kind"] == "not_assessed"]
        by_reason: dict[str, list[str]] = {}
        for n in not_assessed:
            by_reason.setdefault(n["reason"], []).append(n["name"])
        imp("Not assessed: " + "; ".join(f"{', '.join(names)} ({r})" for r, names in by_reason.items()) + ".", na)
    return sentences, impression, not_assessed
