"""Security against real server processes: the API token, and no public bind without one."""
from __future__ import annotations

import subprocess
import sys


def test_token_required_and_cors(server_factory, tmp_path):
    import httpx

    from _servehelpers import disk_png

    s = server_factory("--workers", "0", "--cors-origin", "http://viewer.example", token="s3cret")

    assert httpx.get(s.url + "/api/health").status_code == 401
    assert httpx.get(s.url + "/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.get(s.url + "/api/jobs", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json() == []
    assert httpx.post(s.url + "/api/studies", files=[("files", ("a.png", b"x"))]).status_code == 401
    png = disk_png(tmp_path / "a.png").read_bytes()
    r = httpx.post(s.url + "/api/studies", files=[("files", ("a.png", png))], headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 201
    # CORS: only the allowed origin, and a preflight needs no token
    pre = httpx.options(s.url + "/api/jobs", headers={"Origin": "http://viewer.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://viewer.example"
    other = httpx.get(s.url + "/api/jobs", headers={"Origin": "http://evil.example", "Authorization": "Bearer s3cret"})
    assert "access-control-allow-origin" not in other.headers


def test_refuses_public_bind_without_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "medground", "serve", "--host", "0.0.0.0", "--port", "1",
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "without an API token" in r.stderr and r.stderr.count("\n") == 1

