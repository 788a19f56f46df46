"""report.md and a self-contained report.html (overlay PNGs embedded as base64 data URIs)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np


def _sections(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in report["sentences"]:
        out.setdefault(s["section"], []).append(s)
    return out


def _tags(s: dict[str, Any]) -> str:
    ids = list(s.get("mask_ids", [])) + list(s.get("measurement_ids", []))
    return ", ".join(dict.fromkeys(ids))


def _links(s: dict[str, Any]) -> str:
    """Mask and measurement ids of a sentence as HTML, measurements linked to their table rows."""
    e = html.escape
    masks = [e(i) for i in dict.fromkeys(s.get("mask_ids", []))]
    meas = [f"<a href='#{e(i)}'>{e(i)}</a>" for i in dict.fromkeys(s.get("measurement_ids", []))]
    return ", ".join(masks + meas)


def _title(report: dict[str, Any]) -> str:
    return f"medground report: {report['context'].get('panel_title', 'custom panel')}"


def _context_line(report: dict[str, Any]) -> str:
    c = report["context"]
    inp = report["input"]
    shape = "x".join(str(v) for v in inp["shape"])
    sp = ", ".join(f"{v:g}" for v in inp["spacing_mm"][: inp["ndim"]])
    ev = "; ".join(c.get("evidence", [])) or "given"
    vox = ("voxel size and orientation unknown (no orientation in the header): sizes in voxels, no sides"
           if inp.get("geometry_note") else f"voxel {sp} {'mm' if inp['has_geometry'] else 'px'}")
    return (f"{c.get('modality')} {c.get('region')} ({ev}); image {shape} ({inp['format']}), "
            f"{vox}; panel {c.get('panel')} ({c.get('panel_source')}).")


def _value(m: dict[str, Any]) -> str:
    v = m["value"]
    if v is None:
        return "n/a"
    s = f"{v:g}"
    if m.get("sd") is not None:
        s += f" ± {m['sd']:g}"
    return s


def _ref(m: dict[str, Any]) -> str:
    r = m.get("reference")
    if not r:
        return ""
    rg = r["range"]
    lo = "" if rg["min"] is None else f"{rg['min']:g}"
    hi = "" if rg["max"] is None else f"{rg['max']:g}"
    return f"{lo}–{hi}" if lo and hi else (f"≤ {hi}" if hi else f"≥ {lo}")


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    L = [f"# {_title(report)}", "", f"_{_context_line(report)}_", ""]
    L += ["## Findings", ""]
    for sec, sents in _sections(report).items():
        L += [f"### {sec}", ""]
        for s in sents:
            L.append(f"- {s['text']} `[{_tags(s)}]`" if _tags(s) else f"- {s['text']}")
        L.append("")
    L += ["## Impression", ""]
    for i in report["impression"]:
        tags = ", ".join(dict.fromkeys(i["mask_ids"] + i["measurement_ids"]))
        L.append(f"- {i['text']}" + (f" `[{tags}]`" if tags else ""))
    L.append("")
    L += ["## Measurements", "", "| id | measurement | value | unit | reference | status | masks |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    masks = {s["id"]: (s.get("mask") or {}).get("id", "") for s in report["structures"]}
    for m in report["measurements"]:
        mk = ", ".join(masks.get(i, "") for i in m["structure_ids"])
        L.append(f"| {m['id']} | {m['label']} | {_value(m)} | {m['unit']} | {_ref(m)} | {m['status'] or ''} | {mk} |")
    L.append("")
    L += ["## Masks", "", "| id | structure | file | status |", "| --- | --- | --- | --- |"]
    for s in report["structures"]:
        mk = s.get("mask") or {}
        L.append(f"| {mk.get('id', '-')} | {s['name']} | {mk.get('file', '-')} | {s['status']} |")
    L.append("")
    ov = report["files"].get("overlays") or []
    if ov:
        L += ["## Pictures", ""]
        for o in ov:
            L.append(f"![{o}]({o})")
        L.append("")
    L += ["## Methods", ""]
    for name, method in dict.fromkeys((m["name"], m["method"]) for m in report["measurements"]):
        L.append(f"- **{name}**: {method}")
    sides = {s["side"]["method"] for s in report["structures"] if s.get("side")}
    for sm in sides:
        L.append(f"- **side**: {sm}")
    seg = report.get("segmentation", {})
    L.append(f"- **segmentation**: {seg.get('method')}" + (f" ({seg['grounding_model']})" if seg.get("grounding_model") else ""))
    L.append("")
    if report["references"]:
        L += ["## Reference ranges", ""]
        for r in report["references"]:
            L.append(f"- **{r['measure']}** ({r['population']}): {r['source']}")
        L.append("")
    for n in report["context"].get("panel_notes") or []:
        L.append(f"> {n}")
    sr = report.get("dicom_sr", {})
    L.append(f"DICOM SR: {sr.get('file') or 'not written - ' + str(sr.get('reason')).rstrip('.')}.")
    L += ["", f"_{report['disclaimer']}_", ""]
    path.write_text("\n".join(L), encoding="utf-8")
    return path


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
.tag{font-family:monospace;font-size:.8em;color:#555;background:#eee;border-radius:3px;padding:0 .3em}
.abn{color:#a00;font-weight:600}.na{color:#666;font-style:italic}.warn{color:#b60}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:440px;border:1px solid #999}
.ctx{color:#555;font-size:.9em}"""


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(report: dict[str, Any], folder: Path, path: Path) -> Path:
    e = html.escape
    H = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{e(_title(report))}</title>",
         f"<style>{_CSS}</style></head><body>", f"<h1>{e(_title(report))}</h1>",
         f"<p class='ctx'>{e(_context_line(report))}</p>", "<h2>Findings</h2>"]
    for sec, sents in _sections(report).items():
        H.append(f"<h3>{e(sec)}</h3><ul>")
        for s in sents:
            cls = "abn" if s["abnormal"] else "na" if s["kind"] == "not_assessed" else "warn" if s["kind"] == "warning" else ""
            tag = f" <span class='tag'>{_links(s)}</span>" if _tags(s) else ""
            H.append(f"<li id='{e(s['id'])}' class='{cls}'>{e(s['text'])}{tag}</li>")
        H.append("</ul>")
    H.append("<h2>Impression</h2><ol>")
    for i in report["impression"]:
        tags = ", ".join(dict.fromkeys(i["mask_ids"] + i["measurement_ids"]))
        H.append(f"<li>{e(i['text'])}" + (f" <span class='tag'>{e(tags)}</span>" if tags else "") + "</li>")
    H.append("</ol><h2>Measurements</h2><table><tr><th>id</th><th>measurement</th><th>value</th><th>unit</th>"
             "<th>reference</th><th>status</th><th>method</th></tr>")
    for m in report["measurements"]:
        cls = " class='abn'" if m["status"] in ("high", "low") else ""
        H.append(f"<tr id='{e(m['id'])}'{cls}><td>{e(m['id'])}</td><td>{e(m['label'])}</td><td>{e(_value(m))}</td><td>{e(m['unit'])}</td>"
                 f"<td>{e(_ref(m))}</td><td>{e(m['status'] or '')}</td><td>{e(m['method'][:200])}</td></tr>")
    H.append("</table>")
    ov = report["files"].get("overlays") or []
    if ov:
        H.append("<h2>Pictures</h2>")
        caps = {(s.get("mask") or {}).get("overlay"): f"{s['name']} ({s['mask']['id']})" for s in report["structures"]
                if s.get("mask")}
        for s in report["structures"]:
            for les in s.get("lesions", []):
                if les.get("overlay"):
                    caps[les["overlay"]] = (f"{s['name']} {les['component']}: RECIST long axis (red) "
                                            f"and short axis (cyan) ({', '.join(les['measurement_ids'])})")
        for m in report["measurements"]:
            if m.get("overlay"):
                caps[m["overlay"]] = (f"{m['label']} {m['value']:.2f}: cardiac width (cyan) / thoracic width "
                                      f"(white) ({m['id']})")
        for o in ov:
            uri = _data_uri(folder / o)
            if uri is None:
                continue
            cap = caps.get(o, "all structures")
            H.append(f"<figure><img alt='{e(cap)}' src='{uri}'><figcaption>{e(cap)}</figcaption></figure>")
    if report["references"]:
        H.append("<h2>Reference ranges</h2><ul>")
        for r in report["references"]:
            H.append(f"<li><b>{e(r['measure'])}</b> ({e(str(r['population']))}): {e(r['source'])}</li>")
        H.append("</ul>")
    for n in report["context"].get("panel_notes") or []:
        H.append(f"<p class='na'>{e(n)}</p>")
    sr = report.get("dicom_sr", {})
    H.append(f"<p class='ctx'>DICOM SR: {e(sr.get('file') or 'not written - ' + str(sr.get('reason')))}</p>")
    H.append(f"<p class='ctx'><i>{e(report['disclaimer'])}</i></p></body></html>")
    path.write_text("\n".join(H), encoding="utf-8")
    return path


