"""The work behind a job (and behind the MCP tools): segment, report, ask, classify, search, measure.

Every task takes a loaded :class:`~medground.io.image.MedImage`, its params and an output folder, writes
its files there and returns a JSON-able result. Capabilities written by other modules (report, VQA,
classification, retrieval) are imported lazily: when one is missing the task fails with
"capability not available: ...". Params are checked by :func:`check_params` before a job is queued.
"""
from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

TASKS = ("segment", "report", "ask", "classify", "search")


class CapabilityUnavailable(RuntimeError):
    pass


def _capability(module: str, func: str, what: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise CapabilityUnavailable(f"capability not available: {what} ({module} is not installed yet)") \
                from None
        raise
    fn = getattr(mod, func, None)
    if fn is None:
        raise CapabilityUnavailable(f"capability not available: {what} ({module}.{func} does not exist yet)")
    return fn


# --------------------------------------------------------------------------- params
def _num_list(v, n_ok: tuple[int, ...], what: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) not in n_ok or \
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise MedGroundInputError(f"{what} must be a list of {' or '.join(map(str, n_ok))} numbers, got {v!r}"[:200])
    return [float(x) for x in v]


def check_params(task: str, params: Any) -> dict:
    """Validate a job's params (types and required fields); returns them normalised. Raises
    MedGroundInputError with one line on bad params."""
    if task not in TASKS:
        raise MedGroundInputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise MedGroundInputError("params must be a JSON object")
    p = dict(params)
    if task == "segment":
        prompts = p.get("prompts") or []
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(s, str) and s.strip() for s in prompts):
            raise MedGroundInputError("segment: 'prompts' must be a list of non-empty strings")
        boxes = p.get("boxes") or []
        points = p.get("points") or []
        if not isinstance(boxes, list) or not isinstance(points, list):
            raise MedGroundInputError("segment: 'boxes' and 'points' must be lists")
        for b in boxes:
            _num_list(b, (4, 5, 6), "segment: each box")
        for q in points:
            _num_list(q, (2, 3), "segment: each point")
        if not (prompts or boxes or points):
            raise MedGroundInputError("segment: give 'prompts', 'boxes' or 'points'")
        labels = p.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(s, str) for s in labels)):
            raise MedGroundInputError("segment: 'labels' must be a list of strings (one per box/point)")
        if p.get("slice") is not None and not isinstance(p.get("slice"), int):
            raise MedGroundInputError("segment: 'slice' must be an integer")
        if prompts:
            p["prompts"] = prompts
    elif task == "ask":
        q = p.get("question")
        if not isinstance(q, str) or not q.strip():
            raise MedGroundInputError("ask: 'question' must be a non-empty string")
    elif task == "classify":
        labels = p.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(s, str) for s in labels)):
            raise MedGroundInputError("classify: 'labels' must be a list of strings")
    elif task == "report":
        panel = p.get("panel")
        if panel is not None and (not isinstance(panel, list) or not all(isinstance(s, str) for s in panel)):
            raise MedGroundInputError("report: 'panel' must be a list of strings")
    elif task == "search":
        for k in ("db", "text", "region"):
            if p.get(k) is not None and not isinstance(p[k], str):
                raise MedGroundInputError(f"search: '{k}' must be a string")
        k = p.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
            raise MedGroundInputError("search: 'k' must be an integer from 1 to 1000")
    return p


# --------------------------------------------------------------------------- JSON helpers
def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 4096 else f"<array {obj.shape}>"
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and hasattr(obj, "shape"):  # torch tensors
        return jsonable(np.asarray(obj.detach().cpu() if hasattr(obj, "detach") else obj))
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def list_files(out: Path) -> list[str]:
    return sorted(p.name for p in Path(out).iterdir() if p.is_file()) if Path(out).is_dir() else []


def write_label_nifti(image: MedImage, masks: list[np.ndarray], out: Path, name: str = "labels.nii.gz") -> str:
    """All masks as one label map (value = 1-based index, first wins) in the image's own geometry, as
    NIfTI also for 2D images: it lines up with the study's volume.nii.gz."""
    from medground.io import save_nifti

    lm = np.zeros(image.shape, dtype=np.uint8 if len(masks) < 255 else np.uint16)
    for i, m in enumerate(masks, 1):
        m = np.asarray(m, dtype=bool).reshape(image.shape)
        lm[m & (lm == 0)] = i
    save_nifti(lm, image.affine, Path(out) / name)
    return name


