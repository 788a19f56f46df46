"""Image and text encoders in one shared space (384-d, L2-normalised).

* ``image_features(images) -> (N, 128)`` raw image features of the classifier network (a small CNN on
  64x64 colour thumbnails + colour/background/fan/histogram cues), averaged over a few slices for volumes.
* ``embed_images(images) -> (N, 384)``: those features (and the modality/region/view probabilities)
  projected into the text space; L2-normalised.
* ``embed_texts(texts) -> (N, 384)``: all-MiniLM-L6-v2 sentence vectors through the learned text projection;
  L2-normalised. Cosine similarity between the two is meaningful (trained contrastively on image-text
  pairs: modality/region/view descriptions, chest X-ray findings and notes, VQA-RAD statements, BUSI and PH2
  diagnoses).

Embeddings are cached in memory (text by string; images by source file, size and mtime).
``weights`` selects another classifier checkpoint (see :mod:`medground.classify.model`).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
import torch

from medground.io.image import MedGroundInputError, MedImage

__all__ = ["embed_images", "embed_texts", "image_features", "EMBED_DIM", "label_texts"]

EMBED_DIM = 384
_IMG_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_IMG_CACHE_MAX = 4096
_TXT_CACHE: dict[tuple, np.ndarray] = {}
_LOCK = threading.Lock()

# prompt templates for zero-shot labels (averaged). Measured on held-out BUSI / PH2 / covid-cxr labels, the bare
# label scored better than the CLIP-style sentence templates ("a medical image showing {}", ...), which the
# alignment never saw (benchmarks/results/classify.md).
TEMPLATES = ["{}"]


def _check_images(images) -> list[MedImage]:
    if isinstance(images, MedImage):
        images = [images]
    images = list(images)
    for im in images:
        if not isinstance(im, MedImage):
            raise MedGroundInputError(f"expected MedImage objects, got {type(im).__name__}.")
    return images


def _image_key(image: MedImage, source: str) -> tuple | None:
    p = image.source_path
    if not p:
        return None
    try:
        st = os.stat(p)
    except OSError:
        return None
    return (source, p, st.st_size, st.st_mtime_ns, image.shape)


def _image_outputs(images, weights=None) -> tuple[np.ndarray, np.ndarray]:
    from medground.classify.model import image_outputs, load_classifier

    images = _check_images(images)
    b = load_classifier(weights)
    feats, embs = [], []
    for im in images:
        key = _image_key(im, b.source)
        with _LOCK:
            hit = _IMG_CACHE.get(key) if key else None
            if hit is not None:
                _IMG_CACHE.move_to_end(key)
        if hit is None:
            o = image_outputs(b, im)
            hit = (o["features"].numpy().astype(np.float32), o["embedding"].numpy().astype(np.float32))
            if key:
                with _LOCK:
                    _IMG_CACHE[key] = hit
                    while len(_IMG_CACHE) > _IMG_CACHE_MAX:
                        _IMG_CACHE.popitem(last=False)
        feats.append(hit[0])
        embs.append(hit[1])
    dim_f = b.net.config["feat_dim"]
    if not images:
        return np.zeros((0, dim_f), np.float32), np.zeros((0, EMBED_DIM), np.float32)
    return np.stack(feats), np.stack(embs)


def image_features(images: list[MedImage], weights=None) -> np.ndarray:
    """Raw image features (N, 128), float32 (not normalised)."""
    return _image_outputs(images, weights)[0]


def embed_images(images: list[MedImage], weights=None) -> np.ndarray:
    """Images -> (N, 384) float32, L2-normalised, in the space shared with :func:`embed_texts`."""
    return _image_outputs(images, weights)[1]


def _text_vectors(texts: list[str], bundle) -> torch.Tensor:
    from medground.models.text import text_encoder

    todo = [t for t in dict.fromkeys(texts) if (bundle.source, t) not in _TXT_CACHE]
    if todo:
        raw = text_encoder().encode(todo)
        with torch.inference_mode():
            v = bundle.net.embed_text(raw.float()).numpy().astype(np.float32)
        with _LOCK:
            for t, row in zip(todo, v):
                _TXT_CACHE[(bundle.source, t)] = row
    return torch.from_numpy(np.stack([_TXT_CACHE[(bundle.source, t)] for t in texts]))


def embed_texts(texts: list[str], weights=None) -> np.ndarray:
    """Texts -> (N, 384) float32, L2-normalised, in the space shared with :func:`embed_images`."""
    from medground.classify.model import load_classifier

    if isinstance(texts, str):
        texts = [texts]
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    if any(not t.strip() for t in texts):
        raise MedGroundInputError("cannot embed an empty text.")
    return _text_vectors(texts, load_classifier(weights)).numpy()


def label_texts(label: str) -> list[str]:
    """The prompt-templated texts a zero-shot label is scored with."""
    return [t.format(label) for t in TEMPLATES]


def _label_matrix(labels: list[str], bundle) -> torch.Tensor:
    """(L, 384) unit vectors: the mean of each label's templated text embeddings."""
    rows = []
    for lab in labels:
        v = _text_vectors(label_texts(lab), bundle).mean(0)
        rows.append(v / v.norm().clamp(min=1e-9))
    return torch.stack(rows)
