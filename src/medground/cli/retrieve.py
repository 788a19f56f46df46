"""`medground index` / `medground search`: anatomy-conditioned image and report retrieval."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError


@app.command(help="Index images for search: embeds each whole image, each region's masked crop (from the "
                  "text-prompted segmenter) and each report. Incremental: re-running skips what is indexed.")
def index(
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively; a folder of "
                                                 ".dcm files only is one DICOM series)."),
    db: str = typer.Option(..., "--db", help="Database: a folder (LanceDB; created if missing), a .sqlite file, "
                                             "or a postgresql:// URI (pgvector)."),
    reports: Optional[Path] = typer.Option(None, "--reports", help="CSV with an image column (image/path/file) and "
                                           "a report column (report/text/findings/notes); optional patient and "
                                           "label columns. Images match by path, path relative to the indexed "
                                           "folder, or file name."),
    regions: str = typer.Option("auto", "--regions", help="Comma-separated regions to crop and index, e.g. "
                                "'liver,lungs'; 'auto' (by modality: X-ray lungs+heart, CT/MR abdominal organs) "
                                "or 'none'."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show a progress bar."),
) -> None:
    from medground.retrieve import index_paths

    if reports is not None and not reports.is_file():
        raise MedGroundInputError(f"reports file not found: {reports}")
    s = index_paths(paths, db, reports=reports, regions=regions, progress=progress)
    if as_json:
        typer.echo(json.dumps(s, indent=2))
    else:
        typer.echo(f"{s['images']} images: {s['images_added']} added, {s['images_updated']} updated, "
                   f"{s['images_skipped']} already indexed, {len(s['failed'])} failed; {s['regions_added']} region "
                   f"crops ({s['regions_absent']} regions absent), {s['reports_added']} reports"
                   + (f" ({s['reports_unmatched']} CSV rows matched no image)" if s["reports_unmatched"] else "")
                   + "; "
                   f"{s['total_records']} records in {s['db']} ({s['backend']}, {s['seconds']} s)")
    failed = s["failed"]
    for f in failed[:-1]:  # one line per unreadable file; the last one through the exit-2 path
        typer.echo(f"medground: error: {f['path']}: {f['error']}", err=True)
    if failed:
        raise MedGroundInputError(f"{failed[-1]['path']}: {failed[-1]['error']}")


@app.command(help="Search indexed images by image, by text or both; --region conditions the search on an "
                  "anatomical region (the query's masked crop against indexed crops of that region).")
def search(
    db: str = typer.Option(..., "--db", help="Database made by 'medground index'."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image."),
    text: Optional[str] = typer.Option(None, "--text", help="Query text, e.g. 'left lower lobe consolidation'."),
    region: Optional[str] = typer.Option(None, "--region", help="Anatomical region, e.g. 'right lung'."),
    k: int = typer.Option(10, "-k", "--k", help="Number of results."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the image score when both --image and --text "
                                                     "are given (text gets 1 - alpha)."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Only indexed images of this modality "
                                           "(as stored, e.g. CT, MR, OT)."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Only this patient (from the reports CSV)."),
    exclude_patient: Optional[str] = typer.Option(None, "--exclude-patient", help="Leave this patient out."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    import medground
    from medground.retrieve import search as run_search

    if image is None and not text:
        raise MedGroundInputError("give --image, --text or both")
    if image is not None and not image.exists():
        raise MedGroundInputError(f"query image not found: {image}")
    if patient and exclude_patient:
        raise MedGroundInputError("give --patient or --exclude-patient, not both")
    filters = {}
    if modality:
        filters["modality"] = modality
    if patient:
        filters["patient"] = patient
    if exclude_patient:
        filters["patient"] = ("!=", exclude_patient)
    from medground.retrieve.store import open_store

    store = open_store(db, create=False)  # missing database -> exit 2 before loading any model
    try:
        img = medground.load(image) if image is not None else None
        rows = run_search(store, image=img, text=text, region=region, k=k, alpha=alpha, filters=filters)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"medground search ({len(rows)} results)")
    for c in ("rank", "score", "image", "region", "match", "report"):
        t.add_column(c, overflow="fold")
    for r in rows:
        rep = r["report"] if len(r["report"]) <= 80 else r["report"][:77] + "..."
        t.add_row(str(r["rank"]), f"{r['score']:.3f}", r["image"], r["region"] or "-", r["match"], rep)
    Console(width=160).print(t)
