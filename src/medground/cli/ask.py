"""`medground ask`: visual question answering (one question, or a JSONL batch)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError


@app.command(help="Answer a question about a medical image: prints the answer, a confidence and the route "
                  "taken (memory of VQA-RAD, image heads, segmenter, question/image model, neighbours). "
                  "With --batch, answers a JSONL file of {\"id\", \"image\", \"question\"} lines (image paths "
                  "relative to the JSONL's folder or absolute) into --out answers.jsonl.")
def ask(
    image: Optional[Path] = typer.Argument(None, help="Image file (PNG/JPG, DICOM, NIfTI, ...) or DICOM folder."),
    question: Optional[str] = typer.Argument(None, help="The question, e.g. \"Is there a pleural effusion?\""),
    batch: Optional[Path] = typer.Option(None, "--batch", help="JSONL of {\"id\", \"image\", \"question\"}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Single question: folder for answer.json and "
                                       "the mask when the segmenter was used. Batch: the answers JSONL file."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    segmenter: bool = typer.Option(True, "--segmenter/--no-segmenter", help="Let presence/heart-size "
                                   "questions use the text-prompted segmenter."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Progress bar for --batch."),
) -> None:
    from medground.models.registry import resolve_device

    dev = resolve_device(device)
    if batch is not None:
        if image is not None or question is not None:
            raise MedGroundInputError("give either IMAGE QUESTION or --batch FILE, not both.")
        if out is None:
            raise MedGroundInputError("--batch needs --out answers.jsonl.")
        n, bad = run_batch(batch, out, dev, segmenter, progress)
        typer.echo(f"{n - bad}/{n} questions answered; answers in {out}", err=True)
        return
    if image is None or question is None:
        raise MedGroundInputError("give an IMAGE and a QUESTION (or --batch questions.jsonl --out answers.jsonl).")
    import medground
    from medground.vqa import ask as vqa_ask

    img = medground.load(image)
    res = vqa_ask(img, question, device=dev, image_path=image, use_segmenter=segmenter)
    doc = _public(res)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if res.get("mask") is not None:
            doc["mask_file"] = _write_mask(img, res["mask"], out, res.get("region") or "mask")
        (out / "answer.json").write_text(json.dumps(doc, indent=2))
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        line = f"{doc['answer']}  (confidence {doc['confidence']:.2f}; route {doc['route']}; " \
               f"type {doc['question_type']})"
        typer.echo(line)
        if doc.get("warning"):
            typer.echo(f"medground: warning: {doc['warning']}", err=True)
        if doc.get("mask_file"):
            typer.echo(f"mask: {doc['mask_file']}")


def _public(res: dict) -> dict:
    """JSON-safe fields of an ask() result (no arrays)."""
    keep = {}
    for k, v in res.items():
        if k == "mask":
            continue
        if hasattr(v, "tolist"):
            v = v.tolist()
        keep[k] = v
    keep["confidence"] = float(keep.get("confidence", 0.0))
    return keep


def _write_mask(img, mask, out: Path, region: str) -> str:
    """The mask in the input's own geometry: <region>.png (2D) or <region>.nii.gz (3D)."""
    import numpy as np

    from medground.io.writers import save_mask
    from medground.ontology.text import slug

    name = slug(region) or "mask"
    p = save_mask(np.asarray(mask, bool), img, out / (f"{name}.png" if img.ndim == 2 else f"{name}.nii.gz"))
    return Path(p).name


def run_batch(jsonl: Path, out: Path, device: str, segmenter: bool = True, progress: bool = True) -> tuple[int, int]:
    """Answer every line; a bad line or image gives {"id", "error"} and the batch goes on."""
    from tqdm import tqdm

    import medground
    from medground.vqa import ask as vqa_ask, load_vqa_model

    if not jsonl.is_file():
        raise MedGroundInputError(f"batch file not found: {jsonl}")
    lines = jsonl.read_text(encoding="utf-8", errors="replace").splitlines()
    base = jsonl.resolve().parent
    load_vqa_model()  # fail early (exit 1) when the weights are missing
    out.parent.mkdir(parents=True, exist_ok=True)
    images: dict[str, object] = {}
    n = bad = 0
    with open(out, "w", encoding="utf-8") as fh:
        for ln, line in enumerate(tqdm(lines, desc="answering", disable=not progress, unit="q"), 1):
            if not line.strip():
                continue
            n += 1
            rid = None
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MedGroundInputError(f"line {ln} is not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise MedGroundInputError(f"line {ln} is not a JSON object")
                rid = row.get("id", ln)
                if not row.get("image"):
                    raise MedGroundInputError(f"line {ln} has no \"image\"")
                p = Path(str(row["image"]))
                p = p if p.is_absolute() else base / p
                if str(p) not in images:
                    if not p.exists():
                        raise MedGroundInputError(f"image not found: {row['image']}")
                    if len(images) > 32:
                        images.clear()
                    images[str(p)] = medground.load(p)
                res = vqa_ask(images[str(p)], row.get("question"), device=device, use_segmenter=segmenter)
                rec = {"id": rid, "answer": res["answer"], "confidence": float(res["confidence"]),
                       "route": res["route"], "question_type": res["question_type"]}
            except MedGroundInputError as exc:
                bad += 1
                rec = {"id": rid if rid is not None else ln, "error": str(exc)}
            except FileNotFoundError as exc:
                bad += 1
                rec = {"id": rid if rid is not None else ln, "error": f"file not found: {exc.filename or exc}"}
            except Exception as exc:  # one broken image must not stop the batch
                bad += 1
                rec = {"id": rid if rid is not None else ln, "error": f"{type(exc).__name__}: {exc}"}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
    return n, bad
