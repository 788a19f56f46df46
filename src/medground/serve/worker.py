"""Job workers: they claim queued jobs from the store (the database is the queue) and run them.

Two modes (``medground serve --worker-mode``):

* ``process`` (default): N worker processes beside the API process. Each loads the models once and keeps
  the image embeddings of recent 2D studies (``tasks.PredictorCache``), so further box or point prompts on
  the same picture only run the mask decoder. The API process stays responsive (no model work under its
  GIL), and a job that kills its process (segfault, out of memory) is marked failed ("worker process died
  ... while running this job") while a new worker process takes over.
* ``thread``: N threads in the API process (lighter: no second copy of the models).

A job that raises is marked failed with a one-line reason. A job still "running" when the whole server
died is marked failed at the next start ("interrupted by server restart", see ``JobStore.recover``);
on a clean shutdown the jobs being run are queued again. Re-submitting a failed request queues it again.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from medground.io.image import MedGroundInputError
from medground.serve import tasks
from medground.serve.store import JobStore
from medground.serve.studies import ImageCache

log = logging.getLogger("medground.serve")


def one_line(exc: BaseException) -> str:
    if isinstance(exc, (MedGroundInputError, tasks.CapabilityUnavailable)):
        msg = str(exc)
    else:
        msg = f"{type(exc).__name__}: {exc}"
    msg = " ".join(msg.split())
    return msg[:500] or type(exc).__name__


class Runner:
    """Runs claimed jobs: loads the study (a few kept loaded), calls the task, stores result or error."""

    def __init__(self, store: JobStore, data_dir: Path, device: str = "cpu", images: ImageCache | None = None,
                 search_db: str | None = None):
        self.store = store
        self.data_dir = Path(data_dir)
        self.device = device
        self.images = images or ImageCache()
        self.search_db = search_db
        self.test_sleep = float(os.environ.get("MEDGROUND_SERVE_TEST_SLEEP", "0") or 0)

    def run(self, job: dict) -> None:
        jid, t0 = job["job_id"], time.perf_counter()
        log.info("job %s (%s) on study %s: running", jid, job["task"], job["study_id"])
        try:
            if self.test_sleep:  # tests: a job that is still running when the server is killed
                time.sleep(self.test_sleep)
            info = self.store.get_study(job["study_id"])
            if info is None:
                raise MedGroundInputError(f"study {job['study_id']} no longer exists")
            image, path = self.images.load(self.data_dir, info)
            out = self.data_dir / "jobs" / jid
            if out.exists():  # files of an earlier failed attempt
                shutil.rmtree(out, ignore_errors=True)
            emb = self.data_dir / "studies" / job["study_id"] / f"embedding-litemedsam-{self.device}.pt"
            result = tasks.run_task(job["task"], image, job["params"], out, input_path=str(path),
                                    device=self.device, cache_key=job["study_id"], default_db=self.search_db,
                                    embed_cache=emb)
        except Exception as exc:
            err = one_line(exc)
            log.info("job %s failed after %.2f s: %s", jid, time.perf_counter() - t0,
                     "bad input or params" if isinstance(exc, MedGroundInputError) else err)
            self.store.finish(jid, error=err)
            return
        self.store.finish(jid, result=result)
        log.info("job %s done in %.2f s", jid, time.perf_counter() - t0)

    def loop(self, worker: str, wake, stop, poll_s: float = 1.0, on_busy=None, orphaned=None) -> None:
        while not stop.is_set() and not (orphaned and orphaned()):
            try:
                job = self.store.claim(worker)
            except Exception as exc:  # the database is briefly unavailable: wait and retry
                log.warning("worker: cannot claim a job (%s)", one_line(exc))
                job = None
            if job is None:
                wake.wait(poll_s)
                wake.clear()
                continue
            if on_busy:
                on_busy(1)
            try:
                self.run(job)
            finally:
                if on_busy:
                    on_busy(-1)


def worker_name(kind: str, i: int, pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}:{kind}{i}"


class Workers:
    """Worker threads in the server process."""

    mode = "thread"

    def __init__(self, store: JobStore, data_dir: Path, n: int = 1, device: str = "cpu",
                 images: ImageCache | None = None, search_db: str | None = None, poll_s: float = 1.0, **_):
        self.store = store
        self.n = max(0, int(n))
        self.runner = Runner(store, data_dir, device, images, search_db)
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        self._busy_lock = threading.Lock()

    def _on_busy(self, d: int) -> None:
        with self._busy_lock:
            self.busy += d

    def start(self) -> None:
        for i in range(self.n):
            t = threading.Thread(target=self.runner.loop, name=f"medground-worker-{i}", daemon=True,
                                 args=(worker_name("thread", i), self._wake, self._stop, self.poll_s, self._on_busy))
            t.start()
            self._threads.append(t)

    def notify(self) -> None:
        self._wake.set()

    def pids(self) -> list[int]:
        return [os.getpid()] if self.n else []

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        for i, t in enumerate(self._threads):
            if t.is_alive():  # still busy: its job goes back to the queue
                self.store.requeue_running(worker_name("thread", i))


def _process_main(db_url: str, data_dir: str, device: str, search_db: str | None, threads: int | None, index: int,
                  wake, stop, log_level: int, parent: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    try:  # Linux: die with the API process, even when it is killed (SIGKILL gives it no time to stop us)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:  # the API process died while this one was starting
        return
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)
    store = JobStore(db_url)
    runner = Runner(store, Path(data_dir), device, search_db=search_db)
    runner.loop(worker_name("proc", index), wake, stop, poll_s=0.5, orphaned=lambda: os.getppid() != parent)
    store.close()


class WorkerProcesses:
    """Worker processes (spawned) beside the API process; a dead one fails its job and is replaced."""

    mode = "process"

    def __init__(self, store: JobStore, data_dir: Path, n: int = 1, device: str = "cpu", search_db: str | None = None,
                 threads: int | None = None, **_):
        self.store = store
        self.data_dir = Path(data_dir)
        self.n = max(0, int(n))
        self.device = device
        self.search_db = search_db
        self.threads = threads
        self._ctx = mp.get_context("spawn")
        self._wake = self._ctx.Event()
        self._stop = self._ctx.Event()
        self._procs: list = [None] * self.n
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def busy(self) -> int:
        return self.store.counts().get("running", 0)

    def _spawn(self, i: int) -> None:
        p = self._ctx.Process(target=_process_main, name=f"medground-worker-{i}", daemon=True,
                              args=(self.store.url, str(self.data_dir), self.device, self.search_db, self.threads, i,
                                    self._wake, self._stop, logging.getLogger().getEffectiveLevel(), os.getpid()))
        p.start()
        self._procs[i] = p

    def start(self) -> None:
        for i in range(self.n):
            self._spawn(i)
        if self.n:
            self._watcher = threading.Thread(target=self._watch, name="medground-worker-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._watch_stop.wait(0.5):
            for i, p in enumerate(self._procs):
                if p is None or p.is_alive() or self._stop.is_set():
                    continue
                code = p.exitcode
                n = self.store.fail_running(worker_name("proc", i, p.pid),
                                            f"worker process died (exit code {code}) while running this job")
                log.error("worker process %d died (exit code %s; %d job(s) marked failed); starting a new one",
                          i, code, n)
                self.restarts += 1
                self._spawn(i)

    def notify(self) -> None:
        self._wake.set()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.is_alive()]

    def stop(self, timeout: float = 5.0) -> None:
        self._watch_stop.set()
        self._stop.set()
        self._wake.set()
        t_end = time.time() + timeout
        for i, p in enumerate(self._procs):
            if p is None:
                continue
            p.join(max(0.1, t_end - time.time()))
            if p.is_alive():  # busy with a job: stop it, and queue its job again
                p.terminate()
                p.join(2)
                self.store.requeue_running(worker_name("proc", i, p.pid))