def _png_labels_to_nifti(image: MedImage, out: Path) -> None:
    """2D outputs carry their label map as labels.png: add labels.nii.gz (same values) for the viewer."""
    if image.ndim != 2 or (out / "labels.nii.gz").exists() or not (out / "labels.png").exists():
        return
    from PIL import Image

    from medground.io import save_nifti

    pic = np.asarray(Image.open(out / "labels.png"))
    if set(np.unique(pic).tolist()) <= {0, 255}:  # one label is written as 0/255
        pic = (pic > 0).astype(np.uint8)
    if pic.ndim == 2 and pic.shape == (image.shape[1], image.shape[0]):
        save_nifti(np.ascontiguousarray(pic.T[:, :, None]), image.affine, out / "labels.nii.gz")


# --------------------------------------------------------------------------- segment
class PredictorCache:
    """Image embeddings of recent 2D studies, so further prompts on the same picture only run the decoder."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None, image: MedImage, device: str, disk: Path | None = None):
        """The predictor of ``image``; for 2D images kept in memory under ``key`` and, with ``disk``, its
        embedding read from / written to that file so that other worker processes and restarts reuse it."""
        from medground.segment.predictor import SlicePredictor

        if key is None or image.ndim != 2:
            return SlicePredictor(image, device=device)
        with self._lock:
            pred = self._items.get(key)
            if pred is not None:
                self._items.move_to_end(key)
                return pred
        pred = SlicePredictor(image, device=device)
        if disk is not None:
            _load_embedding(pred, disk)
        with self._lock:
            pred = self._items.setdefault(key, pred)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return pred


_PREDICTORS = PredictorCache()


def _load_embedding(pred, path: Path) -> None:
    import torch

    emb = getattr(pred, "_emb", None)
    if emb is None or 0 in emb or not Path(path).is_file():
        return
    try:
        emb[0] = torch.load(path, map_location=pred.device, weights_only=True)
    except Exception:  # a damaged cache file is recomputed
        Path(path).unlink(missing_ok=True)


def _save_embedding(pred, path: Path) -> None:
    import secrets as _secrets

    import torch

    emb = getattr(pred, "_emb", None)
    if emb is None or 0 not in emb or Path(path).exists():
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.{_secrets.token_hex(4)}")
    torch.save(emb[0].detach().cpu(), tmp)
    tmp.replace(path)


def run_segment(image: MedImage, params: dict, out: Path, input_path: str | None = None, device: str = "cpu",
                cache_key: str | None = None, embed_cache: Path | None = None) -> dict:
    from medground.segment.engine import segment_prompt
    from medground.segment.outputs import write_results
    from medground.segment.prompts import Prompt, validate_prompt

    texts = list(params.get("prompts") or [])
    labels = list(params.get("labels") or [])
    z = params.get("slice")
    prompts: list[Prompt] = []
    for b in params.get("boxes") or []:
        b = [float(v) for v in b]
        if len(b) == 4:
            prompts.append(Prompt("box", tuple(b), z=z if image.ndim == 3 else None))
        elif len(b) == 5:
            prompts.append(Prompt("box", tuple(b[:4]), z=int(b[4])))
        else:
            prompts.append(Prompt("box3d", tuple(b)))
    for q in params.get("points") or []:
        q = [float(v) for v in q]
        zz = int(round(q[2])) if len(q) == 3 else (z if image.ndim == 3 else None)
        prompts.append(Prompt("point", tuple(q), z=zz))
    for i, p in enumerate(prompts):
        if i < len(labels) and labels[i]:
            p.label = labels[i]
        validate_prompt(p, image)  # every prompt is checked before any compute
    text_results, extra = [], {}
    if texts:
        from medground.segment.text import segment_text

        text_results, extra = segment_text(image, texts, device=device, progress=False)
    results = []
    if prompts:
        propagate = bool(params.get("propagate", True))
        pred = _PREDICTORS.get(cache_key, image, device, disk=embed_cache)
        for i, p in enumerate(prompts, 1):
            r = segment_prompt(pred, p, propagate_3d=propagate)
            r.name = p.label or f"{p.kind.replace('3d', '')}-{i}"
            results.append(r)
        if embed_cache is not None and image.ndim == 2:
            _save_embedding(pred, embed_cache)
    allr = text_results + results
    doc = write_results(image, allr, out, input_path=input_path, overlay=bool(params.get("overlay", True)),
                        extra=extra)
    if allr:
        write_label_nifti(image, [r.mask for r in allr], out)
    doc = jsonable(doc)
    doc["files"] = list_files(out)
    return doc


# --------------------------------------------------------------------------- other capabilities
def run_classify(image: MedImage, params: dict, out: Path, **_) -> dict:
    classify = _capability("medground.classify", "classify", "classify")
    res = jsonable(classify(image, labels=params.get("labels") or None))
    return res


def run_ask(image: MedImage, params: dict, out: Path, input_path: str | None = None, device: str = "cpu",
            **_) -> dict:
    ask = _capability("medground.vqa", "ask", "ask")
    res = dict(ask(image, params["question"], device=device, image_path=input_path))
    mask = res.pop("mask", None)
    for key in ("image", "image_path", "input"):  # the server's own file paths stay on the server
        res.pop(key, None)
    if mask is not None:
        from medground.io import save_mask

        m = np.asarray(mask, dtype=bool).reshape(image.shape)
        name = "mask.png" if image.ndim == 2 else "mask.nii.gz"
        save_mask(m.astype(np.uint8), image, Path(out) / name)
        write_label_nifti(image, [m], out)
        res["mask_file"] = name
    res = jsonable(res)
    res["files"] = list_files(out)
    return res


def run_report(image: MedImage, params: dict, out: Path, input_path: str | None = None, device: str = "cpu",
               **_) -> dict:
    build_report = _capability("medground.report", "build_report", "report")
    res = jsonable(build_report(image, out, input_path=input_path, panel=params.get("panel") or None, device=device))
    if not isinstance(res, dict):
        res = {"report": res}
    _png_labels_to_nifti(image, Path(out))
    if "files" in res and not isinstance(res["files"], list):
        res["report_files"] = res.pop("files")  # the report's own map of its files (roles -> names)
    res["files"] = list_files(out)
    return res


def run_search(image: MedImage | None, params: dict, out: Path, default_db: str | None = None, **_) -> dict:
    search = _capability("medground.retrieve", "search", "search")
    db = params.get("db") or default_db
    if not db:
        raise MedGroundInputError("search: no index database: pass params.db or start the server with --search-db")
    if "://" not in str(db) and not Path(db).exists():
        raise MedGroundInputError(f"search: index database {Path(db).name} does not exist")
    use_image = params.get("use_image", True) and image is not None
    hits = search(db, image=image if use_image else None, text=params.get("text"), region=params.get("region"),
                  k=int(params.get("k", 10)))
    return {"results": jsonable(list(hits)), "k": int(params.get("k", 10))}


RUNNERS = {"segment": run_segment, "classify": run_classify, "ask": run_ask, "report": run_report,
           "search": run_search}


def run_task(task: str, image: MedImage, params: dict, out: Path, input_path: str | None = None,
             device: str = "cpu", cache_key: str | None = None, default_db: str | None = None,
             embed_cache: Path | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fn = RUNNERS[task]
    kw: dict[str, Any] = {"input_path": input_path, "device": device}
    if task == "segment":
        kw["cache_key"] = cache_key
        kw["embed_cache"] = embed_cache
    if task == "search":
        kw = {"default_db": default_db}
    return fn(image, params, out, **kw)


# --------------------------------------------------------------------------- measure (MCP)
def measure_mask(image: MedImage, mask: np.ndarray, name: str | None = None) -> dict:
    """Size, position, intensity and diameters of one mask in the image's geometry, with reference flags."""
    from medground import measure

    m = np.asarray(mask).reshape(image.shape) > 0
    out: dict[str, Any] = {"voxels": int(m.sum()), "present": bool(m.any())}
    if not m.any():
        return out

    def _try(key, fn):
        try:
            out[key] = jsonable(fn())
        except Exception as exc:  # one measurement failing must not hide the others
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:200]}

    if image.ndim == 2:
        _try("area_mm2", lambda: round(measure.area_mm2(m, image), 3))
    else:
        _try("volume_ml", lambda: round(measure.volume_ml(m, image), 4))
        _try("max_3d_diameter", lambda: measure.max_3d_diameter(m, image))
    _try("centroid", lambda: measure.centroid(m, image))
    _try("bbox", lambda: measure.bbox(m, image))
    _try("recist", lambda: measure.recist_diameters(m, image))
    _try("intensity", lambda: measure.intensity_stats(m, image))
    _try("components", lambda: measure.components(m, image))
    if name:
        key = "volume_ml" if image.ndim == 3 else "area_mm2"
        val = out.get(key)
        if isinstance(val, (int, float)):
            try:
                out["reference"] = jsonable(measure.flag(f"{name} {key}", val))
            except Exception:
                pass
    return out
