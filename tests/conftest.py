"""Shared pytest fixtures.

``shared_data``: the real data folder ``../shared/data`` beside the repository (or
``$MEDGROUND_SHARED_DATA``); tests using it are skipped when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("MEDGROUND_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data, or skip the test when it is not there."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder not available ({path})")
    return path
