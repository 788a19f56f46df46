"""``medground info PATH``: what an image is — geometry, modality, format and intensities."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from medground.cli.main import app


def _jsonable(obj: Any):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    return obj


def image_info(path, series: Optional[str] = None) -> dict[str, Any]:
    """The information printed by ``medground info`` as a JSON-ready dict."""
    from medground.io import load

    img = load(path, series=series)
    info = img.summary()
    info = {"path": str(path), **info}
    info["voxel_volume_mm3"] = round(img.voxel_volume_mm3, 6) if img.ndim == 3 else None
    info["pixel_area_mm2"] = round(img.pixel_area_mm2, 6)
    info["photometric"] = img.photometric
    return _jsonable(info)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if v is None:
        return "-"
    return str(v)


@app.command("info")
def info(
    path: Path = typer.Argument(..., help="Image file, DICOM folder or .zip, or a folder of picture slices."),
    series: Optional[str] = typer.Option(
        None, "--series", help="DICOM series to read: index (see the series list) or SeriesInstanceUID."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show an image's geometry (shape, spacing, origin, direction, orientation), modality, format
    and intensity summary."""
    data = image_info(path, series=series)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    t = Table(title=f"{Path(str(path)).name}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for key in ("format", "modality", "ndim", "shape", "channels", "spacing_mm", "origin_mm_ras",
                "orientation", "has_geometry", "photometric", "voxel_volume_mm3", "pixel_area_mm2"):
        t.add_row(key, _fmt(data.get(key)))
    t.add_row("direction_ras", "\n".join(_fmt(r) for r in data.get("direction_ras", [])))
    for key, val in (data.get("intensity") or {}).items():
        t.add_row(f"intensity.{key}", _fmt(val))
    meta = dict(data.get("meta") or {})
    listing = meta.pop("series", None)
    warnings = meta.pop("warnings", None)
    for key, val in meta.items():
        t.add_row(f"meta.{key}", _fmt(val))
    console.print(t)
    if listing and len(listing) > 1:
        st = Table(title="series (use --series INDEX)", title_justify="left")
        for col in ("index", "series_number", "modality", "slices"):
            st.add_column(col)
        for s in listing:
            mark = " *" if s.get("index") == meta.get("series_index") else ""
            st.add_row(f"{s.get('index')}{mark}", _fmt(s.get("series_number")), _fmt(s.get("modality")), _fmt(s.get("slices")))
        console.print(st)
    for w in warnings or []:
        console.print(f"[yellow]warning:[/yellow] {w}")
