"""``medground terms``: list and search the anatomy/findings vocabulary."""
from __future__ import annotations

import json
from typing import Optional

import typer

from medground.cli.main import app
from medground.io.image import MedGroundInputError


def _codes(t) -> str:
    return ", ".join(f"{k}:{v}" for k, v in t.codes.items())


@app.command("terms")
def terms(
    search: Optional[str] = typer.Option(None, "--search", "-s", help="Free-text query; misspellings allowed."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="Only terms seen in this modality (CT, MR, XR, US, ...)."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="anatomy or finding."),
    limit: int = typer.Option(0, "--limit", "-n", help="Show at most this many terms (default: 20 with --search, all otherwise)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List or search the terms that prompts can name (anatomy and findings), and what segments each:
    head (the trained grounding head), head (as X) (an untrained part drawn as the trained X named as a combination
    that includes it, said in findings.json), findings (the findings head), atlas (brain atlas registration) or
    zero-shot (an untrained anatomy term: the grounding head's answer is a guess, flagged in findings.json) or not
    assessed (a finding no model was trained on: reported not assessed). "head (CT, MR)":
    the images the head learned the term from; on the other family (radiographs vs CT / MR) it is reported not
    assessed. The lungs of a CT in Hounsfield units are found by their air (no learned model)."""
    from medground.ontology import MODALITIES, Ontology, canonical_modality

    ont = Ontology.default()
    if kind is not None and kind not in ("anatomy", "finding"):
        raise MedGroundInputError(f"--kind must be 'anatomy' or 'finding', not {kind!r}")
    mod = None
    if modality is not None:
        mod = canonical_modality(modality)
        if mod is None:
            raise MedGroundInputError(f"unknown modality {modality!r}; use one of: {', '.join(MODALITIES)}")

    scores: dict[str, float] = {}
    resolved = None
    if search is not None:
        if not search.strip():
            raise MedGroundInputError("--search needs a non-empty query")
        n = limit or 20
        hits = ont.search(search, k=n, kind=kind, modality=mod)
        rows = [t for t, _ in hits]
        scores = {t.id: s for t, s in hits}
        try:
            resolved = ont.resolve(search)
        except MedGroundInputError:
            resolved = None
    else:
        rows = [t for t in ont if (kind is None or t.kind == kind) and (mod is None or mod in t.modalities)]
        if limit:
            rows = rows[:limit]

    from medground.segment.vocab import method_of as _method

    def method_of(tid: str) -> str:
        """A union term (e.g. 'kidneys', 'putamen') is segmented as its parts are."""
        m = _method(tid)
        if m != "zero-shot":
            return m
        try:
            parts = ont.resolve(ont.get(tid).name).ids
        except (MedGroundInputError, KeyError):
            return m
        return "/".join(sorted({_method(i) for i in parts})) if parts and parts != [tid] else m

    from medground.segment.air import LUNG_TERMS
    from medground.segment.vocab import learned_modalities

    def learned_from(tid: str) -> list[str]:
        """The modalities the head that segments the term learned it from (it is not drawn on other kinds of image:
        radiographs vs CT / MR, ultrasound...), plus the CT air rule for the lungs."""
        m = method_of(tid)
        if m not in ("head", "findings"):
            return []
        out = sorted(learned_modalities(tid, "grounding" if m == "head" else "grounding_findings"))
        return out + (["CT (air rule, Hounsfield units)", "CT picture (air rule, lung window)"] if tid in LUNG_TERMS
                      else [])

    def by_cell(tid: str) -> str:
        m, lf = method_of(tid), learned_from(tid)
        return f"{m} ({', '.join(lf)})" if m in ("head", "findings") and lf else m

    if as_json:
        out = []
        for t in rows:
            d = t.to_dict()
            d["segmented_by"] = method_of(t.id)
            lf = learned_from(t.id)
            if lf:
                d["learned_from"] = lf
            if t.id in scores:
                d["score"] = scores[t.id]
            out.append(d)
        payload = {"query": search, "count": len(out), "terms": out}
        if resolved is not None:
            payload["resolved"] = resolved.to_dict()
        typer.echo(json.dumps(payload, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"{len(rows)} term(s)"
    if search is not None:
        title = f"terms matching {search!r}"
    table = Table(title=title, show_lines=False)
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("name")
    table.add_column("synonyms")
    table.add_column("modalities")
    table.add_column("codes")
    table.add_column("segmented by")
    if search is not None:
        table.add_column("score", justify="right")
    for t in rows:
        syn = [s for s in t.synonyms if "(" not in s]
        syn_txt = ", ".join(syn[:4]) + (" ..." if len(syn) > 4 else "")
        if t.abbreviations:
            syn_txt = (", ".join(t.abbreviations) + "; " + syn_txt).strip("; ")
        cells = [t.id, t.name, syn_txt, ",".join(t.modalities), _codes(t), by_cell(t.id)]
        if search is not None:
            cells.append(f"{scores.get(t.id, 0.0):.2f}")
        table.add_row(*cells)
    console.print(table)
    if search is not None:
        if resolved is not None:
            console.print(f"'{search}' resolves to: {', '.join(resolved.ids)}"
                          + (" (union)" if resolved.union else "")
                          + (f" [{resolved.method}]" if resolved.method == "fuzzy" else ""))
        elif rows:
            console.print(f"no exact match for '{search}'; did you mean: {', '.join(t.name for t in rows[:3])}?")
        else:
            console.print(f"no term matches '{search}'")
