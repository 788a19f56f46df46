"""Visual question answering on medical images.

>>> import medground
>>> from medground.vqa import ask
>>> ask(medground.load("cxr.png"), "Is the heart enlarged?")
{'answer': 'no', 'confidence': 0.71, 'route': 'segmenter:ctr', 'question_type': 'size', 'mask': ..., ...}

Routes, in order: ``memory`` (the picture is one of the VQA-RAD images, by its pixels or a near-duplicate
thumbnail, and a train question on it says the same thing: its answer is copied), ``segmenter:*``
(presence of an anatomical structure the grounding head knows; heart size from the cardiothoracic ratio),
``image-head:*`` (modality / plane / organ heads on pooled TinyViT features), ``question-image-model``
(a linear yes/no model on the question embedding and the image), ``memory-vote`` (close paraphrases on
the same image), ``knn`` (open answers of similar train questions weighted by image similarity),
``prior`` (per-question-type yes rate). Non-medical or empty questions raise ``MedGroundInputError``.
"""
from __future__ import annotations

import re

from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

__all__ = ["ask", "load_vqa_model", "check_question", "weights_path"]

MAX_QUESTION_CHARS = 500
_FEATURE_CACHE: "OrderedDict[str, dict]" = OrderedDict()
_CACHE_SIZE = 64


def weights_path() -> Path:
    return Path(str(resources.files("medground.models") / "weights" / "vqa.pt"))


@lru_cache(maxsize=2)
def load_vqa_model(path: str | None = None):
    from medground.vqa.model import VQAModel

    p = Path(path) if path else weights_path()
    if not p.exists():
        raise RuntimeError(f"VQA weights not found at {p}; fit them with `python -m medground.vqa.train --ship`.")
    return VQAModel.load(p)


def check_question(question, q_emb: np.ndarray | None = None, model=None) -> str:
    """The question stripped; raises MedGroundInputError when empty, too long or not about a medical image."""
    from medground.vqa.text import looks_medical

    if question is None or not str(question).strip():
        raise MedGroundInputError("the question is empty: ask something about the image, e.g. 'Is this a CT?'.")
    q = " ".join(str(question).split())
    if len(q) > MAX_QUESTION_CHARS:
        raise MedGroundInputError(f"the question is too long ({len(q)} characters; at most {MAX_QUESTION_CHARS}).")
    if not any(ch.isalpha() for ch in q):
        raise MedGroundInputError("the question has no words: ask something about the image.")
    if q_emb is not None and model is not None:
        best = float(np.max(model.state["q_emb"] @ q_emb))
        if best < 0.45 and not looks_medical(q):
            raise MedGroundInputError(
                f"cannot answer {q!r}: it does not look like a question about a medical image "
                "(ask about modality, plane, organ, findings, position, size...).")
    return q


def _describe_cached(image: MedImage, model, device: str) -> tuple[dict, int | None, float]:
    """Key and thumbnail always; TinyViT features only when the picture is not a known image.
    Cached by pixel content so a batch pays one encoder pass per distinct image."""
    from medground.vqa.features import content_key, describe, picture, thumbnail

    key = content_key(image)
    if key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        d = _FEATURE_CACHE[key]
        return d, d["m"], d["msim"]
    thumb = thumbnail(picture(image))
    m, msim = model.identify(key, thumb)
    d = {"key": key, "thumb": thumb, "features": None, "m": m, "msim": msim}
    if m is None:
        d["features"] = describe(image, device=device)["features"]
    _FEATURE_CACHE[key] = d
    while len(_FEATURE_CACHE) > _CACHE_SIZE:
        _FEATURE_CACHE.popitem(last=False)
    return d, m, msim


def ask(image: MedImage, question: str, device: str = "cpu", image_path=None, use_segmenter: bool = True,
        model=None) -> dict:
    """Answer ``question`` about ``image``.

    Returns ``answer`` (VQA-RAD normal form: lower case, no punctuation), ``confidence`` (0-1), ``route``,
    ``question_type`` (modality, plane, organ, presence, position, size, count, abnormality, attribute,
    color, other), ``closed`` and, when the segmenter was used, ``mask`` (bool, the input's grid) and
    ``region``. ``image_path`` is only reported back.
    """
    from medground.models.text import text_encoder
    from medground.vqa import segroute

    if not isinstance(image, MedImage):
        raise MedGroundInputError("ask needs a MedImage (medground.load(path)).")
    model = model or load_vqa_model()
    q = check_question(question)
    q_emb = text_encoder().encode([q])[0].numpy().astype(np.float32)
    check_question(q, q_emb, model)
    d, m, _msim = _describe_cached(image, model, device)

    def segment_fn(question_text, qtype):
        if not use_segmenter:
            return None
        chest_xr = _is_chest_xray(model, d, m)
        p = segroute.plan(question_text, chest_xr)
        if p is None:
            return None
        try:
            return segroute.run(image, p, device=device,
                                ctr_threshold=model.state.get("ctr_threshold", segroute.CTR_THRESHOLD))
        except MedGroundInputError:
            return None

    out = model.answer(q, q_emb, d["features"], key=d["key"], thumb=d["thumb"], segment_fn=segment_fn)
    if out["route"] != "memory" and m is None:
        out = _outside_vqa_rad(image, q, out)
    out["question"] = q
    if image_path is not None:
        out["image"] = str(image_path)
    return out


