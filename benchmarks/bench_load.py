"""Load test of `medground serve` on loopback (not a CI test).

Starts a real server process (temporary data dir, SQLite), uploads a few small 2D pictures, then runs N
concurrent clients for D seconds: each submits a box-prompt segment job with its own params (a real job,
not an idempotent hit), polls it to completion, and repeats; a share of submissions is sent twice to check
idempotency. Reports requests/s, job throughput, p50/p95 latency of submit and of end to end, and checks
from the database that no job was lost or duplicated. Writes a markdown table (default
benchmarks/results/load.md).

    python benchmarks/bench_load.py --clients 50 --duration 60 --workers 2
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "serve"))
from _servehelpers import Server, disk_png  # noqa: E402


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v), q)) if v else float("nan")


async def run_clients(url: str, studies: list[str], n_clients: int, duration: float, poll_s: float,
                      dup_every: int) -> dict:
    stats = {"requests": 0, "submit_ms": [], "e2e_ms": [], "jobs": {}, "dup_ok": 0, "dup_bad": 0, "errors": [],
             "failed": 0}
    counter = iter(range(10 ** 9))
    limits = httpx.Limits(max_connections=n_clients + 10, max_keepalive_connections=n_clients + 10)
    t_end = time.perf_counter() + duration

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        async def req(method: str, path: str, **kw):
            stats["requests"] += 1
            return await c.request(method, path, **kw)

        async def client(k: int):
            while time.perf_counter() < t_end:
                n = next(counter)
                sid = studies[n % len(studies)]
                d = n % 7  # distinct boxes around the disk, and a distinct label: every request is a new job
                body = {"study_id": sid, "task": "segment",
                        "params": {"boxes": [[12 + d % 3, 16 + d % 4, 46 - d % 2, 50 - d % 3]],
                                   "labels": [f"c{k}-{n}"], "overlay": False}}
                t0 = time.perf_counter()
                try:
                    r = await req("POST", "/api/jobs", json=body)
                except httpx.HTTPError as exc:
                    stats["errors"].append(f"submit: {type(exc).__name__}")
                    continue
                stats["submit_ms"].append((time.perf_counter() - t0) * 1e3)
                if r.status_code != 202:
                    stats["errors"].append(f"submit {r.status_code}: {r.text[:80]}")
                    continue
                jid = r.json()["job_id"]
                if jid in stats["jobs"]:
                    stats["errors"].append("a new request got an existing job id")
                stats["jobs"][jid] = body
                if dup_every and n % dup_every == 0:  # the same request again: same job, 200
                    r2 = await req("POST", "/api/jobs", json=body)
                    if r2.status_code == 200 and r2.json()["job_id"] == jid:
                        stats["dup_ok"] += 1
                    else:
                        stats["dup_bad"] += 1
                while True:
                    await asyncio.sleep(poll_s)
                    try:
                        j = (await req("GET", f"/api/jobs/{jid}")).json()
                    except httpx.HTTPError as exc:
                        stats["errors"].append(f"poll: {type(exc).__name__}")
                        continue
                    if j["status"] in ("done", "failed"):
                        break
                if j["status"] == "failed":
                    stats["failed"] += 1
                    stats["errors"].append(f"job failed: {j['error'][:80]}")
                stats["e2e_ms"].append((time.perf_counter() - t0) * 1e3)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(n_clients)))
        stats["wall_s"] = time.perf_counter() - t0
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds during which clients submit")
    ap.add_argument("--workers", type=int, default=2, help="server job workers")
    ap.add_argument("--worker-mode", default="process", choices=["process", "thread"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--studies", type=int, default=4, help="distinct 64x64 pictures the jobs use")
    ap.add_argument("--poll", type=float, default=0.25, help="client polling interval (s)")
    ap.add_argument("--dup-every", type=int, default=10, help="send every n-th request twice (0: never)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "load.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="medground-load-"))
    srv = Server(tmp / "data", "--workers", str(a.workers), "--worker-mode", a.worker_mode, "--threads", str(a.threads), "--log-level", "warning")
    srv.start()
    try:
        with srv.client() as c:
            studies = []
            for i in range(a.studies):
                png = disk_png(tmp / f"s{i}.png", cx=28 + i, cy=32 + i, seed=i)
                studies.append(c.post("/api/studies", files=[("files", (png.name, png.read_bytes()))]).json()["study_id"])
            t0 = time.perf_counter()  # warm-up: model load and each picture's embedding (not measured)
            warm = [c.post("/api/jobs", json={"study_id": s, "task": "segment",
                                              "params": {"boxes": [[14, 18, 46, 50]], "overlay": False}}).json()["job_id"]
                    for s in studies]
            for j in warm:
                while c.get(f"/api/jobs/{j}").json()["status"] not in ("done", "failed"):
                    time.sleep(0.2)
            warm_s = time.perf_counter() - t0
        print(f"warm-up {warm_s:.1f} s; {a.clients} clients for {a.duration:.0f} s ...", file=sys.stderr)
        load0 = os.getloadavg()[0]
        st = asyncio.run(run_clients(srv.url, studies, a.clients, a.duration, a.poll, a.dup_every))
        load1 = os.getloadavg()[0]
    finally:
        srv.stop()
    con = sqlite3.connect(tmp / "data" / "medground.db")
    db_jobs = dict(con.execute("SELECT job_id, status FROM jobs").fetchall())
    dup_keys = con.execute("SELECT COUNT(*) FROM (SELECT req_key FROM jobs GROUP BY req_key HAVING COUNT(*) > 1)"
                           ).fetchone()[0]
    con.close()
    submitted = set(st["jobs"])
    lost = [j for j in submitted if db_jobs.get(j) != "done"]
    extra = set(db_jobs) - submitted - set(warm)
    n_jobs = len(st["e2e_ms"])
    rows = [
        ("clients / duration", f"{a.clients} concurrent / {a.duration:.0f} s of submitting "
                               f"(+ {st['wall_s'] - a.duration:.1f} s to finish the last jobs)"),
        ("server", f"1 API process, {a.workers} worker {a.worker_mode}{'es' if a.worker_mode == 'process' else 's'}, "
                   f"torch threads {a.threads}, SQLite"),
        ("HTTP requests (submit + poll + re-submit)", f"{st['requests']} = **{st['requests'] / st['wall_s']:.1f} req/s**"),
        ("jobs completed", f"{n_jobs} = **{n_jobs / st['wall_s']:.2f} jobs/s** ({st['failed']} failed)"),
        ("submit latency p50 / p95", f"{pct(st['submit_ms'], 50):.0f} / {pct(st['submit_ms'], 95):.0f} ms"),
        ("end-to-end latency p50 / p95 (submit -> done seen)",
         f"{pct(st['e2e_ms'], 50):.0f} / {pct(st['e2e_ms'], 95):.0f} ms"),
        ("idempotent re-submits", f"{st['dup_ok']} returned the same job, {st['dup_bad']} did not"),
        ("lost jobs (submitted, not done in the DB)", f"**{len(lost)}**"),
        ("duplicated jobs (request keys stored twice / unknown rows)", f"**{dup_keys}** / **{len(extra)}**"),
        ("client errors", f"{len(st['errors'])}" + (f" (e.g. {st['errors'][0]})" if st["errors"] else "")),
        ("warm-up (model load + 1 embedding per picture, not counted)", f"{warm_s:.1f} s"),
    ]
    cmd = "python benchmarks/bench_load.py " + " ".join(sys.argv[1:])
    md = ["# Load test of `medground serve` (loopback)", "",
          f"`{cmd.strip()}` on {platform.machine()} with {os.cpu_count()} CPU cores (shared with the load "
          f"generator itself and with other work: load average {load0:.1f} before, {load1:.1f} after), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
          f"Each job: box-prompt segmentation of a 64x64 PNG (one of {a.studies} uploaded pictures), a distinct "
          "box and label per request, no overlays; clients poll every "
          f"{a.poll:g} s. Every {a.dup_every}th request is sent twice (must return the same job). "
          "Lost/duplicated jobs are checked in the SQLite database after the run.", "",
          "| what | result |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    md += ["", "The image embedding of a 2D study is computed once (by the first job on it) and kept in the "
           "study folder and in each worker's memory, so these jobs run the prompt encoder and mask decoder and "
           "write the mask, findings.json and the label maps; the first job on a new picture also runs the image "
           "encoder (about 2 s on this CPU). Throughput is bound by the mask decoder on 2 shared cores; "
           "end-to-end latency is mostly queueing (50 clients each keep one job in flight)."]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = not lost and not dup_keys and not extra and not st["dup_bad"] and st["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
