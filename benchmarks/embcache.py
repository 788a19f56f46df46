"""LiteMedSAM with its encoder results memoised on disk, keyed by the input slice's content
(:func:`medground.train.findings.embedding_key`; one ``<key>.pt`` half-precision tensor per slice, the
format the findings head's training writes for its validation slices). Shared by the benchmark scripts."""
from __future__ import annotations

from pathlib import Path

import torch


class CachedEncoder:
    """``encode`` reuses stored embeddings of identical inputs; misses are encoded in one batch and, with
    ``write=True``, stored (atomically: a concurrent reader never sees half a file)."""

    def __init__(self, model, cache_dir: str | Path, write: bool = True):
        self.model, self.dir, self.write = model, Path(cache_dir), write
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        from medground.train.findings import embedding_key

        keys = [embedding_key(xi[None]) for xi in x.cpu()]
        out: list = [None] * len(keys)
        todo = []
        for i, k in enumerate(keys):
            f = self.dir / f"{k}.pt"
            if f.exists():
                out[i] = torch.load(f).float()
            else:
                todo.append(i)
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            e = self.model.encode(x[todo]).cpu()
            for i, ei in zip(todo, e):
                out[i] = ei.float()
                if self.write:
                    tmp = self.dir / f"{keys[i]}.tmp.pt"
                    torch.save(ei.half().clone(), tmp)
                    tmp.replace(self.dir / f"{keys[i]}.pt")
        return torch.stack(out).to(x.device)

    def __getattr__(self, name):
        return getattr(self.model, name)


def models_for(emb_cache: str | None, weights: str | None):
    """(LiteMedSAM, organ head) for a benchmark's ``--emb-cache`` / ``--weights``; None = the packaged default."""
    model = grounding = None
    if emb_cache:
        from medground.models import load_model

        model = CachedEncoder(load_model("litemedsam"), emb_cache)
    if weights:
        from medground.models.grounding import load_grounding

        grounding = load_grounding(weights)
    return model, grounding