def lesion_overlay(image, mask, long_vox, short_vox, path: Path, title: str) -> Path:
    """Overlay of one lesion on its RECIST slice with the long (red) and short (cyan) axes drawn."""
    from nibabel import orientations as no
    from PIL import Image, ImageDraw

    from medground.viz.overlay import render_overlay

    m = np.asarray(mask, dtype=bool)
    pts = [np.asarray(p, dtype=float) for p in (long_vox or []) + (short_vox or [])]
    pts = [np.concatenate([p, [0.0]]) if p.shape[0] == 2 else p for p in pts]
    shape = np.array(m.shape[:3], dtype=float)
    if image.has_geometry and image.ndim == 3:
        ornt = no.ornt_transform(no.io_orientation(image.affine), no.axcodes2ornt(("L", "P", "S")))
    else:
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)

    def to_display(p):
        d = np.zeros(3)
        for i in range(3):
            ax, flip = int(ornt[i, 0]), ornt[i, 1]
            d[ax] = p[i] if flip > 0 else shape[i] - 1 - p[i]
        return d

    disp = [to_display(p) for p in pts]
    z = int(round(disp[0][2])) if disp else None
    render_overlay(image, {title: m}, path, z=z, title=None)
    im = Image.open(path).convert("RGB")
    dshape = np.zeros(3)
    for i in range(3):
        dshape[int(ornt[i, 0])] = shape[i]
    scale = im.size[0] / dshape[0]  # the overlay is the display slice scaled by an integer factor
    draw = ImageDraw.Draw(im)
    for k, colour in ((0, (255, 40, 40)), (2, (40, 230, 255))):
        if len(disp) >= k + 2:
            a, b = disp[k], disp[k + 1]
            draw.line([((a[0] + 0.5) * scale, (a[1] + 0.5) * scale), ((b[0] + 0.5) * scale, (b[1] + 0.5) * scale)],
                      fill=colour, width=max(1, int(scale)))
    im.save(path)
    return Path(path)


