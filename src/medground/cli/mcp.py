"""`medground mcp`: a stdio MCP server exposing segment, measure, report, ask, classify and search."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app


@app.command(help="Run an MCP server on stdin/stdout (for LLM agents): tools info, segment, measure, report, ask, "
                  "classify and search take file paths and answer JSON; files go to an output folder named in "
                  "each result.")
def mcp(
    out_root: Optional[Path] = typer.Option(None, "--out-root", envvar="MEDGROUND_MCP_OUT",
                                            help="Folder under which tools write their outputs when the call "
                                                 "gives no out_dir (default ./medground_mcp_out)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
) -> None:
    from medground.models.registry import resolve_device
    from medground.serve.mcp import run_stdio

    run_stdio(out_root, device=str(resolve_device(device)))
