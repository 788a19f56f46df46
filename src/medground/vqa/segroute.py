"""Questions the text-prompted segmenter can answer: presence of an anatomical structure the grounding
head knows ("Are the kidneys visible?"), and heart size on a chest radiograph (cardiothoracic ratio
from the heart and lung masks: "Is the heart enlarged?", "Is there cardiomegaly?")."""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from medground.vqa.text import normalize_question

_PRESENCE = re.compile(
    r"^(?:is|are) (?:the |a |an )?(.+?) (?:visible|seen|present|shown|included|imaged|pictured|in view"
    r"|in the image|visualized)\b"
    r"|^(?:is|are) there (?:a |an |any )?(.+?)(?: in| on| seen| visible| present|$)"
    r"|^can (?:you|we|one) see (?:the |a |an )?(.+?)(?: in| on|$)"
    r"|^does (?:this|the) (?:image|film|scan|picture) (?:show|contain|include) (?:the |a |an )?(.+?)(?: in|$)")
_HEART_BIG = re.compile(r"cardiomegaly|heart (?:is |are )?(?:enlarged|big|large|increased)|enlarged heart"
                        r"|heart size (?:is )?(?:increased|enlarged|abnormal|large)"
                        r"|abnormal about the heart size|cardiac silhouette (?:is )?enlarged")
_HEART_NORMAL = re.compile(r"heart size (?:is )?normal|heart (?:is )?(?:of )?normal size"
                           r"|(?:width|size) of the cardiac silhouette (?:is )?normal|cardiac silhouette (?:is )?normal")
CTR_THRESHOLD = 0.5


def _grounding_terms() -> frozenset[str]:
    from medground.segment.vocab import trained_terms

    terms = trained_terms("grounding")
    if terms is None:
        raise FileNotFoundError("the packaged grounding head's model card (grounding.card.json) cannot be read")
    return terms


@lru_cache(maxsize=1)
def _grounding_words() -> set[str]:
    """Word stems of the names, synonyms and abbreviations of the grounding head's terms (and their
    parents: 'kidneys', 'adrenals'), a cheap filter before the ontology lookup."""
    from medground.ontology import Ontology

    onto = Ontology.default()
    words: set[str] = set()
    ids = set(_grounding_terms())
    for tid in list(ids):
        t = onto.get(tid)
        if t.parent:
            ids.add(t.parent)
    for tid in ids:
        if tid not in onto:
            continue
        t = onto.get(tid)
        for s in [t.name, *(t.synonyms or []), *(t.abbreviations or [])]:
            for w in re.findall(r"[a-z]+", str(s).lower()):
                if len(w) > 2 and w not in ("left", "right", "the", "and", "of", "lobe", "upper", "lower"):
                    words.add(w[:5])
    return words


@lru_cache(maxsize=4096)
def plan(question: str, image_is_chest_xray: bool) -> dict | None:
    """What the segmenter would be asked for this question, or None."""
    q = normalize_question(question).replace(" ?", "").strip()
    q = q.replace("is/are", "is")
    if image_is_chest_xray and (_HEART_BIG.search(q) or _HEART_NORMAL.search(q)):
        return {"kind": "ctr", "ask_enlarged": bool(_HEART_BIG.search(q)), "prompts": ["heart", "left lung",
                                                                                        "right lung"]}
    m = _PRESENCE.search(q)
    if not m:
        return None
    phrase = next(g for g in m.groups() if g)
    phrase = re.sub(r"^(both|the|all) ", "", phrase.strip())
    if len(phrase.split()) > 4 or not any(w[:5] in _grounding_words() for w in re.findall(r"[a-z]+", phrase)):
        return None
    from medground.ontology import Ontology

    try:
        res = Ontology.default().resolve(phrase)
    except Exception:  # not a term
        return None
    if res.is_fuzzy or not res.terms or not all(t.id in _grounding_terms() for t in res.terms):
        return None
    return {"kind": "presence", "prompts": [phrase], "term": res.term.id}


def fit_ctr_threshold(rows: list[dict], default: float = CTR_THRESHOLD) -> float:
    """The cardiothoracic-ratio cut that best separates enlarged from normal hearts in ``rows``
    ({"cardiothoracic_ratio", "ask_enlarged", "gold": "yes"/"no"}): the segmenter's heart masks run
    smaller than the radiologist's cardiac silhouette, so the textbook 0.5 is recalibrated on train data."""
    pts = [(float(r["cardiothoracic_ratio"]), (r["gold"] == "yes") == bool(r["ask_enlarged"])) for r in rows
           if r.get("cardiothoracic_ratio") is not None and r.get("gold") in ("yes", "no")]
    if len(pts) < 6 or len({big for _, big in pts}) < 2:
        return default
    cands = sorted({v for v, _ in pts})
    cuts = [(a + b) / 2 for a, b in zip(cands, cands[1:])] or [default]
    acc = [(sum((v > c) == big for v, big in pts), -abs(c - default), c) for c in cuts]
    return float(max(acc)[2])


def run(image, p: dict, device: str = "cpu", ctr_threshold: float = CTR_THRESHOLD) -> dict:
    """Run the segmenter for plan ``p``; returns answer fields and the mask (input grid)."""
    from medground.segment.text import segment_text

    results, _extra = segment_text(image, p["prompts"], device=device, progress=False)
    if p["kind"] == "presence":
        r = results[0]
        if getattr(r, "info", {}).get("not_assessed"):
            return None  # no model here finds it in this kind of image: the segmenter does not know; other routes answer
        present = bool(r.mask.any())
        return {"answer": "yes" if present else "no", "confidence": round(float(r.confidence), 3),
                "route": "segmenter:presence", "mask": r.mask, "region": p["prompts"][0],
                "presence_probability": getattr(r, "info", {}).get("presence_probability")}
    from medground.measure import cardiothoracic_ratio

    heart, left, right = (r.mask for r in results)
    if not (heart.any() and left.any() and right.any()):
        return None
    ctr = cardiothoracic_ratio(heart, left, right, image)
    ratio = float(ctr["ratio"])
    big = ratio > ctr_threshold
    yes = big if p["ask_enlarged"] else not big
    conf = float(min(0.95, 0.5 + abs(ratio - ctr_threshold) * 4))
    return {"answer": "yes" if yes else "no", "confidence": round(conf, 3), "route": "segmenter:ctr",
            "mask": np.asarray(heart, bool), "region": "heart", "cardiothoracic_ratio": round(ratio, 3),
            "ask_enlarged": bool(p["ask_enlarged"]), "ctr_threshold": round(float(ctr_threshold), 3)}
