"""Fixtures for the retrieval tests: stores of every back end, small synthetic images, a stub segmenter."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/retrieve/_retrieve_helpers.py

from _retrieve_helpers import make_pictures  # noqa: E402


def _stub_segmenter(image, prompts):
    """'right lung' = the image's left half, 'left lung' = its right half (radiological view), 'heart' =
    a centre box; anything else absent. Masks in the input grid (X, Y, Z)."""
    X, Y, Z = image.shape
    out = []
    for p in prompts:
        m = np.zeros((X, Y, Z), bool)
        name = p.lower()
        if name == "right lung":
            m[: X // 2 - 2, 4: Y - 4] = True
        elif name == "left lung":
            m[X // 2 + 2:, 4: Y - 4] = True
        elif name == "heart":
            m[X // 3: 2 * X // 3, Y // 3: 2 * Y // 3] = True
        out.append((m, 0.9 if m.any() else 0.8))
    return out


@pytest.fixture
def stub_segmenter():
    return _stub_segmenter


@pytest.fixture
def hash_embedder():
    from medground.retrieve.embedder import HashEmbedder

    return HashEmbedder(dim=32)


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    return make_pictures(tmp_path / "scans")


@pytest.fixture(scope="session")
def pg_uri():
    """A throwaway PostgreSQL + pgvector server for the session (skips when it cannot start)."""
    pytest.importorskip("psycopg")
    pytest.importorskip("pgvector")
    from medground.retrieve.pg import local_server

    try:
        cm = local_server()
        uri = cm.__enter__()
    except Exception as exc:  # noqa: BLE001 - no binaries, no permissions, ...
        pytest.skip(f"no PostgreSQL + pgvector server available: {exc}")
    yield uri
    cm.__exit__(None, None, None)
