"""Training of the second grounding head: findings (lesions, tumours, polyps, skin lesions).

Same architecture and training code as the organ head (:func:`medground.train.cache.build_cache`,
:func:`medground.train.grounding.train_head`, :func:`medground.models.grounding.save_head`); what differs
is the data and how it is labelled:

* slices are produced exactly as :class:`medground.segment.predictor.SlicePredictor` sees them at run
  time (``medground.load`` of the converted, canonical case + ``to_unit_range``), every slice of a
  volume, with and without the lesion (slices without it teach presence to say "absent");
* each mask is a positive for its ontology term and for the term's finding ancestors up to (not
  including) ``finding`` (a colorectal polyp is also a "polyp" and a "lesion"; a brain tumour also a
  "tumor" and a "lesion");
* every dataset lists the specific finding terms of the *other* datasets as labelled-and-absent (a
  CT lesion slice shows no skin lesion or colonoscopy polyp), so a "polyp" prompt learns to be absent
  on a CT;
* pictures without an anatomical frame (endoscopy, dermoscopy) get a random rotation/flip, since
  at run time the orientation classifier of the organ head may turn them.

Run: ``python -m medground.train.findings --config configs/textseg_findings.yaml``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from medground.segment.predictor import picture_tensor
from medground.train.cache import EmbeddingCache, Sample, build_cache
from medground.train.grounding import HeadTrainConfig, train_head


def embedding_key(x: torch.Tensor) -> str:
    """Content hash of a (1, 3, 256, 256) network input (to reuse a stored embedding of the same slice)."""
    import hashlib

    return hashlib.sha1(x.detach().float().contiguous().numpy().tobytes()).hexdigest()


def finding_ancestors(term: str, onto=None) -> list[str]:
    """``term`` and its ancestors below the root ``finding`` (e.g. colorectal_polyp, polyp, lesion)."""
    from medground.ontology import Ontology

    onto = onto or Ontology.default()
    out = [term]
    seen = {term}
    cur = onto.get(term) if hasattr(onto, "get") else None
    while cur is not None:
        parent = getattr(cur, "parent", None)
        if not parent or parent == "finding" or parent in seen:
            break
        out.append(parent)
        seen.add(parent)
        cur = onto.get(parent)
    return out


def _case_slices(root: Path, case: dict) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(z, picture rows x cols in [0,1], label rows x cols) exactly as the predictor sees the slice."""
    from medground.io import load, to_unit_range

    img = load(str(root / case["image"]))
    lab = load(str(root / case["label"]), check=False)
    unit = to_unit_range(img)  # (X, Y, Z) grey in [0, 1]
    ld = lab.data if lab.data.ndim == 3 else lab.data[..., 0]
    if ld.shape[:3] != unit.shape[:3]:
        raise ValueError(f"{case['id']}: label grid {ld.shape} differs from the image {unit.shape}")
    for z in range(unit.shape[2]):
        yield z, np.ascontiguousarray(unit[:, :, z].T, dtype=np.float32), np.ascontiguousarray(ld[:, :, z].T)


def iter_findings_samples(cfg: dict, log=print) -> Iterator[Sample]:
    from medground.data import read_dataset
    from medground.data.layout import read_splits
    from medground.models.orientation import dihedral
    from medground.ontology import Ontology
    from medground.train.pipeline import _augment

    onto = Ontology.default()
    root = Path(cfg["data_root"])
    rng = np.random.default_rng(cfg.get("seed", 0))
    entries = cfg["datasets"]
    # every specific finding term labelled somewhere (for cross-dataset negatives)
    specific: dict[str, set[str]] = {}
    for e in entries:
        ds = read_dataset(root / e["name"])
        specific[e["name"]] = {v for k, v in ds["labels"].items() if int(k) != 0}
    for e in entries:
        name = e["name"]
        droot = root / name
        ds = read_dataset(droot)
        splits = read_splits(droot)
        values = {int(k): v for k, v in ds["labels"].items() if int(k) != 0}
        every_specific = set().union(*specific.values())
        modality = (ds.get("modality") or ["OT"])[0]
        picture = int(ds.get("dims", 3)) == 2
        by_id = {c["id"]: c for c in ds["cases"]}
        for split in ("train", "val"):
            ids: list[str] = []
            for s in e.get(split, []):
                ids += list(splits[s]) if s in ("train", "val", "test") else [s]
            if e.get(f"max_{split}") is not None:
                ids = ids[: int(e[f"max_{split}"])]
            ids = ids[int(e.get(f"skip_{split}", 0)):]
            n_aug = int(e.get("augment", 0)) if split == "train" else 0
            for cid in ids:
                case = by_id[cid]
                # labelled = this case's terms with their ancestors (positive where drawn, else absent)
                # + every dataset's specific finding terms + configured negatives (absent here)
                own = set()
                for v in case.get("labels_present") or values:
                    if int(v) in values:
                        own |= set(finding_ancestors(values[int(v)], onto))
                labelled = tuple(sorted(own | every_specific | set(e.get("extra_negatives", []))))
                for z, pic, lab in _case_slices(droot, case):
                    masks: dict[str, np.ndarray] = {}
                    for v, t in values.items():
                        m = lab == v
                        if m.any():
                            for a in finding_ancestors(t, onto):
                                masks[a] = masks[a] | m if a in masks else m
                    if picture and split == "train" and e.get("dihedral", True):
                        k = int(rng.integers(0, 8))
                        pic = np.ascontiguousarray(dihedral(pic, k))
                        masks = {t: np.ascontiguousarray(dihedral(m, k)) for t, m in masks.items()}
                    yield Sample(pic, masks, labelled, name, cid, z, modality, split)
                    for a in range(n_aug):
                        ap, am = _augment(pic, masks, rng)
                        yield Sample(ap, am, labelled, name, cid, z, modality, split, a + 1)


