"""`medground report`: a grounded structured report (JSON, Markdown, HTML, DICOM SR) of one image."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app


@app.command(help="Write a grounded structured report of an image: segment the structures of a panel "
                  "(chosen from the modality and body region, or --panel), measure them (volumes, HU, "
                  "RECIST diameters, cardiothoracic ratio, aortic diameter) against published reference "
                  "ranges, and write report.json, report.md, report.html (with pictures), the masks, "
                  "findings.json and, for DICOM input, a DICOM SEG and a DICOM SR (report.dcm).")
def report(
    input: Path = typer.Argument(..., help="Image file (NIfTI, NRRD, DICOM, PNG/JPG), DICOM series folder or zip, or a folder of picture slices."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    panel: Optional[str] = typer.Option(None, "--panel", help="Comma-separated structures to report, e.g. "
                                        "'liver,spleen,kidneys', or a panel name (ct_abdomen, ct_chest, "
                                        "mr_abdomen, mr_heart, mr_head, xr_chest). Default: the panel of the "
                                        "recognised modality and body region."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (cuda when available)."),
    dicom_sr: bool = typer.Option(True, "--dicom-sr/--no-dicom-sr", help="Write report.dcm (DICOM SR, TID 1500) "
                                  "for DICOM input."),
    include_identifiers: bool = typer.Option(False, "--include-identifiers", help="Keep patient identifiers "
                                             "(name, ID, dates) from the DICOM header in the outputs (default: "
                                             "removed everywhere)."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM folder with several series: the "
                                         "SeriesInstanceUID or index to use (default: the largest)."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show progress bars."),
) -> None:
    import medground
    from medground.models.registry import resolve_device
    from medground.report import build_report

    dev = resolve_device(device)
    image = medground.load(input, series=series) if series is not None else medground.load(input)
    rep = build_report(image, out, input_path=str(input), panel=panel, device=dev,
                       include_identifiers=include_identifiers, dicom_sr=dicom_sr, progress=progress)
    _print_summary(rep, out)


def _print_summary(rep: dict, out: Path) -> None:
    from rich.console import Console

    con = Console(stderr=True)
    c = rep["context"]
    con.print(f"[bold]medground report[/bold] {c['panel_title']} ({c['modality']} {c['region']}) -> {out}")
    for i in rep["impression"]:
        con.print(f"  - {i['text']}")
    files = ["report.json", "report.md", "report.html"] + ([rep["dicom_sr"]["file"]] if rep["dicom_sr"]["written"] else [])
    con.print("  files: " + ", ".join(files))
