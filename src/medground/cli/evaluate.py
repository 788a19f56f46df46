"""`medground evaluate`: Dice, NSD and HD95 per class and modality on a converted dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app


@app.command(help="Segment every case of a dataset in the standard layout (see `python -m medground.data.convert`) "
                  "and score it against the reference labels: Dice, NSD (tolerance in mm) and HD95 per class and "
                  "modality, presence accuracy; writes report.json and report.md. Empty references: both empty = "
                  "Dice 1 (true negative); one empty = Dice 0, HD95 undefined.")
def evaluate(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Converted dataset folder (holds dataset.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder."),
    prompts: Optional[list[str]] = typer.Option(None, "--prompts", "-p", help="Text prompts (repeatable); "
                                                "default: every structure the dataset labels."),
    split: str = typer.Option("val", "--split", help="train, val, test or all."),
    mode: str = typer.Option("text", "--mode", help="text (grounding) or box (LiteMedSAM with reference boxes)."),
    max_cases: Optional[int] = typer.Option(None, "--max-cases", help="Evaluate at most this many cases."),
    nsd_tolerance: float = typer.Option(2.0, "--nsd-tolerance", help="NSD tolerance in mm."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
) -> None:
    from medground.evaluate.runner import evaluate_dataset
    from medground.io.image import MedGroundInputError
    from medground.models.registry import resolve_device

    if mode not in ("text", "box"):
        raise MedGroundInputError(f"--mode must be text or box, not {mode!r}")
    if not (dataset / "dataset.json").exists():
        raise MedGroundInputError(f"{dataset} is not a converted dataset (no dataset.json)")
    agg = evaluate_dataset(dataset, split, prompts, mode, max_cases, resolve_device(device), nsd_tolerance,
                           log=lambda m: typer.echo(m, err=True))
    paths = agg.write(out)
    typer.echo(f"wrote {paths['json']} and {paths['markdown']}")
