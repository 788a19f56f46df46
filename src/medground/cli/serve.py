"""`medground serve`: the REST API with persistent jobs and the web viewer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError


@app.command(help="Run the REST API (OpenAPI at /docs) with persistent jobs and the web viewer at /. Without a "
                  "token it only listens on loopback.")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    data_dir: Path = typer.Option(Path("medground_data"), "--data-dir",
                                  help="Folder for uploaded studies, job outputs and the default SQLite database."),
    db: Optional[str] = typer.Option(None, "--db", help="Job database: sqlite:///path (default: <data-dir>/"
                                     "medground.db) or postgresql://user@host/db (needs psycopg)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MEDGROUND_TOKEN", show_envvar=True,
                                        help="API token: every /api call then needs 'Authorization: Bearer <token>'."),
    workers: int = typer.Option(1, "--workers", help="Job workers (0: accept jobs but run none)."),
    worker_mode: str = typer.Option("process", "--worker-mode", help="process: worker processes beside the API "
                                    "(a crashing job cannot take the API down); thread: threads in the API process."),
    max_upload_mb: float = typer.Option(512.0, "--max-upload-mb", help="Largest upload accepted (MB)."),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="Allow this browser origin "
                                                    "(CORS is off by default). Repeatable."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads per worker (default: torch's "
                                          "choice)."),
    search_db: Optional[Path] = typer.Option(None, "--search-db", help="Default retrieval index for search jobs."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    from medground.serve.app import Settings, run_server

    if not 0 < port < 65536:
        raise MedGroundInputError(f"--port {port} must be 1..65535")
    if workers < 0:
        raise MedGroundInputError("--workers must be 0 or more")
    if worker_mode not in ("process", "thread"):
        raise MedGroundInputError(f"--worker-mode must be process or thread, not {worker_mode!r}")
    if max_upload_mb <= 0:
        raise MedGroundInputError("--max-upload-mb must be positive")
    if db and not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise MedGroundInputError(f"--db must be sqlite:///path or postgresql://..., got {db.split(':')[0]}:...")
    if threads and worker_mode == "thread":
        import torch

        torch.set_num_threads(threads)
    if device != "cpu":
        from medground.models.registry import resolve_device

        device = str(resolve_device(device))
    settings = Settings(data_dir=data_dir, db=db, token=token or os.environ.get("MEDGROUND_TOKEN") or None,
                        workers=workers, worker_mode=worker_mode, threads=threads, max_upload_mb=max_upload_mb,
                        cors_origins=list(cors_origin or []), device=device,
                        search_db=str(search_db) if search_db else None)
    try:
        run_server(settings, host=host, port=port, log_level=log_level)
    except ValueError as exc:  # database URL problems
        raise MedGroundInputError(str(exc)) from None