def ctr_overlay(image, masks: dict[str, np.ndarray], m: dict[str, Any], path: Path) -> Path:
    """Chest radiograph with heart and lungs and the two widths of the cardiothoracic ratio drawn:
    the transverse cardiac diameter (cyan, between the heart's extreme columns) and the internal
    thoracic diameter (white, on its row)."""
    from PIL import Image, ImageDraw

    from medground.viz.overlay import render_overlay

    render_overlay(image, masks, path, title=f"cardiothoracic ratio {m['value']:.2f}")
    im = Image.open(path).convert("RGB")
    s = im.size[0] / image.shape[0]
    draw = ImageDraw.Draw(im)
    w = max(2, int(round(s * 2)))
    tx0, tx1 = m["thoracic_x"]
    ty = (m["thoracic_row"] + 0.5) * s
    draw.line([(tx0 * s, ty), ((tx1 + 1) * s, ty)], fill=(255, 255, 255), width=w)
    hx0, hx1 = m["heart_x"]
    rows = m.get("heart_rows") or [m["thoracic_row"]] * 2
    hy = (float(np.mean(rows)) + 0.5) * s
    draw.line([(hx0 * s, hy), ((hx1 + 1) * s, hy)], fill=(0, 230, 255), width=w)
    for x, r in ((hx0, rows[0]), (hx1 + 1, rows[-1])):  # ticks at the heart's extreme columns
        draw.line([(x * s, (r + 0.5) * s), (x * s, hy)], fill=(0, 230, 255), width=max(1, w // 2))
    im.save(path)
    return Path(path)
