"""Helpers for the service tests: a real ``python -m medground serve`` process on a free loopback port with a
temporary data dir, a small test picture, upload and job polling."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, token: str | None = None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env or {}))
        self.env.pop("MEDGROUND_TOKEN", None)
        self.token = token
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "medground", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--threads", "1", *self.args]
        if self.token:
            cmd += ["--token", self.token]
        self._fh = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                r = httpx.get(self.url + "/api/health", headers=self.headers(), timeout=2)
                if r.status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout} s: {self.log.read_text()[-2000:]}")

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> "httpx.Client":
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=60)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up (as in a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "_fh", None):
            self._fh.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_fh", None):
            self._fh.close()


def disk_png(path: Path, cx: int = 30, cy: int = 34, r: int = 14, size: int = 64, seed: int = 0) -> Path:
    """A small grey picture with one bright disk (centre x=cx column, y=cy row)."""
    from PIL import Image

    y, x = np.mgrid[:size, :size]
    a = 20 + 200 * (((x - cx) ** 2 + (y - cy) ** 2) < r * r)
    a = a + np.random.default_rng(seed).integers(0, 10, a.shape)
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


def upload(c, path: Path, name: str | None = None):
    with open(path, "rb") as fh:
        return c.post("/api/studies", files=[("files", (name or path.name, fh.read()))])


def wait_job(c, job_id: str, timeout: float = 120.0, until=("done", "failed")) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["status"] in until:
            return j
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {j['status']} after {timeout} s")