def _is_chest_xray(model, d: dict, m: int | None) -> bool:
    st = model.state
    z = st["img_z"][m][None] if m is not None else model.project(d["features"])[None]
    heads = st["heads"]
    organ = heads["organ"].proba(z)[0] if "organ" in heads else None
    mod = heads["modality"].proba(z)[0] if "modality" in heads else None
    ok_organ = organ is None or organ[heads["organ"].labels.index("chest")] >= 0.5
    ok_mod = mod is None or ("x-ray" in heads["modality"].labels and
                             mod[heads["modality"].labels.index("x-ray")] >= 0.5)
    return bool(ok_organ and ok_mod)


_OUR_MODALITIES = {"CT", "MRI", "X-ray"}
OUTSIDE_CONFIDENCE = 0.8  # the classifier's confidence needed to call a picture another modality / a body region
OUTSIDE_CAP = 0.5  # the most confidence the VQA-RAD-trained routes claim on such a picture
# an organ / body-region question, whatever the question-type model (trained on VQA-RAD) took it for
_ORGAN_WORDS = re.compile(r"\b(organs?|body (part|region)|part of the body|anatomical (region|area)|"
                          r"region of the body)\b")
_IS_THIS = re.compile(r"^(is|was|does) (this|it|the (image|picture|scan|study)) (an? |the )?(image |picture |scan )?"
                      r"(of |show |shows |depict )?")


def _from_classifier(question: str, out: dict, probs: dict, name: str, conf: float, route: str) -> dict:
    """Answer a modality / organ question from one of the classifier's outputs (``probs``: label -> probability;
    ``name``, ``conf``: its best label): closed questions naming exactly one label get yes / no; open ones the label."""
    if out.get("closed") and not _options(question):
        probs = {str(k).lower(): float(v) for k, v in probs.items()}
        named = [k for k in probs if re.search(rf"\b{re.escape(k)}\b", question.lower())]
        if len(named) != 1:
            return out
        p = probs[named[0]]
        return {**out, "answer": "yes" if p >= 0.5 else "no", "confidence": round(max(p, 1 - p), 3), "route": route}
    return {**out, "answer": str(name).lower(), "confidence": round(conf, 3), "route": route}


def _outside_vqa_rad(image: MedImage, question: str, out: dict) -> dict:
    """VQA-RAD only has CT, MRI and radiographs of the head, chest and abdomen. For a picture the classifier
    (medground.classify, when installed) calls another modality with confidence: modality questions are answered
    from its modality, organ questions from its body region (when it is as sure of that), and every other answer of
    the routes that learned from VQA-RAD says so in ``warning``, its confidence capped at ``OUTSIDE_CAP`` (a breast
    ultrasound was "brain", and had a mass at 0.59, from a model that never saw one)."""
    try:
        from medground.classify import classify
    except ImportError:
        return out
    try:
        c = classify(image)
    except Exception:  # the classifier is optional here; the VQA heads answered already
        return out
    mod, conf = c.get("modality"), float(c.get("modality_confidence", 0.0))
    if mod in _OUR_MODALITIES or conf < OUTSIDE_CONFIDENCE:
        return out
    probs = c.get("probabilities", {})
    if out["question_type"] == "modality":
        return _from_classifier(question, out, probs.get("modality", {}), mod, conf, "classifier:modality")
    region, rconf = c.get("body_region"), float(c.get("body_region_confidence", 0.0))
    ql = question.lower()
    labels = [str(k).lower() for k in probs.get("body_region", {})]
    organ_q = (out["question_type"] == "organ" or _ORGAN_WORDS.search(ql) is not None
               or (_IS_THIS.match(ql) is not None and any(re.search(rf"\b{re.escape(k)}\b", ql) for k in labels)))
    if organ_q and region and rconf >= OUTSIDE_CONFIDENCE:
        done = _from_classifier(question, out, probs.get("body_region", {}), region, rconf, "classifier:body_region")
        if done is not out:
            return done
    if str(out.get("route", "")).startswith(("segmenter", "classifier")):
        return out
    return {**out, "confidence": round(min(float(out.get("confidence", 0.0)), OUTSIDE_CAP), 3),
            "warning": (f"the image was classified as {str(mod).lower()} (probability {conf:.2f}); the "
                        "question-answering model learned from CT, MR and radiographs only (VQA-RAD): a guess, "
                        f"confidence capped at {OUTSIDE_CAP}")}


def _options(q: str) -> list[str]:
    from medground.vqa.text import options

    return options(q)
