"""`medground train`: train the grounding head from a YAML config (CPU works; GPU when present)."""
from __future__ import annotations

from pathlib import Path

import typer

from medground.cli.main import app


@app.command(help="Train the text-prompted grounding head from a YAML config (see configs/textseg.yaml): "
                  "converts the datasets if needed, encodes slices once, trains, writes the checkpoint and "
                  "its model card. A config with 'kind: decoder' fine-tunes LiteMedSAM's decoder on one "
                  "domain instead (configs/decoder_ct.yaml).")
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML training config."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    rebuild_cache: bool = typer.Option(False, "--rebuild-cache", help="Re-encode the slices even if a cache exists."),
) -> None:
    from medground.models.registry import resolve_device
    from medground.train.pipeline import load_config, prepare_data, run_training

    cfg = load_config(config)
    prepare_data(cfg)
    if cfg.get("kind") == "decoder":  # LiteMedSAM's decoder fine-tuned on one domain (configs/decoder_ct.yaml)
        from medground.train.decoder import run_config

        run_config(cfg, device=resolve_device(device), log=typer.echo)
        return
    run_training(cfg, device=resolve_device(device), rebuild_cache=rebuild_cache, log=typer.echo)
