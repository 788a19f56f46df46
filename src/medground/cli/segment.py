"""`medground segment`: masks from boxes, points or words, written in the input's own geometry."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".dcm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                  ".zip", ".mha", ".mhd")


@app.command(help="Segment structures from boxes, points or text prompts. Writes one mask per prompt "
                  "(PNG for 2D inputs, NIfTI in the input's geometry for 3D), a combined label map, "
                  "findings.json, overlay PNGs and, for DICOM input, a DICOM SEG.")
def segment(
    input: Path = typer.Argument(..., help="Image file (NIfTI, NRRD, DICOM, PNG/JPG/BMP/TIFF, MedSAM-style .npz), DICOM series "
                                           "folder or zip, a folder holding only same-sized picture slices (a "
                                           "volume, in file-name order), or with --boxes a folder of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if missing)."),
    box: Optional[list[str]] = typer.Option(None, "--box", help="Box x0,y0,x1,y1 in pixel/voxel indices "
                                            "(inclusive; x = column / first array axis). On a volume give "
                                            "--slice, or 6 numbers x0,y0,z0,x1,y1,z1 for a 3D box. Repeatable."),
    slice_: Optional[int] = typer.Option(None, "--slice", "-z", help="Slice index z of the --box prompts on a "
                                         "volume; the object is propagated to neighbouring slices."),
    point: Optional[list[str]] = typer.Option(None, "--point", help="Point x,y (2D) or x,y,z (3D) inside the "
                                              "object. Repeatable (one object per point)."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="Text prompt naming a structure or "
                                               "finding, e.g. 'liver', 'left kidney', 'kidneys'. Repeatable."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="JSONL batch file: one prompt per line, "
                                         "{\"image\": path (relative to INPUT folder), \"box\": [x0,y0,x1,y1], "
                                         "\"slice\": z, \"label\": name} or \"point\": [x,y,z] or \"prompt\": text."),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write overlay PNGs of the key slices."),
    propagate: bool = typer.Option(True, "--propagate/--no-propagate", help="3D: propagate a slice prompt "
                                   "through the volume (default) or segment only that slice."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (cuda when available)."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM folder with several series: the "
                                         "SeriesInstanceUID or index to use (default: the largest)."),
    dicom_seg: Optional[bool] = typer.Option(None, "--dicom-seg/--no-dicom-seg", help="Write a DICOM SEG "
                                             "(default: when the input is DICOM)."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show progress bars."),
    slices: str = typer.Option("adaptive", "--slices", help="Text prompts on a volume: 'adaptive' encodes "
                               "slices coarse to fine where the answer changes and interpolates between slices "
                               "that agree (faster); 'all' encodes every slice."),
) -> None:
    from medground.models.registry import resolve_device

    dev = resolve_device(device)
    if slices not in ("adaptive", "all"):
        raise MedGroundInputError(f"--slices must be 'adaptive' or 'all', got {slices!r}")
    if boxes is not None:
        _run_batch(input, boxes, out, overlay, propagate, dev, progress, dicom_seg, slices=slices)
        return
    if not (box or point or prompt):
        raise MedGroundInputError("give at least one --box, --point or --prompt (or a --boxes JSONL file)")
    doc = run_one(input, out, box or [], slice_, point or [], prompt or [], overlay, propagate, dev, series,
                  dicom_seg, progress, slices=slices)
    _print_summary(doc, out)


def run_one(path: Path, out: Path, box: list[str], z: int | None, point: list[str], prompt: list[str],
            overlay: bool, propagate: bool, device: str, series: str | None, dicom_seg: bool | None,
            progress: bool, slices: str = "adaptive") -> dict:
    from medground.segment.prompts import parse_box, parse_point

    prompts = [parse_box(b, z=z) for b in box] + [parse_point(p) for p in point]
    return _run_prompts(path, out, prompts, prompt, overlay, propagate, device, dicom_seg, series, progress,
                        slices=slices)


def _run_batch(folder: Path, jsonl: Path, out: Path, overlay: bool, propagate: bool, device: str,
               progress: bool, dicom_seg: bool | None, slices: str = "adaptive") -> None:
    from rich.progress import track

    from medground.segment.prompts import prompt_from_row, read_jsonl

    rows = read_jsonl(jsonl)
    base = folder if folder.is_dir() else folder.parent
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r["image"]), []).append(r)
    for img in groups:
        if not (base / img).exists():
            raise MedGroundInputError(f"{jsonl.name}: image '{img}' not found in {base}")
    summary = []
    failures = 0
    for img, rs in track(list(groups.items()), description="segmenting", disable=not progress):
        texts = [str(r["prompt"]) for r in rs if "prompt" in r]
        sub = out / _stem(img)
        try:
            ps = [p for p in (prompt_from_row(r) for r in rs) if p is not None]
            doc = _run_prompts(base / img, sub, ps, texts, overlay, propagate, device, dicom_seg, None, False,
                               slices=slices)
            summary.append({"image": img, "out": str(sub.relative_to(out)), "status": "ok",
                            "findings": len(doc["findings"])})
        except MedGroundInputError as exc:
            failures += 1
            summary.append({"image": img, "status": "error", "error": str(exc)})
            typer.echo(f"medground: error: {img}: {exc}", err=True)
    (out / "batch.json").write_text(json.dumps({"results": summary}, indent=2))
    typer.echo(f"{len(groups) - failures}/{len(groups)} images segmented; summary in {out / 'batch.json'}")
    if failures:
        raise typer.Exit(2)


def _run_prompts(path: Path, out: Path, prompts, texts, overlay, propagate, device, dicom_seg, series,
                 progress, slices: str = "adaptive") -> dict:
    import medground
    from medground.segment.engine import segment as seg_spatial
    from medground.segment.outputs import write_results
    from medground.segment.prompts import validate_prompt

    image = medground.load(path, series=series) if series is not None else medground.load(path)
    for p in prompts:  # check every prompt before any compute
        validate_prompt(p, image)
    text_results, extra = [], {}
    if texts:
        from medground.segment.text import TextConfig, segment_text

        text_results, extra = segment_text(image, texts, device=device, progress=progress,
                                           cfg=TextConfig(slice_sampling=slices))
        untrained = sorted({t["name"] for r in text_results for t in r.info.get("terms", [])
                            if t.get("trained") is False and not t.get("absent_because")})
        if untrained:
            typer.echo(f"medground: warning: no model was trained on {', '.join(untrained)}: the grounding head's "
                       "answer for it is a zero-shot guess (see `medground terms`)", err=True)
        for r in text_results:
            if r.info.get("training_slices") or r.info.get("learned_from"):
                typer.echo(f"medground: warning: {r.name}: {r.info['warning']}", err=True)
            if r.info.get("not_assessed"):
                typer.echo(f"medground: warning: {r.name}: not assessed: {r.info['not_assessed']}", err=True)
        for part, whole in sorted({(t["stands_in_for"]["name"], t["name"]) for r in text_results
                                   for t in r.info.get("terms", []) if t.get("stands_in_for")}):
            typer.echo(f"medground: warning: no model was trained on {part}: its mask is of {whole}, the trained "
                       "structure that contains it", err=True)
    results = (seg_spatial(image, prompts=prompts, device=device, propagate_3d=propagate, progress=progress)
               if prompts else [])
    return write_results(image, text_results + results, out, input_path=str(path), overlay=overlay,
                         dicom_seg=dicom_seg, extra=extra)


def _stem(name: str) -> str:
    n = Path(name).name
    for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if n.lower().endswith(s):
            return n[: -len(s)] or n
    return n


def _print_summary(doc: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"medground segment -> {out}")
    for c in ("name", "present", "confidence", "size", "mask"):
        t.add_column(c)
    for f in doc["findings"]:
        size = (f"{f['volume_ml']} mL" if f.get("volume_ml") is not None else
                f"{f['area_mm2']} mm²" if f.get("area_mm2") is not None else
                f"{f['area_px']} px" if f.get("area_px") is not None else f"{f.get('volume_voxels')} voxels")
        present = "not assessed" if f.get("not_assessed") else str(f["present"])  # findings.json keeps False
        t.add_row(str(f["name"]), present, f"{f['confidence']:.2f}", size, f["mask_file"])
    Console(stderr=True).print(t)