def run(cfg: dict, device: str = "cpu", log=print, rebuild_cache: bool = False) -> Path:
    from medground.models import load_model
    from medground.models.grounding import save_head
    from medground.models.text import text_encoder
    from medground.ontology import Ontology

    t0 = time.time()
    cache_dir = Path(cfg.get("cache_dir", "cache/grounding_findings"))
    grid = int(cfg.get("grid", 32))
    if rebuild_cache or not (cache_dir / "meta.json").exists():
        model = load_model("litemedsam", device=device)
        log(f"encoding slices into {cache_dir} ...")
        full_dir = cache_dir / "full"  # full embeddings of validation slices, reused by the benchmark
        full_dir.mkdir(parents=True, exist_ok=True)
        val_keys: set[str] = set()

        def samples():
            for s in iter_findings_samples(cfg, log):
                if s.split == "val" and s.aug == 0:
                    val_keys.add(embedding_key(picture_tensor(s.picture)))
                yield s

        def encoder(x):
            e = model.encode(x.to(device)).cpu()
            for xi, ei in zip(x, e):
                k = embedding_key(xi[None])
                if k in val_keys:
                    torch.save(ei.half().clone(), full_dir / f"{k}.pt")
            return e

        build_cache(samples(), cache_dir, encoder,
                    grid=grid, batch=int(cfg.get("encode_batch", 4)), capacity=int(cfg.get("capacity", 2000)))
    cache = EmbeddingCache(cache_dir)
    log(f"cache: {len(cache)} slices, {len(cache.tindex)} structure masks, terms {cache.terms} "
        f"[{time.time() - t0:.0f}s]")
    onto = Ontology.default()
    term_emb = text_encoder().encode([onto.describe(t) for t in cache.terms]).clone()
    hcfg = HeadTrainConfig(**cfg.get("train", {}))
    head, hist = train_head(cache, term_emb, hcfg, device=device, log=log)
    counts: dict[str, dict[str, int]] = {}
    pos: dict[str, dict[str, int]] = {}
    cases: dict[str, dict[str, list[str]]] = {}
    for i, r in enumerate(cache.rows):
        if r["aug"] == 0:
            counts.setdefault(r["dataset"], {}).setdefault(r["split"], 0)
            counts[r["dataset"]][r["split"]] += 1
            cs = cases.setdefault(r["dataset"], {}).setdefault(r["split"], [])
            if r["case"] not in cs:
                cs.append(r["case"])
            has = any(cache.terms[t] in ("lesion",) for t, _ in cache.by_row.get(i, []))
            key = "with_lesion" if has else "without_lesion"
            pos.setdefault(r["dataset"], {}).setdefault(f"{r['split']}_{key}", 0)
            pos[r["dataset"]][f"{r['split']}_{key}"] += 1
    n_aug = sum(1 for r in cache.rows if r["aug"] > 0)
    card = {
        "name": cfg.get("name", "medground-grounding-findings-v1"),
        "created": time.strftime("%Y-%m-%d"),
        "architecture": "GroundingHead on frozen LiteMedSAM image embeddings (same as the organ head "
                        "grounding.pt); text: all-MiniLM-L6-v2 of the ontology description of each term",
        "purpose": "second grounding head for findings; medground.segment.text routes a term here when the "
                   "organ head was not trained on it and this head was",
        "head_config": head.config,
        "train_config": asdict(hcfg),
        "datasets": counts,
        "slices_by_lesion_presence": pos,
        "augmented_copies": n_aug,
        "cases": cases,
        "splits": "by patient; ct-lesions: train = patients 000001, 000002, 000009, held out = 000015 (two "
                  "sub-volumes) and 000010; mr-tumour: train = brain1 + breast1, held out = brain2; "
                  "kvasir/PH2: first cases of each dataset's own train/val split (no patient ids published)",
        "labelling": "a mask is positive for its term and the term's finding ancestors (colorectal_polyp -> "
                     "polyp -> lesion; brain_tumor -> tumor -> lesion); the other datasets' specific finding "
                     "terms are labelled absent; slices without the lesion are kept as negatives",
        "terms": cache.terms,
        "val_scores_grid_level": hist["final_val"],
        "licences": cfg.get("licences", {}),
        "training_seconds": round(time.time() - t0),
        "device": str(device),
        "limitations": "small data ({} training slices from 3 CT lesion patients, {} from 2 MR cases, {} polyp "
                       "and {} dermoscopy pictures): see benchmarks/results/textseg_findings.md for held-out "
                       "scores".format(*(counts.get(d, {}).get("train", 0) for d in
                                         ("ct-lesions", "mr-tumour", "endoscopy-kvasir", "dermoscopy-ph2"))),
    }
    out = Path(cfg["out"])
    save_head(head, out, cache.terms, term_emb, card)
    (out.with_suffix(".history.json")).write_text(json.dumps({"head": hist}, indent=1))
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) [{time.time() - t0:.0f}s]")
    return out


