"""The cases of a converted 3D dataset as the text path sees them: canonical orientation, LiteMedSAM's slice
predictor, and the reference label map of every ``every``-th slice in the network's 256 x 256 frame. Shared by the
builders of the decoder (:mod:`medground.train.decoder`) and refinement (:mod:`medground.train.refine`) caches."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def slice_model(emb_cache: str | None = None):
    """The packaged LiteMedSAM, its embeddings kept on disk in ``emb_cache`` when given (benchmarks/embcache.py)."""
    from medground.models import load_model

    model = load_model("litemedsam")
    if emb_cache:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
        from embcache import CachedEncoder

        model = CachedEncoder(model, emb_cache)
    return model


def canonical_cases(dataset: Path, split: str, every: int, model, grounding, terms: list[str],
                    done=lambda case_id: False) -> Iterator[tuple[str, object, list[int], np.ndarray]]:
    """Per case of ``split`` (those ``done`` says are not yet cached): its id, a SlicePredictor on the canonical image,
    the slices kept (every ``every``-th) and their label maps (slices, 256, 256; 0 = background, i = ``terms[i-1]``).
    A case whose header the anatomy check overrules is skipped (said on stdout)."""
    from medground.data import list_cases, load_case, read_dataset
    from medground.evaluate.runner import _ref_masks
    from medground.io import load
    from medground.segment.predictor import MODEL_SIZE, SlicePredictor
    from medground.segment.text import TextConfig, canonicalize

    labels = {int(k): v for k, v in read_dataset(dataset)["labels"].items() if int(k)}
    for c in list_cases(dataset, split):
        if done(c["id"]):
            continue
        image = load(dataset / c["image"])
        _, label, masks = load_case(dataset, c)
        refs = _ref_masks(c, label, masks, labels, terms)
        lab = np.zeros(image.shape, np.uint8)
        for i, t in enumerate(terms, 1):
            lab[np.transpose(refs[t], (2, 1, 0)) & (lab == 0)] = i
        canon = canonicalize(image, grounding.orientation, TextConfig())
        if canon.info.get("transform_after_header"):
            print(f"{c['id']}: skipped (the anatomy check overruled its header)", flush=True)
            continue
        lcanon = canon.forward(lab)  # the labels turn exactly as the image did
        pred = SlicePredictor(canon.image, model=model)
        h, w = pred.new_hw
        zs = list(range(0, canon.image.shape[2], every))
        frames = np.zeros((len(zs), MODEL_SIZE, MODEL_SIZE), np.uint8)
        for k, z in enumerate(zs):
            ls = torch.from_numpy(np.ascontiguousarray(lcanon[:, :, z].T))[None, None].float()
            frames[k, :h, :w] = F.interpolate(ls, size=(h, w), mode="nearest")[0, 0].numpy().astype(np.uint8)
        yield c["id"], pred, zs, frames
