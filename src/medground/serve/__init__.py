"""The medground service: a REST API with persistent jobs (``medground serve``) and an MCP server
(``medground mcp``) so that browsers, scripts and LLM agents can use medground.

``create_app(Settings(data_dir=...))`` builds the FastAPI app; ``run_server`` runs it with uvicorn.
"""
from __future__ import annotations

__all__ = ["Settings", "create_app", "run_server", "is_loopback"]


def __getattr__(name: str):  # FastAPI is imported only when the REST API is used
    if name in __all__:
        from medground.serve import app

        return getattr(app, name)
    raise AttributeError(name)
