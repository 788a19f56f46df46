"""Which method segments a term (light: reads the packaged model cards, no torch import).

``"head"``: the organ grounding head was trained on it; ``"findings"``: the findings head was;
``"atlas"``: a brain atlas label, segmented by registration (:mod:`medground.segment.atlas`);
``"head (as <parent>)"``: an untrained anatomy term drawn as the trained structure named as a combination that
includes it (``stands_in_parent``; "portal vein" as "portal vein and splenic vein"), said in ``findings.json``;
``"zero-shot"``: none of these; the organ head embeds the term's description, untrained, and its answer
is flagged ``"trained": false`` in ``findings.json``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"


@lru_cache(maxsize=None)
def trained_terms(name: str = "grounding") -> frozenset[str] | None:
    """Term ids a packaged head (``grounding``, ``grounding_findings``) was trained on, from its model card;
    None when the card cannot be read."""
    p = _WEIGHTS / f"{name}.card.json"
    try:
        return frozenset(json.loads(p.read_text()).get("terms", []))
    except (OSError, ValueError):
        return None


def _card_terms(name: str) -> frozenset[str]:
    return trained_terms(name) or frozenset()


def stands_in_parent(term, parent, known, fknown=frozenset()) -> bool:
    """May the trained ``parent`` be drawn for the untrained anatomy ``term``? Only when the parent is named as a
    combination that includes the term ("portal vein and splenic vein" for "portal vein"): a part that is a small
    share of its parent (a lobe of the lung, an atrium of the heart) is not answered by the whole."""
    from medground.segment.atlas import is_atlas_term

    return (parent is not None and term.id not in known and term.id not in fknown and not is_atlas_term(term.id)
            and parent.id in known and term.kind == "anatomy" and term.name in parent.name and term.name != parent.name)


def method_of(term_id: str) -> str:
    from medground.segment.atlas import is_atlas_term

    if term_id in _card_terms("grounding"):
        return "head"
    if term_id in _card_terms("grounding_findings"):
        return "findings"
    if is_atlas_term(term_id):
        return "atlas"
    from medground.ontology import Ontology

    onto = Ontology.default()
    try:
        t = onto.get(term_id)
        parent = onto.get(t.parent) if t.parent else None
    except KeyError:
        return "zero-shot"
    if stands_in_parent(t, parent, _card_terms("grounding"), _card_terms("grounding_findings")):
        return f"head (as {parent.id})"
    return "zero-shot"
