"""Which method segments a term (light: reads the packaged model cards, no torch import).

``"head"``: the organ grounding head was trained on it; ``"findings"``: the findings head was;
``"atlas"``: a brain atlas label, segmented by registration (:mod:`medground.segment.atlas`);
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


def method_of(term_id: str) -> str:
    from medground.segment.atlas import is_atlas_term

    if term_id in _card_terms("grounding"):
        return "head"
    if term_id in _card_terms("grounding_findings"):
        return "findings"
    if is_atlas_term(term_id):
        return "atlas"
    return "zero-shot"
