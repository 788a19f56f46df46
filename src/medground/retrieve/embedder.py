"""Embedders for retrieval: the shared image-text space of ``medground.embed`` (default) or a
deterministic stand-in (``HashEmbedder``) for tests and for trying the store without the model.

An embedder has ``name`` (recorded in the database: a search must use the one the index was built
with), ``embed_images(list[MedImage]) -> (N, D)`` and ``embed_texts(list[str]) -> (N, D)``, both
L2-normalised float32.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from medground.io.image import MedImage


class EmbedUnavailable(RuntimeError):
    pass


class ModelEmbedder:
    """``medground.embed.embed_images`` / ``embed_texts`` (imported on first use)."""

    def __init__(self) -> None:
        try:
            import medground.embed as emb
        except ModuleNotFoundError as exc:
            if exc.name not in ("medground.embed",):
                raise
            raise EmbedUnavailable("the image-text embedder (medground.embed) is not available yet; "
                                   "set MEDGROUND_EMBEDDER=hash to use the deterministic stand-in") from exc
        self._m = emb
        self.name = "medground.embed:" + _weights_tag()

    def embed_images(self, images: list[MedImage]) -> np.ndarray:
        return np.asarray(self._m.embed_images(list(images)), dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._m.embed_texts(list(texts)), dtype=np.float32)


def _weights_tag() -> str:
    """Which weights medground.embed uses (file name + size), so that a database built with one model is
    never searched with vectors of another."""
    try:
        from medground.classify.model import load_classifier

        src = str(load_classifier().source)
        p = Path(src)
        return f"{p.name}:{p.stat().st_size}" if p.is_file() else src.split(" ")[0]
    except Exception:  # noqa: BLE001 - the tag is informative only
        return "default"


def _h(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


class HashEmbedder:
    """Deterministic stand-in: images -> a fixed random projection of a 16x16 thumbnail of the middle
    slice; texts -> signed feature hashing of words and word pairs. Similar pixels give similar vectors and
    shared words give similar vectors, but images and texts share no meaning (no cross-modal search)."""

    def __init__(self, dim: int = 64, seed: int = 0):
        self.dim = dim
        self.name = f"hash-{dim}"
        self._proj = np.random.default_rng(seed).standard_normal((256, dim)).astype(np.float32)

    @staticmethod
    def _norm(v: np.ndarray) -> np.ndarray:
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _thumb(self, img: MedImage) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from medground.io import to_unit_range

        g = np.asarray(to_unit_range(img), dtype=np.float32)
        if g.ndim == 4:
            g = g.mean(axis=-1)
        sl = g[:, :, g.shape[2] // 2]
        t = torch.from_numpy(np.ascontiguousarray(sl))[None, None]
        th = F.adaptive_avg_pool2d(t, 16)[0, 0].numpy().ravel()
        return th - th.mean()

    def embed_images(self, images: list[MedImage]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self._norm(np.stack([self._thumb(i) @ self._proj for i in images]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for n, t in enumerate(texts):
            toks = re.findall(r"[a-z0-9]+", str(t).lower())
            for f in toks + [a + "_" + b for a, b in zip(toks, toks[1:])]:
                h = _h(f)
                out[n, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        out[~out.any(axis=1), 0] = 1.0
        return self._norm(out)


def default_embedder():
    """``$MEDGROUND_EMBEDDER``: ``hash`` -> HashEmbedder, else (``model``/unset) medground.embed."""
    kind = os.environ.get("MEDGROUND_EMBEDDER", "model").strip().lower()
    if kind.startswith("hash"):
        return HashEmbedder()
    return ModelEmbedder()
