"""`medground classify`: modality, body region and view of an image; zero-shot free-text labels."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError


@app.command(help="Classify an image's modality (CT, MRI, X-ray, ultrasound, pathology, endoscopy, fundus, "
                  "dermoscopy, mammography, PET, nuclear medicine), body region and view, with probabilities. "
                  "--labels scores free-text labels zero-shot. --batch classifies a list of images into JSONL.")
def classify(
    image: Optional[Path] = typer.Argument(None, help="Image file (PNG/JPG, DICOM file/series/zip, NIfTI, NRRD)."),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated free-text labels to choose "
                                         "between, e.g. 'pneumonia,normal,COVID-19'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="Text file with one image path per line "
                                         "(relative paths: to the current folder, else to the list's folder)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --batch: the output JSONL file "
                                       "(default: standard output)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Classifier checkpoint (.pt path or "
                                          "hf://org/repo/file); default: the packaged weights."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show a progress bar (batch)."),
) -> None:
    from medground.classify import parse_labels

    label_list = parse_labels(labels)
    if batch is not None:
        if image is not None:
            raise MedGroundInputError("give either an IMAGE or --batch, not both.")
        code = run_batch(batch, out, label_list, weights, progress)
        if code:
            raise SystemExit(code)  # (typer.Exit's code is dropped by standalone_mode=False)
        return
    if image is None:
        raise MedGroundInputError("give an IMAGE to classify (or --batch images.txt).")
    if out is not None:
        raise MedGroundInputError("--out is for --batch; for one image use --json and redirect the output.")
    res = classify_path(image, label_list, weights)
    if as_json:
        typer.echo(json.dumps({"image": str(image), **res}, indent=1))
    else:
        typer.echo(format_table(str(image), res))


def classify_path(path: Path, labels, weights) -> dict:
    from medground.classify import classify as run
    from medground.io import load

    if not Path(path).exists():
        raise MedGroundInputError(f"file not found: {path}")
    return run(load(path), labels=labels, weights=weights)


def _read_list(batch: Path) -> list[str]:
    if not batch.is_file():
        raise MedGroundInputError(f"batch list not found: {batch}")
    try:
        lines = batch.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise MedGroundInputError(f"{batch} is not a text file with one image path per line.") from None
    items = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not items:
        raise MedGroundInputError(f"{batch} lists no images.")
    return items


def run_batch(batch: Path, out: Path | None, labels, weights, progress: bool) -> int:
    from tqdm import tqdm

    from medground.classify.model import load_classifier

    items = _read_list(batch)
    load_classifier(weights)  # a bad --weights is an input error before anything is written
    fh = open(out, "w", encoding="utf-8") if out else sys.stdout
    failed = 0
    try:
        for item in tqdm(items, desc="classify", unit="img", disable=not progress, file=sys.stderr):
            p = Path(item).expanduser()
            if not p.is_absolute() and not p.exists() and (batch.parent / p).exists():
                p = batch.parent / p
            try:
                res = classify_path(p, labels, weights)
                row = {"image": item, "modality": res["modality"], "modality_confidence": res["modality_confidence"],
                       "body_region": res["body_region"], "body_region_confidence": res["body_region_confidence"],
                       "view": res["view"], "view_confidence": res["view_confidence"],
                       "probabilities": res["probabilities"]}
                if labels:
                    row.update(label=res["label"], label_confidence=res["label_confidence"],
                               label_probabilities=res["label_probabilities"])
            except MedGroundInputError as exc:
                failed += 1
                row = {"image": item, "error": str(exc)}
            except Exception as exc:  # one bad image must not stop the batch
                failed += 1
                row = {"image": item, "error": f"{type(exc).__name__}: {exc}"}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    finally:
        if out:
            fh.close()
    if failed:
        typer.echo(f"medground: {failed} of {len(items)} images could not be classified (see 'error' lines).",
                   err=True)
    elif out:
        typer.echo(f"classified {len(items)} images -> {out}", err=True)
    return 1 if failed else 0


def format_table(name: str, res: dict) -> str:
    rows = []
    for key, title in (("modality", "modality"), ("body_region", "body region"), ("view", "view")):
        probs = res["probabilities"][key]
        alts = sorted(probs.items(), key=lambda kv: -kv[1])[1:3]
        alt = ", ".join(f"{k} {v:.2f}" for k, v in alts if v >= 0.01)
        src = res.get(f"{key}_source")
        note = {"geometry": " (from the image geometry)", "metadata": " (from the file's header tag)"}.get(src, "")
        rows.append((title, str(res[key]), f"{res[key + '_confidence']:.2f}{note}" + (f"   next: {alt}" if alt else "")))
    if "label" in res:
        lp = ", ".join(f"{k} {v:.2f}" for k, v in sorted(res["label_probabilities"].items(), key=lambda kv: -kv[1]))
        rows.append(("label", str(res["label"]), f"{res['label_confidence']:.2f}   ({res.get('label_source', '')}: {lp})"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'image':<{w0}}  {name}"] + [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    if res.get("warning"):
        lines.append(f"warning: {res['warning']}")
    return "\n".join(lines)
