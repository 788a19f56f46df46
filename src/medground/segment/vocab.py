"""Which method segments a term (light: reads the packaged model cards, no torch import).

``"head"``: the organ grounding head was trained on it; ``"findings"``: the findings head was;
``"atlas"``: a brain atlas label, segmented by registration (:mod:`medground.segment.atlas`);
``"head (as <parent>)"``: an untrained anatomy term drawn as the trained structure named as a combination that
includes it (``stand_in``; "portal vein" as "portal vein and splenic vein"), said in ``findings.json``;
``"zero-shot"``: none of these, an anatomy term; the organ head embeds the term's description, untrained, and its
answer is flagged ``"trained": false`` in ``findings.json``; ``"not assessed"``: a finding no model was trained on
(reported not assessed, see ``TextConfig.untrained_findings``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"


@lru_cache(maxsize=None)
def _card(name: str) -> dict | None:
    """A packaged head's model card (``grounding``, ``grounding_findings``); None when it cannot be read."""
    try:
        return json.loads((_WEIGHTS / f"{name}.card.json").read_text())
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=None)
def trained_terms(name: str = "grounding") -> frozenset[str] | None:
    """Term ids a packaged head (``grounding``, ``grounding_findings``) was trained on, from its model card;
    None when the card cannot be read."""
    card = _card(name)
    return None if card is None else frozenset(card.get("terms", []))


def _with_descendants(term_id: str) -> list[str]:
    """``term_id`` and its ontology descendants: what the findings head learned a term from (each mask was taught as
    its term and the term's finding ancestors, the card's "labelling")."""
    from medground.ontology import Ontology

    try:
        return [term_id] + [d.id for d in Ontology.default().descendants(term_id)]
    except KeyError:
        return [term_id]


def _card_terms(name: str) -> frozenset[str]:
    return trained_terms(name) or frozenset()


def stand_in(term, onto, known, fknown=frozenset()):
    """The trained parent to draw for the untrained anatomy ``term``, or None. Only a parent named as a combination
    that includes the term ("portal vein and splenic vein" for "portal vein"): a part that is a small share of its
    parent (a lobe of the lung, an atrium of the heart) is not answered by the whole."""
    from medground.segment.atlas import is_atlas_term

    if (not term.parent or term.id in known or term.id in fknown or is_atlas_term(term.id)
            or term.kind != "anatomy"):
        return None
    try:
        parent = onto.get(term.parent)
    except KeyError:  # a parent that is a grouping, not a term
        return None
    ok = parent.id in known and term.name in parent.name and term.name != parent.name
    return parent if ok else None


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
    except KeyError:
        return "zero-shot"
    if t.kind == "finding":  # no model finds it: reported "not assessed" (TextConfig.untrained_findings)
        return "not assessed"
    parent = stand_in(t, onto, _card_terms("grounding"), _card_terms("grounding_findings"))
    return "zero-shot" if parent is None else f"head (as {parent.id})"


def taught_modalities(name: str = "grounding") -> dict[str, frozenset[str]]:
    """term id -> the modalities (registry codes: CT, MR, XR...) of the datasets that taught a packaged head the
    term, from its model card's ``datasets`` and the dataset registry's label maps; {} when either is unreadable."""
    return {t: frozenset(by) for t, by in training_slices_by_modality(name).items()}


def learned_modalities(term_id: str, head: str = "grounding") -> frozenset[str]:
    """The modalities (registry codes) a packaged head learned ``term_id`` from. The organ head (``grounding``): its
    datasets' (empty for an untrained term). The findings head (``grounding_findings``) learned each mask as its term
    and the term's finding ancestors (its card's "labelling"), so a term counts its descendants' datasets ("lesion":
    all of them; "tumor": the brain tumours'); a findings term no dataset names: everything the head learned."""
    taught = taught_modalities(head)
    if head != "grounding_findings":
        return taught.get(term_id, frozenset())
    kinds = frozenset().union(*(taught.get(d, frozenset()) for d in _with_descendants(term_id)))
    return kinds or frozenset().union(*taught.values())


WEAK_SLICES = 100  # a term taught by fewer training slices than this (in the kind of image asked about) is flagged


@lru_cache(maxsize=None)
def training_slices_by_modality(name: str = "grounding") -> dict[str, dict[str, int]]:
    """term id -> modality (registry code) -> training slices of the datasets of that modality that taught a packaged
    head the term (the card's per-dataset ``train`` counts; a dataset's slices need not all show the term, so these
    are upper bounds)."""
    from medground.data.registry import get_dataset

    card = _card(name)
    if card is None:
        return {}
    terms = set(card.get("terms", []))
    out: dict[str, dict[str, int]] = {}
    for ds, counts in card.get("datasets", {}).items():
        try:
            info = get_dataset(ds)
        except Exception:
            continue
        n = int((counts or {}).get("train", 0)) if isinstance(counts, dict) else 0
        for t in info.term_ids:
            if t in terms:
                for m in info.modality:
                    out.setdefault(t, {})[m] = out.setdefault(t, {}).get(m, 0) + n
    return out


def training_slices(name: str = "grounding", modalities=None) -> dict[str, int]:
    """term id -> training slices that taught a packaged head the term, over every modality or only ``modalities``
    (registry codes, e.g. the kind of image asked about)."""
    return {t: sum(n for m, n in by.items() if modalities is None or m in modalities)
            for t, by in training_slices_by_modality(name).items()}


WEAK_FINDING_DICE = 0.5  # ... and a findings-head term whose held-out Dice (its model card) stays below this


def weak_finding(term_id: str, modalities=None) -> dict | None:
    """For a findings-head term asked of an image of ``modalities`` (registry codes; None: any): the evidence that its
    answer is weak, or None. Weak = fewer than ``WEAK_SLICES`` training slices showing it (or a descendant, as the head
    was trained) in such images, and a held-out text Dice below ``WEAK_FINDING_DICE`` on every dataset that taught it
    there (the model card's ``slices_by_lesion_presence`` and ``heldout_scores``): the CT lesions (21 slices, Dice 0.09)
    and the brain tumour (10 slices of one patient, Dice 0.00; "brain tumour" came back absent at 0.95 on a held-out
    brain with a tumour), not the polyps (170 pictures) or the skin lesions (Dice 0.90)."""
    from medground.data.registry import get_dataset

    card = _card("grounding_findings") or {}
    family = set(_with_descendants(term_id))
    positives, dice, seen = 0, [], False
    for ds in card.get("datasets", {}):
        try:
            info = get_dataset(ds)
        except Exception:
            continue
        if not family & set(info.term_ids) or (modalities is not None and not set(info.modality) & set(modalities)):
            continue
        seen = True
        positives += int(card.get("slices_by_lesion_presence", {}).get(ds, {}).get("train_with_lesion", 0))
        d = (card.get("heldout_scores", {}).get(ds) or {}).get("text_dice")
        if d is not None:
            dice.append(float(d))
    if not seen or positives >= WEAK_SLICES or (dice and max(dice) >= WEAK_FINDING_DICE):
        return None
    return {"training_slices": positives, "heldout_dice": max(dice) if dice else None}

