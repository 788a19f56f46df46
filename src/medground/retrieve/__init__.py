"""Anatomy-conditioned image/report retrieval (issue 4, part 4).

``index_paths(paths, db, reports=None)`` embeds whole images, per-region masked crops from the
text-prompted segmenter and report texts into a vector store; ``search(db, image=..., text=...,
region=..., k=10)`` returns the closest indexed images. Stores: :func:`open_store` (LanceDB by default,
SQLite + numpy fallback, PostgreSQL + pgvector for a server).
"""
from medground.retrieve.index import index_paths
from medground.retrieve.search import search
from medground.retrieve.store import VectorStore, open_store

__all__ = ["index_paths", "search", "open_store", "VectorStore"]
