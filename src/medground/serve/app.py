"""The REST API (FastAPI): studies, jobs and their files; the browser viewer mounted at ``/``.

Every error is JSON ``{"detail": "one line"}``. With a token configured every ``/api`` call needs
``Authorization: Bearer <token>``. Logs name study and job ids only, never file names or DICOM fields.
"""
from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medground.io.image import MedGroundInputError
from medground.serve import tasks
from medground.serve.store import JobStore
from medground.serve.studies import (ImageCache, UnsupportedType, check_type, finalize_upload, new_id,
                                     public_info, study_dir, volume_nifti)
from medground.serve.worker import WorkerProcesses, Workers, one_line

log = logging.getLogger("medground.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
JOB_RE = re.compile(r"^[0-9a-f]{16}$")
API_VERSION = "1"
JSON_LIMIT = 1 << 20  # bytes of a JSON request body


@dataclass
class Settings:
    data_dir: Path
    db: str | None = None  # default sqlite:///<data_dir>/medground.db
    token: str | None = None
    workers: int = 1
    worker_mode: str = "process"  # "process" (worker processes) or "thread" (threads in the API process)
    threads: int | None = None  # torch threads per worker process
    max_upload_mb: float = 512.0
    cors_origins: list[str] = field(default_factory=list)
    device: str = "cpu"
    search_db: str | None = None
    static_dir: Path | None = None

    def db_url(self) -> str:
        return self.db or f"sqlite:///{Path(self.data_dir).resolve() / 'medground.db'}"


class UploadLimit:
    """ASGI middleware: refuse request bodies above the limit (413): ``--max-upload-mb`` on POST /api/studies,
    1 MB elsewhere; from the Content-Length header before anything is read, or while a body streams in."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        if scope["path"].startswith("/api/studies"):
            limit = self.max_bytes
            msg = f"upload too large: the limit is {limit / 2 ** 20:g} MB (server option --max-upload-mb)"
        else:  # job requests and anything else: small JSON bodies
            limit = JSON_LIMIT
            msg = f"request body too large: the limit is {limit // 1024} kB"
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                return await _send_json(send, 413, msg)
        seen = 0

        async def recv():
            nonlocal seen
            m = await receive()
            if m["type"] == "http.request":
                seen += len(m.get("body", b""))
                if seen > limit:  # an HTTPException passes through FastAPI's body parsing as it is
                    raise StarletteHTTPException(413, msg)
            return m

        await self.app(scope, recv, send)


async def _send_json(send, status: int, detail: str):
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CatchAll:
    """ASGI middleware: an unexpected exception becomes 500 {"detail": "internal error: ..."} (one log line,
    no traceback unless MEDGROUND_DEBUG is set)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def snd(m):
            nonlocal started
            if m["type"] == "http.response.start":
                started = True
            await send(m)

        try:
            await self.app(scope, receive, snd)
        except Exception as exc:
            if os.environ.get("MEDGROUND_DEBUG"):
                log.exception("internal error on %s %s", scope["method"], scope["path"])
            else:
                log.error("internal error on %s %s: %s", scope["method"], scope["path"], one_line(exc))
            if not started:
                await _send_json(send, 500, f"internal error: {one_line(exc)}")


def create_app(settings: Settings):
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tmp").mkdir(exist_ok=True)
    store = JobStore(settings.db_url())
    n_failed = store.recover()
    if n_failed:
        log.warning("%d job(s) left running by a previous server marked failed (interrupted by server restart)",
                    n_failed)
    images = ImageCache()
    if settings.worker_mode not in ("process", "thread"):
        raise ValueError(f"unknown worker mode {settings.worker_mode!r}: use process or thread")
    workers = (WorkerProcesses if settings.worker_mode == "process" else Workers)(
        store, data_dir, n=settings.workers, device=settings.device, images=images, search_db=settings.search_db,
        threads=settings.threads)
    t_start = time.time()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        workers.start()
        yield
        workers.stop()
        store.close()

    # No Swagger/ReDoc pages: they load their scripts from a CDN, and nothing is fetched at run time here.
    # The spec itself is served at /openapi.json.
    app = FastAPI(title="medground", version=API_VERSION, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Read medical images in words: upload a study, submit segment / report / ask / "
                              "classify / search jobs, fetch their results (masks, findings, reports).")
    app.state.store, app.state.workers, app.state.settings = store, workers, settings

    # ------------------------------------------------------------------ errors: {"detail": "one line"}
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"detail": " ".join(str(detail).split())}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        errs = exc.errors()
        parts = []
        for e in errs[:3]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(MedGroundInputError)
    async def _input_error(request, exc):
        code = 415 if isinstance(exc, UnsupportedType) else 400
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=code)

    # ------------------------------------------------------------------ security (last added = outermost)
    app.add_middleware(CatchAll)
    app.add_middleware(UploadLimit, max_bytes=int(settings.max_upload_mb * 2 ** 20))
    if settings.token:
        token = settings.token.encode()

        @app.middleware("http")
        async def _auth(request: Request, call_next):
            if request.url.path.startswith("/api/") and request.method != "OPTIONS":
                h = request.headers.get("authorization", "")
                ok = h[:7].lower() == "bearer " and secrets.compare_digest(h[7:].strip().encode(), token)
                if not ok:
                    return JSONResponse({"detail": "missing or wrong API token: send Authorization: Bearer "
                                                   "<token>"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])

    # ------------------------------------------------------------------ helpers
    def _study(study_id: str) -> dict:
        try:
            study_dir(data_dir, study_id)
        except KeyError:
            raise HTTPException(404, f"no study {study_id!r}"[:120]) from None
        info = store.get_study(study_id)
        if info is None:
            raise HTTPException(404, f"no study {study_id}")
        return info

    def _job(job_id: str) -> dict:
        job = store.get(job_id) if JOB_RE.match(job_id or "") else None
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}"[:120])
        return job

    def _job_view(job: dict) -> dict:
        return {k: job[k] for k in ("job_id", "study_id", "task", "params", "status", "error", "created",
                                    "started", "finished", "result")}

    def _file_response(path: Path, name: str):
        if name.endswith(".nii.gz"):
            media = "application/gzip"
        elif name.endswith(".dcm"):
            media = "application/dicom"
        else:
            media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, filename=name)

    # ------------------------------------------------------------------ routes
    @app.get("/api/health", tags=["service"])
    def health() -> dict:
        return {"status": "ok", "version": API_VERSION, "db": store.kind, "workers": workers.n,
                "worker_mode": workers.mode, "worker_pids": workers.pids(), "busy": workers.busy, "jobs": store.counts(), "uptime_s": round(time.time() - t_start, 1),
                "tasks": list(tasks.TASKS)}

    upload_schema = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"], "properties": {"files": {
            "type": "array", "items": {"type": "string", "format": "binary"},
            "description": "one or more files of one study"}}}}}}}

    def _store_upload(files) -> dict:
        staged: list[tuple[str, Path]] = []
        tmpdir = Path(tempfile.mkdtemp(dir=data_dir / "tmp"))
        try:
            for i, f in enumerate(files):
                head = f.file.read(1024)
                check_type(f.filename or "", head)
                tmp = tmpdir / f"{i:06d}"
                with open(tmp, "wb") as fh:
                    fh.write(head)
                    shutil.copyfileobj(f.file, fh, 1 << 20)
                staged.append((f.filename or "", tmp))
            sid = new_id()
            info, image = finalize_upload(data_dir, sid, staged)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        store.add_study(sid, info)
        images.put(sid, image)
        log.info("study %s stored (%s, %dD, %d file(s))", sid, info["format"], info["ndim"], len(staged))
        return public_info(info)

    @app.post("/api/studies", status_code=201, tags=["studies"], openapi_extra=upload_schema,
              summary="Upload a study: DICOM files or a zip of them, NIfTI, NRRD or PNG/JPG")
    async def upload(request: Request) -> dict:
        from starlette.concurrency import run_in_threadpool

        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPException(415, "send the files as multipart/form-data in the field 'files'")
        form = await request.form(max_files=100_000, max_fields=100)  # a DICOM series may have many files
        try:
            files = [v for k, v in form.multi_items() if k == "files" and hasattr(v, "filename")]
            if not files:
                raise MedGroundInputError("no file was uploaded (multipart field 'files')")
            return await run_in_threadpool(_store_upload, files)
        finally:
            await form.close()

    @app.get("/api/studies", tags=["studies"])
    def list_studies() -> list[dict]:
        return [public_info(s) for s in store.list_studies()]

    @app.get("/api/studies/{study_id}", tags=["studies"])
    def get_study(study_id: str) -> dict:
        return public_info(_study(study_id))

    @app.get("/api/studies/{study_id}/volume.nii.gz", tags=["studies"],
             summary="The study as NIfTI in its own geometry (2D: one slice, colour as grey)")
    def get_volume(study_id: str):
        info = _study(study_id)
        return _file_response(volume_nifti(data_dir, info, images), "volume.nii.gz")

    @app.post("/api/jobs", status_code=202, tags=["jobs"],
              summary="Submit a job; the same study+task+params returns the existing job (200)")
    def submit(payload: dict[str, Any] = Body(..., examples=[{"study_id": "…", "task": "segment",
                                                               "params": {"prompts": ["liver"]}}])):
        study_id, task = payload.get("study_id"), payload.get("task")
        if not isinstance(study_id, str) or not isinstance(task, str):
            raise MedGroundInputError("give 'study_id' and 'task' (segment, report, ask, classify or search)")
        params = tasks.check_params(task, payload.get("params"))
        _study(study_id)
        job, created = store.submit(study_id, task, params)
        if created:
            log.info("job %s (%s) on study %s: queued", job["job_id"], task, study_id)
            workers.notify()
        return JSONResponse({"job_id": job["job_id"], "status": job["status"], "created": created},
                            status_code=202 if created else 200)

    # job views are returned as JSONResponse directly: no response-model pass over large results
    @app.get("/api/jobs", tags=["jobs"], response_model=None)
    def list_jobs(study_id: str | None = None, status: str | None = None, limit: int = 1000) -> JSONResponse:
        return JSONResponse([_job_view(j) for j in store.list(study_id=study_id, status=status,
                                                               limit=max(1, min(limit, 10000)))])

    @app.get("/api/jobs/{job_id}", tags=["jobs"], response_model=None)
    def get_job(job_id: str) -> JSONResponse:
        return JSONResponse(_job_view(_job(job_id)))

    @app.get("/api/jobs/{job_id}/labels.nii.gz", tags=["jobs"],
             summary="All masks of a job as one NIfTI label map in the study's geometry (value = finding index)")
    def get_labels(job_id: str):
        job = _job(job_id)
        path = data_dir / "jobs" / job["job_id"] / "labels.nii.gz"
        if job["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['status']}")
        if not path.is_file():
            raise HTTPException(404, f"job {job_id} has no label map")
        return _file_response(path, "labels.nii.gz")

    @app.get("/api/jobs/{job_id}/files/{name}", tags=["jobs"])
    def get_file(job_id: str, name: str):
        job = _job(job_id)
        if not FILE_RE.match(name) or ".." in name:
            raise HTTPException(400, "bad file name")
        path = data_dir / "jobs" / job["job_id"] / name
        if not path.is_file():
            raise HTTPException(404, f"job {job_id} has no file {name}")
        return _file_response(path, name)

    # ------------------------------------------------------------------ viewer
    static = Path(settings.static_dir) if settings.static_dir else STATIC_DIR
    if (static / "index.html").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=str(static), html=True), name="viewer")
    else:
        @app.get("/", include_in_schema=False)
        def index():
            return HTMLResponse("<!doctype html><title>medground</title><p>medground API: see "
                                "<a href='/docs'>/docs</a>. The web viewer is not built in this install.</p>")

    return app


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    import uvicorn

    if not settings.token and not is_loopback(host):
        raise MedGroundInputError(f"refusing to listen on {host} without an API token: give --token (or "
                                  "MEDGROUND_TOKEN), or bind to 127.0.0.1")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    log.info("medground serve on http://%s:%d (db %s, %d worker %s(es), token %s)", host, port,
             app.state.store.kind, settings.workers, settings.worker_mode, "on" if settings.token else "off")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=os.environ.get("MEDGROUND_ACCESS_LOG")
                == "1")
