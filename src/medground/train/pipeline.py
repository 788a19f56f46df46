"""`medground train`: from a YAML config to a shipped grounding checkpoint with its model card.

Steps: (1) canonical slices of every configured dataset (standard layout, see medground.data) are
encoded once by the frozen LiteMedSAM encoder into an embedding cache (with optional augmented
copies: field-of-view/scale and intensity changes); (2) the grounding head is trained on the cache;
(3) the orientation classifier is trained on the cache's thumbnails; (4) the checkpoint, the term
vectors and a model card (data, splits, scores) are written.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from medground.train.cache import EmbeddingCache, Sample, build_cache
from medground.train.grounding import HeadTrainConfig, train_head, train_orientation


def load_config(path: str | Path) -> dict[str, Any]:
    import yaml

    from medground.io.image import MedGroundInputError

    p = Path(path)
    if not p.exists():
        raise MedGroundInputError(f"config not found: {p}")
    cfg = yaml.safe_load(p.read_text()) or {}
    for key in ("data_root", "out"):
        if key not in cfg:
            raise MedGroundInputError(f"{p.name}: missing key '{key}'")
    if "datasets" not in cfg and "caches" not in cfg:
        raise MedGroundInputError(f"{p.name}: missing key 'datasets' (or 'caches')")
    for part in cfg.get("caches", []):
        if not isinstance(part, dict) or "cache_dir" not in part or "datasets" not in part:
            raise MedGroundInputError(f"{p.name}: each entry of 'caches' needs 'cache_dir' and 'datasets'")
    start = (cfg.get("train") or {}).get("init_from")
    if start and not Path(start).is_file():  # before hours of encoding, not after
        raise MedGroundInputError(f"{p.name}: train.init_from: no checkpoint at {start} (train the head it starts "
                                  "from first)")
    return cfg


def cache_parts(cfg: dict) -> list[dict]:
    """The embedding caches a config trains on: ``caches`` (a list of {cache_dir, datasets}) or the
    single ``cache_dir`` + ``datasets``. Each part is encoded once, separately, so that slices can be
    added to a training set without re-encoding what is already cached."""
    if cfg.get("caches"):
        return [dict(cfg, cache_dir=p["cache_dir"], datasets=p["datasets"]) for p in cfg["caches"]]
    return [dict(cfg, cache_dir=cfg.get("cache_dir", "cache/grounding"))]


def prepare_data(cfg: dict, log=print) -> None:
    """Convert the configured datasets from ``convert_from`` into ``data_root`` where missing."""
    src = cfg.get("convert_from")
    root = Path(cfg["data_root"])
    names = [d if isinstance(d, str) else d["name"] for part in cache_parts(cfg) for d in part["datasets"]]
    missing = [n for n in names if not (root / n / "dataset.json").exists()]
    if not missing or not src:
        return
    from medground.data.convert import convert

    log(f"converting {', '.join(missing)} from {src} into {root} ...")
    convert(src, root, datasets=sorted(set(missing)))


def _augment(pic: np.ndarray, masks: dict, rng: np.random.Generator):
    """Field-of-view / scale change (crop or pad around a random centre) and an intensity change.
    No mirroring: a mirrored image is different anatomy (left and right swap)."""
    h, w = pic.shape[:2]
    s = rng.uniform(0.7, 1.3)
    nh, nw = max(16, int(h / s)), max(16, int(w / s))
    out = np.zeros((nh, nw) + pic.shape[2:], pic.dtype)
    om = {k: np.zeros((nh, nw), bool) for k in masks}
    # random placement of the original within the new frame (crop when smaller)
    oy = int(rng.integers(min(0, nh - h), max(0, nh - h) + 1))
    ox = int(rng.integers(min(0, nw - w), max(0, nw - w) + 1))
    sy0, dy0 = max(0, -oy), max(0, oy)
    sx0, dx0 = max(0, -ox), max(0, ox)
    hh, ww = min(h - sy0, nh - dy0), min(w - sx0, nw - dx0)
    out[dy0:dy0 + hh, dx0:dx0 + ww] = pic[sy0:sy0 + hh, sx0:sx0 + ww]
    for k, m in masks.items():
        om[k][dy0:dy0 + hh, dx0:dx0 + ww] = m[sy0:sy0 + hh, sx0:sx0 + ww]
    gamma = rng.uniform(0.7, 1.4)
    contrast = rng.uniform(0.85, 1.15)
    out = np.clip((np.clip(out, 0, 1) ** gamma - 0.5) * contrast + 0.5, 0, 1).astype(np.float32)
    return out, {k: v for k, v in om.items() if v.any()}


def iter_samples(cfg: dict, progress_log=print) -> Iterator[Sample]:
    """Canonical training/validation slices of every configured dataset."""
    from medground.data import iter_slices, read_dataset

    root = Path(cfg["data_root"])
    rng = np.random.default_rng(cfg.get("seed", 0))
    for entry in cfg["datasets"]:
        if isinstance(entry, str):
            entry = {"name": entry}
        name = entry["name"]
        droot = root / name
        if not (droot / "dataset.json").exists():
            progress_log(f"skipping {name}: not converted under {root}")
            continue
        ds = read_dataset(droot)
        labelled = tuple(sorted({v for k, v in ds["labels"].items() if int(k) != 0} |
                                set(entry.get("extra_labelled", []))))
        if entry.get("terms"):
            labelled = tuple(t for t in labelled if t in entry["terms"])
        modality = (ds.get("modality") or ["OT"])[0]
        cap = entry.get("max_samples")  # per split, before augmentation (for smoke runs)
        for split in entry.get("splits", ["train", "val"]):
            n_split = 0
            every = int(entry.get("every", 1)) if split == "train" else int(entry.get("val_every", entry.get("every", 1)))
            start = int(entry.get("start", 0)) if split == "train" else 0
            n_aug = int(entry.get("augment", 0)) if split == "train" else 0
            empty_p = float(entry.get("empty_fraction", 0.15))
            try:
                it = iter_slices(droot, split, include_empty=True, every=every, with_meta=True,
                                 terms=entry.get("terms"), start=start, cases=entry.get("cases"))
                for pic, masks, meta in it:
                    if not masks and rng.random() > empty_p:
                        continue
                    if cap is not None and n_split >= int(cap):
                        break
                    n_split += 1
                    # as_split: file the slices under another split (e.g. negatives-only volumes kept in training)
                    sp = entry.get("as_split", split)
                    s = Sample(pic, masks, labelled, name, meta["case"], int(meta["slice"]), modality, sp)
                    yield s
                    for a in range(n_aug):
                        ap, am = _augment(pic, masks, rng)
                        yield Sample(ap, am, labelled, name, meta["case"], int(meta["slice"]), modality, sp, a + 1)
            except Exception as exc:  # a split may be empty for tiny datasets
                if "split" in str(exc) or isinstance(exc, KeyError):
                    continue
                raise


def encode_caches(cfg: dict, device: str = "cpu", log=print, rebuild_cache: bool = False) -> "EmbeddingCache":
    """Encode every missing cache part of ``cfg`` and return them as one cache."""
    model = None
    caches = []
    for part in cache_parts(cfg):
        cache_dir = Path(part["cache_dir"])
        if rebuild_cache or not (cache_dir / "meta.json").exists():
            if model is None:
                from medground.models import load_model

                model = load_model("litemedsam", device=device)
            log(f"encoding slices into {cache_dir} ...")
            build_cache(iter_samples(part, log), cache_dir, lambda x: model.encode(x.to(device)).cpu(),
                        grid=int(cfg.get("grid", 32)), batch=int(cfg.get("encode_batch", 8)))
        caches.append(EmbeddingCache(cache_dir))
    return EmbeddingCache.concat(caches)


def run_training(cfg: dict, device: str = "cpu", log=print, rebuild_cache: bool = False) -> Path:
    from medground.models.grounding import save_head
    from medground.models.text import text_encoder
    from medground.ontology import Ontology

    t0 = time.time()
    cache = encode_caches(cfg, device=device, log=log, rebuild_cache=rebuild_cache)
    log(f"cache: {len(cache)} slices, {len(cache.tindex)} structure masks, {len(cache.terms)} terms "
        f"[{time.time() - t0:.0f}s]")
    onto = Ontology.default()
    enc = text_encoder()
    term_emb = enc.encode([onto.describe(t) for t in cache.terms]).clone()
    hcfg = HeadTrainConfig(**cfg.get("train", {}))
    head, hist = train_head(cache, term_emb, hcfg, device=device, log=log)
    ocfg = dict(cfg.get("orientation", {}))
    if hcfg.init_from and ocfg.get("reuse", False):  # warm start: keep the starting checkpoint's classifier
        from medground.io.image import MedGroundInputError
        from medground.models.grounding import load_grounding

        start = load_grounding(hcfg.init_from)
        onet = start.orientation
        if onet is None:
            raise MedGroundInputError(f"train.init_from {hcfg.init_from} holds no orientation classifier to reuse "
                                      "(orientation.reuse)")
        ohist = {"history": [], "reused_from": str(hcfg.init_from),
                 "val_acc": start.card.get("orientation_val_accuracy")}
    else:
        ocfg.pop("reuse", None)
        onet, ohist = train_orientation(cache, **ocfg, device=device, log=log)
    counts: dict[str, dict[str, int]] = {}
    for r in cache.rows:
        if r["aug"] == 0:
            counts.setdefault(r["dataset"], {}).setdefault(r["split"], 0)
            counts[r["dataset"]][r["split"]] += 1
    card = {
        "name": cfg.get("name", "grounding"),
        "created": time.strftime("%Y-%m-%d"),
        "architecture": "GroundingHead on frozen LiteMedSAM image embeddings; text: all-MiniLM-L6-v2 "
                        "of the ontology description of each term",
        "head_config": head.config,
        "train_config": asdict(hcfg),
        "datasets": counts,
        "splits": "by patient (splits.json of each converted dataset, seed 0); val rows never trained on",
        "terms": cache.terms,
        "val_scores_grid_level": hist["final_val"],
        "orientation_val_accuracy": ohist["history"][-1]["val_acc"] if ohist["history"] else ohist.get("val_acc"),
        "licences": cfg.get("licences", {}),
        "training_seconds": round(time.time() - t0),
        "device": str(device),
    }
    out = Path(cfg["out"])
    save_head(head, out, cache.terms, term_emb, card,
              extra={"orientation_state": {k: v.half() if v.is_floating_point() else v
                                           for k, v in onet.state_dict().items()},
                     "orientation_config": {}})
    (out.with_suffix(".history.json")).write_text(json.dumps({"head": hist, "orientation": ohist}, indent=1))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) [{time.time() - t0:.0f}s]")
    return out
