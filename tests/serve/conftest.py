"""Fixtures of the service tests (helpers in _servehelpers.py)."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _servehelpers import Server  # noqa: E402


@pytest.fixture
def server_factory(tmp_path):
    started: list[Server] = []

    def make(*args, data_dir: Path | None = None, **kw) -> Server:
        s = Server(data_dir or tmp_path / "data", *args, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL server (``pgserver`` wheel); the tests that need it skip without it."""
    pytest.importorskip("psycopg")
    pgserver = pytest.importorskip("pgserver")
    import shutil
    import tempfile

    # not under pytest's tmp dir: as root, pgserver runs postgres as another user, who must reach the folder
    d = tempfile.mkdtemp(prefix="medground-pg-")
    try:
        srv = pgserver.get_server(d, cleanup_mode="stop")
    except Exception as exc:  # no PostgreSQL server can be started here
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"cannot start a PostgreSQL server ({type(exc).__name__}: {exc})")
    yield srv
    srv.cleanup()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server) -> str:
    """A fresh, empty database on the test server: its postgresql:// URL."""
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri().replace("/postgres?", f"/{name}?", 1)
