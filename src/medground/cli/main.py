"""The medground command line: a thin layer over the Python API.

Every sub-command lives in its own module under ``medground.cli`` and registers itself on ``app``.
Exit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error.
"""
from __future__ import annotations

import os
import sys

import typer

from medground.io.image import MedGroundInputError

app = typer.Typer(
    name="medground",
    help="Read medical images in words: segment, ground, measure, ask and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """medground: read medical images in words."""


# Sub-command modules; each defines functions decorated with @app.command().
_COMMANDS = ["info", "segment", "terms", "train", "evaluate", "report", "classify", "ask", "retrieve", "serve", "mcp"]


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        try:
            importlib.import_module(f"medground.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != f"medground.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    _register()
    try:
        rv = app(args=argv, standalone_mode=False)  # click returns typer.Exit's code here
    except MedGroundInputError as exc:
        typer.echo(f"medground: error: {exc}", err=True)
        return _exit(2)
    except FileNotFoundError as exc:
        typer.echo(f"medground: error: file not found: {exc.filename or exc}", err=True)
        return _exit(2)
    except (typer.Exit, SystemExit) as exc:  # --help and explicit exits
        code = getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0
        return _exit(int(code))
    except Exception as exc:  # click usage errors and everything else
        usage, abort = _click_exceptions()
        if isinstance(exc, usage):
            exc.show()
            return _exit(2)
        if isinstance(exc, abort):
            typer.echo("medground: aborted", err=True)
            return _exit(1)
        if os.environ.get("MEDGROUND_DEBUG"):
            raise
        typer.echo(f"medground: internal error: {type(exc).__name__}: {exc}", err=True)
        return _exit(1)
    return _exit(rv if isinstance(rv, int) else 0)


def _click_exceptions() -> tuple[tuple, tuple]:
    """click's UsageError and Abort classes: typer >= 0.22 raises those of its own vendored copy (typer._click),
    older ones click's."""
    import importlib

    usage, abort = [], []
    for mod in ("click.exceptions", "typer._click.exceptions"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        usage += [c for c in (getattr(m, "UsageError", None),) if c is not None]
        abort += [c for c in (getattr(m, "Abort", None),) if c is not None]  # typer's copy has none
    return tuple(usage), tuple(abort)


def _exit(code: int) -> int:
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