def main(argv=None) -> None:
    import yaml

    ap = argparse.ArgumentParser(description="Train the findings grounding head.")
    ap.add_argument("--config", default="configs/textseg_findings.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rebuild-cache", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(Path(a.config).read_text())
    run(cfg, device=a.device, rebuild_cache=a.rebuild_cache)


if __name__ == "__main__":
    main()


def merge_caches(dirs: list[str | Path], out: str | Path) -> Path:
    """Concatenate embedding caches built with the same grid into ``out`` (vocabularies are merged)."""
    caches = [EmbeddingCache(d) for d in dirs]
    if any(c.grid != caches[0].grid for c in caches):
        raise ValueError("caches differ in grid")
    terms = sorted(set().union(*(c.terms for c in caches)))
    for c in caches:  # term indices into the merged vocabulary
        remap = np.array([terms.index(t) for t in c.terms], dtype=np.int64)
        if len(c.tindex):
            c.tindex = np.stack([c.tindex[:, 0], remap[c.tindex[:, 1]]], 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    offs = np.cumsum([0] + [len(c) for c in caches])
    emb = np.concatenate([c.emb for c in caches])
    thumbs = np.concatenate([c.thumbs for c in caches])
    tmasks = np.concatenate([c.tmasks for c in caches])
    tindex = np.concatenate([c.tindex + np.array([o, 0]) for c, o in zip(caches, offs)])
    rows = [r for c in caches for r in c.rows]
    del caches
    np.save(out / "emb.npy", emb)
    np.save(out / "thumbs.npy", thumbs)
    np.save(out / "tmasks.npy", tmasks)
    np.save(out / "tindex.npy", tindex.astype(np.int64))
    (out / "meta.json").write_text(json.dumps({"grid": int(emb.shape[-1]), "terms": terms, "rows": rows}))
    return out


def heldout_cases(cfg: dict, split: str = "val") -> list[tuple[str, Path, dict]]:
    """(dataset name, dataset root, case record) of every validation (held-out) case of the config.

    ``split="test"``: a dataset validated on its own ``val`` split gives its whole ``test`` split instead (cases
    never used to train or to choose anything); the others (validated on named cases or on val + test) keep their
    validation cases."""
    from medground.data import read_dataset
    from medground.data.layout import read_splits

    root = Path(cfg["data_root"])
    out = []
    for e in cfg["datasets"]:
        droot = root / e["name"]
        ds = read_dataset(droot)
        splits = read_splits(droot)
        by_id = {c["id"]: c for c in ds["cases"]}
        ids: list[str] = []
        names = list(e.get("val", []))
        test = split == "test" and names == ["val"] and "test" in splits
        for s in ["test"] if test else names:
            ids += list(splits[s]) if s in ("train", "val", "test") else [s]
        if e.get("max_val") is not None and not test:
            ids = ids[: int(e["max_val"])]
        out += [(e["name"], droot, by_id[c]) for c in ids]
    return out
