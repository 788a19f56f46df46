"""Ingest: whole images, per-region masked crops and reports into a vector store (incremental, idempotent).

Ids come from content: an image's id is the SHA-256 of its file bytes (of every file of a DICOM series
folder), a region's id ``<image id>:<term id>``, a report's ``<image id>:report:<hash of the text>``.
Re-running skips what is already there; asking for new regions on an indexed image adds only those.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from medground.io.image import MedGroundInputError, MedImage
from medground.retrieve.store import VectorStore, open_store

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".dcm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                  ".zip", ".mha", ".mhd")

# regions indexed by --regions auto, per modality (only terms the grounding head was trained on)
REGION_PRESETS: dict[str, list[str]] = {
    "XR": ["right lung", "left lung", "heart"],
    "CT": ["liver", "spleen", "right kidney", "left kidney", "aorta", "stomach", "pancreas"],
    "MR": ["liver", "spleen", "right kidney", "left kidney"],
}
UNKNOWN_MODALITY_REGIONS = ["right lung", "left lung", "heart", "liver", "spleen", "right kidney", "left kidney"]
CROP_MARGIN = 0.1  # fraction of the box size added on each side (at least 4 voxels in-plane)

Segmenter = Callable[[MedImage, list[str]], list[tuple[np.ndarray, float]]]


def default_segmenter(image: MedImage, prompts: list[str]) -> list[tuple[np.ndarray, float]]:
    """Text-prompted segmentation: one (mask in the input grid, confidence) per prompt (empty when absent)."""
    from medground.segment.text import segment_text

    results, _extra = segment_text(image, prompts, device="cpu", progress=False)
    return [(np.asarray(r.mask, bool), float(r.confidence)) for r in results]


# --------------------------------------------------------------------------- inputs
def _is_image(p: Path) -> bool:
    n = p.name.lower()
    return p.is_file() and n.endswith(IMAGE_SUFFIXES) and not n.startswith(".")


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Image files under the given files/folders (sorted). A folder holding only .dcm files (no
    sub-folders) is one DICOM series."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise MedGroundInputError(f"not found: {p}")
        if p.is_file():
            out.append(p)
            continue
        kids = list(p.iterdir())
        if kids and all(k.is_file() for k in kids) and all(k.name.lower().endswith(".dcm") for k in kids
                                                            if not k.name.startswith(".")) and len(kids) > 1:
            out.append(p)  # one series
            continue
        out += sorted(f for f in p.rglob("*") if _is_image(f))
    seen, uniq = set(), []
    for f in out:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(f)
    if not uniq:
        raise MedGroundInputError(f"no images found in {', '.join(map(str, paths))} "
                                  f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    return uniq


def content_id(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:24]


_IMAGE_COLS = ("image", "path", "file", "filename", "image_path", "image_name")
_REPORT_COLS = ("report", "text", "findings", "impression", "note", "notes", "clinical_notes")
_PATIENT_COLS = ("patient", "patient_id", "patientid", "subject")
_LABEL_COLS = ("label", "finding", "diagnosis")


def read_reports(csv_path: str | Path) -> dict[str, dict]:
    """reports CSV -> {image key: {"report", "patient", "label"}}; keys are the image column as written,
    its basename and its resolved path (relative to the CSV's folder)."""
    p = Path(csv_path)
    if not p.is_file():
        raise MedGroundInputError(f"reports file not found: {p}")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except UnicodeDecodeError:
        with open(p, newline="", encoding="latin-1") as fh:
            rows = list(csv.DictReader(fh))
    except csv.Error as exc:
        raise MedGroundInputError(f"{p.name}: not a readable CSV ({exc})") from exc
    if not rows:
        raise MedGroundInputError(f"{p.name}: no rows")
    cols = {c.strip().lower(): c for c in rows[0].keys() if c}
    ic = next((cols[c] for c in _IMAGE_COLS if c in cols), None)
    rc = next((cols[c] for c in _REPORT_COLS if c in cols), None)
    if ic is None or rc is None:
        raise MedGroundInputError(f"{p.name}: needs an image column ({'/'.join(_IMAGE_COLS)}) and a report column "
                                  f"({'/'.join(_REPORT_COLS)}); found: {', '.join(cols) or 'none'}")
    pc = next((cols[c] for c in _PATIENT_COLS if c in cols), None)
    lc = next((cols[c] for c in _LABEL_COLS if c in cols), None)
    out: dict[str, dict] = {}
    for r in rows:
        key = (r.get(ic) or "").strip()
        if not key:
            continue
        rec = {"report": (r.get(rc) or "").strip(), "patient": (r.get(pc) or "").strip() if pc else "",
               "label": (r.get(lc) or "").strip() if lc else ""}
        for k in (key, Path(key).name, str((p.parent / key).resolve())):
            out.setdefault(k, rec)
    return out


def _report_for(reports: dict[str, dict], path: Path, roots: list[Path]) -> dict | None:
    keys = [str(path.resolve()), str(path), path.name]
    for root in roots:
        try:
            keys.append(str(path.resolve().relative_to(root.resolve())))
        except ValueError:
            pass
    return next((reports[k] for k in keys if k in reports), None)


# --------------------------------------------------------------------------- regions
def parse_regions(regions: str | list[str] | None) -> list[str] | str:
    """'liver, lungs' -> ['liver', 'lungs'] (checked against the ontology); 'auto'/None -> 'auto'; 'none' -> []."""
    if regions is None:
        return "auto"
    if isinstance(regions, str):
        s = regions.strip()
        if s.lower() == "auto":
            return "auto"
        if s.lower() in ("", "none"):
            return []
        items = [x.strip() for x in s.split(",") if x.strip()]
    else:
        items = [str(x).strip() for x in regions if str(x).strip()]
    from medground.ontology import Ontology

    onto = Ontology.default()
    for it in items:
        onto.resolve(it)  # unknown -> MedGroundInputError with suggestions
    return items


def _modality(image: MedImage) -> str | None:
    from medground.ontology.terms import canonical_modality

    m = canonical_modality(image.modality or "")
    if m is None:
        try:  # the classifier, when it has landed
            from medground.classify import classify

            m = canonical_modality(str(classify(image).get("modality", "")))
        except Exception:  # noqa: BLE001 - optional helper
            m = None
    return m


def regions_for(image: MedImage, wanted: list[str] | str) -> list[str]:
    if wanted != "auto":
        return list(wanted)
    m = _modality(image)
    if m is None:
        return list(UNKNOWN_MODALITY_REGIONS) if image.ndim == 2 else []
    return list(REGION_PRESETS.get(m, []))


def masked_crop(image: MedImage, mask: np.ndarray, margin: float = CROP_MARGIN) -> MedImage:
    """The mask's bounding box plus a margin, voxels outside the mask set to the image minimum;
    the crop keeps its place in world space (affine shifted to the crop's origin)."""
    m = np.asarray(mask, bool)
    if m.ndim == 2:
        m = m[:, :, None]
    idx = np.nonzero(m)
    lo = np.array([int(i.min()) for i in idx])
    hi = np.array([int(i.max()) for i in idx]) + 1
    size = hi - lo
    pad = np.maximum(np.ceil(size * margin).astype(int), [4, 4, 0])
    if image.ndim == 3:
        pad[2] = max(pad[2], 1)
    shape = np.array(image.shape)
    lo, hi = np.maximum(lo - pad, 0), np.minimum(hi + pad, shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    data = np.array(image.data[sl], copy=True)
    keep = m[sl]
    fill = np.asarray(image.data).min()
    if data.ndim == 4:
        data[~keep] = fill
    else:
        data[~keep] = fill
    aff = image.affine.copy()
    aff[:3, 3] = image.affine[:3, :3] @ lo + image.affine[:3, 3]
    # no source_path: the crop is not the file (embedding caches keyed by path must not mix them up)
    return MedImage(data, aff, image.ndim, image.modality, image.has_geometry, image.photometric,
                    None, image.source_format, dict(image.meta))


# --------------------------------------------------------------------------- ingest
@dataclass
class IndexReport:
    db: str
    backend: str = ""
    embedder: str = ""
    images: int = 0
    images_added: int = 0
    images_skipped: int = 0
    images_updated: int = 0
    regions_added: int = 0
    regions_absent: int = 0
    reports_added: int = 0
    reports_unmatched: int = 0  # CSV rows whose image was not among the indexed files
    failed: list[dict] = field(default_factory=list)
    total_records: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_embedder(store: VectorStore, embedder) -> None:
    info = store.get_info()
    name = info.get("embedder")
    if name and name != embedder.name:
        raise MedGroundInputError(f"this database was indexed with embedder '{name}' but this run uses "
                                  f"'{embedder.name}'; use a new --db (or the same embedder)")
    if not name:
        store.set_info({**info, "embedder": embedder.name})


def index_paths(paths, db, reports=None, regions: str | list[str] | None = "auto", embedder=None,
                segmenter: Segmenter | None = None, progress: bool = True, batch_size: int = 8) -> dict:
    """Index images (files/folders) into ``db`` (a path, URI or open VectorStore); returns a summary dict."""
    import time

    from tqdm import tqdm

    from medground.io import load
    from medground.ontology import Ontology
    from medground.retrieve.embedder import default_embedder

    t0 = time.perf_counter()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    roots = [Path(p) for p in paths]
    files = discover(roots)
    rep = read_reports(reports) if reports else {}
    wanted = parse_regions(regions)
    embedder = embedder or default_embedder()
    segmenter = segmenter or default_segmenter
    onto = Ontology.default()
    own = not isinstance(db, VectorStore)
    store = open_store(db) if own else db
    summary = IndexReport(db=safe_uri(db) if own else getattr(db, "backend", "store"), backend=store.backend,
                          embedder=embedder.name, images=len(files))
    try:
        _check_embedder(store, embedder)
        seen: set[str] = set()  # content ids handled in this run (copies of a file are indexed once)
        matched: list[dict] = []  # report rows that found their image
        bar = tqdm(total=len(files), desc="indexing", unit="img", disable=not progress, file=sys.stderr)
        for i in range(0, len(files), batch_size):
            _index_chunk(files[i:i + batch_size], roots, rep, wanted, embedder, segmenter, onto, store, summary,
                         load, bar, seen, matched)
        bar.close()
        if rep:
            used = {id(v) for v in matched}
            summary.reports_unmatched = len({id(v) for v in rep.values()} - used)
        summary.total_records = store.count()
    finally:
        if own:
            store.close()
    summary.seconds = round(time.perf_counter() - t0, 2)
    return summary.to_dict()


def _index_chunk(files, roots, rep, wanted, embedder, segmenter, onto, store, summary, load, bar, seen,
                 matched) -> None:
    ids = {}
    for f in files:
        try:
            ids[f] = content_id(f)
        except OSError as exc:
            summary.failed.append({"path": str(f), "error": f"unreadable: {exc.strerror or exc}"})
    have = {r["id"]: r for r in store.get([ids[f] for f in ids])}
    img_recs, img_vecs_src, reg_recs, reg_imgs, rep_recs, rep_texts = [], [], [], [], [], []
    updated_meta = []  # (record, vector source) for images needing only new regions
    for f, iid in ids.items():
        bar.update(1)
        if iid in seen:
            summary.images_skipped += 1
            continue
        seen.add(iid)
        old = have.get(iid)
        info = _report_for(rep, f, roots) if rep else None
        if info is not None:
            matched.append(info)
        old_meta = json.loads(old["meta"]) if old and old.get("meta") else {}
        done = set(old_meta.get("regions_done", []))
        need_img = old is None
        image = None
        try:
            if need_img or (wanted == "auto" and not old_meta.get("regions_auto")) or \
                    (wanted != "auto" and any(_term_of(onto, r) not in done for r in wanted)):
                image = load(f)
        except MedGroundInputError as exc:
            summary.failed.append({"path": str(f), "error": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
            summary.failed.append({"path": str(f), "error": f"{type(exc).__name__}: {exc}"})
            continue
        todo: list[str] = []
        if image is not None:
            todo = [r for r in regions_for(image, wanted) if _term_of(onto, r) not in done]
        modality = (image.modality if image is not None else (old or {}).get("modality", "")) or ""
        base = {"image_id": iid, "path": str(f.resolve()), "modality": modality,
                "patient": (info or {}).get("patient", "") or (old or {}).get("patient", ""),
                "report": (info or {}).get("report", "") or (old or {}).get("report", "")}
        if not need_img and not todo and not (info and info.get("report")
                                             and not store.existing([_report_id(iid, info["report"])])):
            summary.images_skipped += 1
            continue
        if need_img:
            summary.images_added += 1
        else:
            summary.images_updated += 1
        for r, (mask, conf) in zip(todo, segmenter(image, todo) if todo else []):
            tid = _term_of(onto, r)
            done.add(tid)
            if mask is None or not np.asarray(mask).any():
                summary.regions_absent += 1
                continue
            crop = masked_crop(image, mask)
            m = np.asarray(mask, bool)
            reg_recs.append({**base, "id": f"{iid}:{tid}", "kind": "region", "region": onto.get(tid).name,
                             "term": tid, "report": "",
                             "meta": {"prompt": r, "confidence": round(float(conf), 4),
                                      "mask_fraction": round(float(m.mean()), 5),
                                      "crop_shape": list(crop.shape)}})
            reg_imgs.append(crop)
        if image is not None and wanted == "auto":
            old_meta["regions_auto"] = True
        meta = {**old_meta, "regions_done": sorted(done), "shape": list(image.shape) if image is not None
                else old_meta.get("shape"), "label": (info or {}).get("label", "") or old_meta.get("label", "")}
        rec = {**base, "id": iid, "kind": "image", "region": "", "term": "", "meta": meta}
        if need_img:
            img_recs.append(rec)
            img_vecs_src.append(image)
        else:
            updated_meta.append(rec)
        if info and info.get("report"):
            rid = _report_id(iid, info["report"])
            if not store.existing([rid]):
                rep_recs.append({**base, "id": rid, "kind": "report", "region": "", "term": "",
                                 "meta": {"label": info.get("label", "")}})
                rep_texts.append(info["report"])
    if img_recs:
        store.add(img_recs, embedder.embed_images(img_vecs_src))
    if reg_recs:
        store.upsert(reg_recs, embedder.embed_images(reg_imgs))
        summary.regions_added += len(reg_recs)
    if rep_recs:
        store.add(rep_recs, embedder.embed_texts(rep_texts))
        summary.reports_added += len(rep_recs)
    if updated_meta:  # keep the stored vector, update the metadata (regions done, report)
        old = {r["id"]: r["vector"] for r in store.get([r["id"] for r in updated_meta], vectors=True)}
        store.upsert(updated_meta, np.stack([old[r["id"]] for r in updated_meta]))


def safe_uri(db) -> str:
    """The database name without credentials (``postgresql://user:pw@host/db`` -> ``postgresql://host/db``)."""
    s = str(db)
    if "://" in s and "@" in s:
        scheme, rest = s.split("://", 1)
        return f"{scheme}://{rest.rsplit('@', 1)[1]}"
    return s


def _term_of(onto, region: str) -> str:
    return onto.resolve(region).term.id


def _report_id(iid: str, text: str) -> str:
    return f"{iid}:report:{hashlib.sha1(text.encode()).hexdigest()[:12]}"
