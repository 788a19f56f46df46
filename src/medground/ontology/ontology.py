"""The :class:`Ontology`: lookup, hierarchy and prompt resolution over the terms in ``data/``."""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from medground.io.image import MedGroundInputError
from medground.ontology import text as _text
from medground.ontology.terms import KINDS, MODALITIES, Term, build_terms, canonical_modality, load_raw_terms

DATA_DIR = Path(__file__).with_name("data")

# Priority of an index key (lower wins when two terms share a key).
P_NAME, P_SYNONYM, P_DATASET, P_ABBREV = 0, 1, 2, 3
_METHOD = {P_NAME: "name", P_SYNONYM: "synonym", P_DATASET: "dataset", P_ABBREV: "abbreviation"}

_SIDE_WORDS = {"left": "left", "lt": "left", "l": "left", "sinister": "left", "sinistral": "left",
               "right": "right", "rt": "right", "r": "right", "dexter": "right", "dextral": "right",
               "both": "both", "bilateral": "both", "bilat": "both", "bilaterally": "both", "each": "both"}
_SIDE_FILLER = {"side", "sided", "hemithorax"}


def _canon_sides(toks: list[str]) -> list[str]:
    """'lt'/'l' -> 'left', 'rt'/'r' -> 'right', 'bilat' -> 'bilateral'; drop 'sided' after a side word."""
    out: list[str] = []
    for t in toks:
        if t in ("lt", "l", "sinister", "sinistral"):
            t = "left"
        elif t in ("rt", "r", "dexter", "dextral"):
            t = "right"
        elif t in ("bilat", "bilaterally"):
            t = "bilateral"
        if t in ("side", "sided") and out and out[-1] in ("left", "right", "bilateral", "both"):
            continue
        out.append(t)
    return out


def _split_side(toks: list[str]) -> tuple[str | None, list[str]]:
    """Separate laterality words from the rest: (side or None, remaining tokens)."""
    sides = set()
    rest = []
    for i, t in enumerate(toks):
        s = _SIDE_WORDS.get(t)
        if s is not None:
            sides.add(s)
            continue
        if t == "and" and sides and i + 1 < len(toks) and toks[i + 1] in _SIDE_WORDS:
            continue  # "left and right"
        if t in _SIDE_FILLER and sides:
            continue
        rest.append(t)
    if not sides:
        return None, toks
    if "both" in sides or {"left", "right"} <= sides:
        side = "both"
    else:
        side = sides.pop()
    # drop dangling linking words ("kidney of left" -> "kidney")
    while rest and rest[-1] in ("of", "and", "the"):
        rest.pop()
    return side, rest


@dataclass
class Resolution:
    """Result of :meth:`Ontology.resolve`.

    ``term`` is the concept the prompt named (e.g. ``kidney``); ``terms`` are the structures to
    segment (``[kidney_left, kidney_right]``), to be merged into one mask when ``union`` is True.
    """

    prompt: str
    normalized: str
    term: Term
    terms: list[Term]
    union: bool
    laterality: str | None  # "left", "right", "both" or None (as asked in the prompt)
    method: str             # id | name | synonym | dataset | abbreviation | fuzzy
    score: float            # 1.0 for exact matches, edit-distance similarity for fuzzy ones
    matched: str            # the normalised index key that matched

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.terms]

    @property
    def slug(self) -> str:
        return _text.slug(self.prompt)

    @property
    def is_fuzzy(self) -> bool:
        return self.method == "fuzzy"

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "normalized": self.normalized, "term": self.term.id,
                "terms": self.ids, "union": self.union, "laterality": self.laterality,
                "method": self.method, "score": round(self.score, 4), "matched": self.matched}


class Ontology:
    """Vocabulary of anatomy and findings with hierarchy, synonyms and fuzzy prompt resolution."""

    def __init__(self, terms: dict[str, Term]):
        self._terms = dict(terms)
        self._children: dict[str, list[str]] = defaultdict(list)
        for t in self._terms.values():
            if t.parent:
                self._children[t.parent].append(t.id)
        self._check_acyclic()
        self._build_index()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dir(cls, data_dir: str | Path) -> "Ontology":
        return cls(build_terms(load_raw_terms(Path(data_dir))))

    @staticmethod
    def default() -> "Ontology":
        """The ontology shipped with medground (loaded once, then cached)."""
        return _default()

    def _check_acyclic(self) -> None:
        for tid in self._terms:
            seen = {tid}
            p = self._terms[tid].parent
            while p is not None:
                if p in seen:
                    raise ValueError(f"cycle in the term hierarchy through {p!r}")
                seen.add(p)
                p = self._terms[p].parent

    def _build_index(self) -> None:
        keys: dict[str, dict[str, int]] = defaultdict(dict)
        bags: dict[str, dict[str, int]] = defaultdict(dict)

        def add(s: str, tid: str, prio: int) -> None:
            norm = " ".join(_canon_sides(_text.tokens(s)))
            if not norm:
                return
            if prio < keys[norm].get(tid, 99):
                keys[norm][tid] = prio
            bk = _text.bag_key(norm)
            if bk and prio < bags[bk].get(tid, 99):
                bags[bk][tid] = prio

        for t in self._terms.values():
            add(t.name, t.id, P_NAME)
            add(t.id, t.id, P_NAME)
            for s in t.synonyms:
                add(s, t.id, P_SYNONYM)
            for v in t.datasets.values():
                for item in (v if isinstance(v, list) else [v]):
                    if isinstance(item, str):
                        add(item, t.id, P_DATASET)
            for a in t.abbreviations:
                add(a, t.id, P_ABBREV)
        self._keys = dict(keys)
        self._bags = dict(bags)
        # fuzzy-matching structures
        self._key_list = list(self._keys)
        self._key_tokens = {k: k.split() for k in self._key_list}
        vocab = set()
        for toks in self._key_tokens.values():
            vocab.update(toks)
        self._vocab = sorted(vocab)
        self._def_tokens = {t.id: set(_text.tokens(t.definition, strip_filler=False)) for t in self._terms.values()}

    # ---------------------------------------------------------------- mapping protocol
    def __len__(self) -> int:
        return len(self._terms)

    def __iter__(self) -> Iterator[Term]:
        return iter(self._terms.values())

    def __contains__(self, tid: object) -> bool:
        return tid in self._terms

    @property
    def terms(self) -> list[Term]:
        return list(self._terms.values())

    def ids(self) -> list[str]:
        return list(self._terms)

    def get(self, tid: str) -> Term:
        """The term with id ``tid``; raises ``KeyError`` (with suggestions) when there is none."""
        try:
            return self._terms[tid]
        except KeyError:
            sugg = ", ".join(self.suggest(str(tid).replace("_", " "), k=3))
            raise KeyError(f"unknown term id {tid!r}" + (f"; did you mean: {sugg}?" if sugg else "")) from None

    # ---------------------------------------------------------------- hierarchy
    def children(self, tid: str) -> list[Term]:
        self.get(tid)
        return [self._terms[c] for c in self._children.get(tid, [])]

    def descendants(self, tid: str) -> list[Term]:
        self.get(tid)
        out, stack = [], list(reversed(self._children.get(tid, [])))
        while stack:
            c = stack.pop()
            out.append(self._terms[c])
            stack.extend(reversed(self._children.get(c, [])))
        return out

    def ancestors(self, tid: str) -> list[Term]:
        """Parent, grandparent, ... up to the root."""
        out = []
        p = self.get(tid).parent
        while p is not None:
            out.append(self._terms[p])
            p = self._terms[p].parent
        return out

    def leaves(self, tid: str) -> list[Term]:
        """Descendants without children (the term itself when it has none)."""
        desc = [t for t in self.descendants(tid) if not self._children.get(t.id)]
        return desc or [self.get(tid)]

    def roots(self) -> list[Term]:
        return [t for t in self._terms.values() if t.parent is None]

    def is_a(self, tid: str, ancestor: str) -> bool:
        """True when ``ancestor`` is ``tid`` or one of its ancestors."""
        return tid == ancestor or any(a.id == ancestor for a in self.ancestors(tid))

    def terms_for_modality(self, modality: str, kind: str | None = None) -> list[Term]:
        mod = canonical_modality(modality)
        if mod is None:
            raise MedGroundInputError(
                f"unknown modality {modality!r}; use one of: {', '.join(MODALITIES)}")
        if kind is not None and kind not in KINDS:
            raise MedGroundInputError(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
        return [t for t in self._terms.values() if mod in t.modalities and (kind is None or t.kind == kind)]

    def terms_for_dataset(self, dataset: str) -> list[Term]:
        return [t for t in self._terms.values() if dataset in t.datasets]

    def dataset_labels(self, tid: str, dataset: str) -> dict[str, Any]:
        """``{term_id: dataset value}`` for ``tid``, its union parts and all their descendants.

        E.g. ``dataset_labels("lung", "totalsegmentator")`` gives the five lobe classes and
        ``dataset_labels("whole_tumor", "brats")`` the three BraTS labels.
        """
        out: dict[str, Any] = {}
        todo = [tid]
        seen = set()
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            t = self.get(cur)
            if dataset in t.datasets:
                out[cur] = t.datasets[dataset]
            todo.extend(t.parts)
            todo.extend(self._children.get(cur, []))
        return out

    def describe(self, tid: str) -> str:
        """Text for text embeddings: name, synonyms, abbreviations and definition."""
        t = self.get(tid)
        parts = [t.name[:1].upper() + t.name[1:] + "."]
        syn = [s for s in t.synonyms if "(" not in s][:10]
        if syn:
            parts.append("Also called " + ", ".join(syn) + ".")
        if t.abbreviations:
            parts.append("Abbreviation: " + ", ".join(t.abbreviations) + ".")
        if t.definition:
            parts.append(t.definition)
        return " ".join(parts)

    # ---------------------------------------------------------------- resolution
    def _lookup(self, norm: str) -> tuple[list[str], int, str] | None:
        hit = self._keys.get(norm)
        key = norm
        if not hit:
            bk = _text.bag_key(norm)
            hit = self._bags.get(bk) if bk else None
            key = bk
        if not hit:
            return None
        best = min(hit.values())
        return sorted(t for t, p in hit.items() if p == best), best, key

    def _collapse(self, ids: list[str]) -> list[str]:
        """Several terms for one key: a pair's two sides become their base term."""
        if len(ids) <= 1:
            return ids
        s = set(ids)
        for t in self._terms.values():
            if t.pair and set(t.pair) == s:
                return [t.id]
        # a term together with its own parts/descendants: keep the most general one
        tops = [i for i in ids if not any(j != i and self.is_a(i, j) for j in ids)]
        return tops

    def _apply_side(self, prompt: str, term: Term, side: str | None) -> tuple[list[Term], bool]:
        if side in (None, "both"):
            if term.parts:
                return [self._terms[p] for p in term.parts], True
            return [term], False
        if term.pair:
            for p in term.pair:
                if self._terms[p].laterality == side:
                    return [self._terms[p]], False
        if term.laterality == side:
            return [term], False
        sided = [c for c in self.children(term.id) if c.laterality == side]
        if len(sided) == 1:
            return sided, False
        raise MedGroundInputError(f"'{term.name}' has no {side} part in the ontology (prompt {prompt!r})")

    def resolve(self, prompt: str) -> Resolution:
        """Map a free-text prompt to ontology term(s).

        Handles case, punctuation, plurals, filler ("segment the ..."), British/US spelling, synonyms,
        abbreviations, laterality words (left/lt/L, right/rt/R, both/bilateral) and misspellings.
        Raises :class:`MedGroundInputError` with suggestions when nothing matches.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise MedGroundInputError("empty prompt: name a structure or finding, e.g. 'liver'")
        raw = prompt.strip()
        if raw in self._terms:
            t = self._terms[raw]
            terms, union = self._apply_side(prompt, t, None)
            return Resolution(prompt, raw, t, list(terms), union, None, "id", 1.0, raw)
        toks = _canon_sides(_text.tokens(raw))
        norm = " ".join(toks)
        if not norm:
            raise MedGroundInputError(f"unknown term {prompt!r}: nothing left after removing filler words")
        side, rest = _split_side(toks)
        rest_norm = " ".join(rest)

        attempts: list[tuple[str, str | None]] = [(norm, None)]
        if side is not None and rest_norm:
            attempts.append((rest_norm, side))
        for query, sd in attempts:
            hit = self._lookup(query)
            if hit:
                ids, prio, key = hit
                return self._finish(prompt, norm, ids, sd, _METHOD[prio], 1.0, key, side)
        for query, sd in attempts:
            fz = self._fuzzy_match(query)
            if fz:
                ids, score, key = fz
                return self._finish(prompt, norm, ids, sd, "fuzzy", score, key, side)
        sugg = self.suggest(prompt, k=3)
        msg = f"unknown term '{raw}'"
        if sugg:
            msg += "; did you mean: " + ", ".join(sugg) + "?"
        raise MedGroundInputError(msg)

    def _finish(self, prompt: str, norm: str, ids: list[str], side: str | None, method: str,
                score: float, key: str, asked_side: str | None = None) -> Resolution:
        ids = self._collapse(ids)
        if len(ids) > 1:
            names = ", ".join(f"{self._terms[i].name} ({i})" for i in ids[:6])
            raise MedGroundInputError(f"ambiguous term '{prompt.strip()}': could be {names}; be more specific")
        term = self._terms[ids[0]]
        terms, union = self._apply_side(prompt, term, side)
        return Resolution(prompt, norm, term, list(terms), union, side or asked_side, method, score, key)

    def resolve_many(self, prompt: str) -> list[Resolution]:
        """Resolve a list such as "liver, spleen and both kidneys" into one resolution per item."""
        try:
            return [self.resolve(prompt)]
        except MedGroundInputError:
            pass
        import re

        parts = [p for p in re.split(r",|;|\+|\band\b|&", prompt) if p.strip()]
        if len(parts) <= 1:
            return [self.resolve(prompt)]
        return [self.resolve(p) for p in parts]

    # ---------------------------------------------------------------- fuzzy matching
    def _fuzzy_match(self, query: str) -> tuple[list[str], float, str] | None:
        """Closest key within the typo budget; None when none or when it is ambiguous."""
        qlen = len(query)
        budget = _text.allowed_typos(len(query.replace(" ", "")))
        if budget == 0:
            return None
        best_d = budget + 1
        best: list[str] = []
        for key in self._key_list:
            if abs(len(key) - qlen) > budget:
                continue
            d = _text.levenshtein(query, key, max_dist=best_d if best_d <= budget else budget)
            if d < best_d:
                best_d, best = d, [key]
            elif d == best_d:
                best.append(key)
        # word-order-insensitive variant ("kidny left" ~ "left kidney")
        if best_d > budget:
            qb = _text.bag_key(query)
            for key in self._bags:
                if abs(len(key) - len(qb)) > budget:
                    continue
                d = _text.levenshtein(qb, key, max_dist=budget)
                if d < best_d:
                    best_d, best = d, [key]
                elif d == best_d:
                    best.append(key)
            if best_d > budget:
                return None
            ids = sorted({t for k in best for t, p in self._bags[k].items() if p == min(self._bags[k].values())})
        else:
            ids = sorted({t for k in best for t, p in self._keys[k].items() if p == min(self._keys[k].values())})
        # Every word must be a plausible typo of a word of the key ("heart and lung" is not "left lung").
        best = [k for k in best if self._tokens_align(query, k)]
        ids = [t for t in ids if any(t in self._keys.get(k, {}) or t in self._bags.get(k, {}) for k in best)]
        if not best or not ids:
            return None
        # Don't turn a typo into an abbreviation of some other structure.
        if all(self._keys.get(k, {}).get(t) == P_ABBREV for k in best for t in ids if k in self._keys):
            return None
        ids = self._collapse(ids)
        if len(ids) != 1:
            return None
        return ids, 1.0 - best_d / max(qlen, 1), best[0]

    @staticmethod
    def _tokens_align(query: str, key: str) -> bool:
        """Each query word is within its own typo budget of a distinct word of the key (any order)."""
        qt = [t for t in query.split() if t not in _text.BAG_IGNORE] or query.split()
        kt = [t for t in key.split() if t not in _text.BAG_IGNORE] or key.split()
        if len(qt) != len(kt):
            return "".join(qt) == "".join(kt) or _text.levenshtein("".join(qt), "".join(kt)) <= 1
        free = list(kt)
        for q in qt:
            budget = _text.allowed_typos(len(q))
            match = next((k for k in free if _text.levenshtein(q, k, max_dist=budget) <= budget), None)
            if match is None:
                return False
            free.remove(match)
        return True

    def _token_sims(self, qtoks: list[str]) -> list[dict[str, float]]:
        """For each query token, similarity to every vocabulary token worth considering."""
        out = []
        for q in qtoks:
            sims: dict[str, float] = {}
            budget = _text.allowed_typos(len(q))
            for v in self._vocab:
                if v == q:
                    sims[v] = 1.0
                elif len(q) >= 3 and v.startswith(q):
                    sims[v] = 0.9 * (0.6 + 0.4 * len(q) / len(v))
                elif budget and abs(len(v) - len(q)) <= budget:
                    d = _text.levenshtein(q, v, max_dist=budget)
                    if d <= budget:
                        sims[v] = 1.0 - d / max(len(q), len(v))
            out.append(sims)
        return out

    def search(self, query: str, k: int = 10, kind: str | None = None,
               modality: str | None = None) -> list[tuple[Term, float]]:
        """Rank terms for a free-text query: exact and prefix matches, fuzzy token matches, definitions."""
        if not isinstance(query, str) or not query.strip():
            raise MedGroundInputError("empty search query")
        if kind is not None and kind not in KINDS:
            raise MedGroundInputError(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
        mod = None
        if modality is not None:
            mod = canonical_modality(modality)
            if mod is None:
                raise MedGroundInputError(f"unknown modality {modality!r}; use one of: {', '.join(MODALITIES)}")
        qtoks = _canon_sides(_text.tokens(query))
        if not qtoks:
            qtoks = _canon_sides(_text.tokens(query, strip_filler=False))
        qnorm = " ".join(qtoks)
        sims = self._token_sims([t for t in qtoks if t not in _text.BAG_IGNORE] or qtoks)
        scores: dict[str, float] = {}
        qchars = qnorm.replace(" ", "")
        for key in self._key_list:
            ktoks = self._key_tokens[key]
            if key == qnorm:
                s = 1.0
            else:
                cov_q = 0.0
                matched_k = set()
                for sm in sims:
                    best, arg = 0.0, None
                    for kt in ktoks:
                        v = sm.get(kt, 0.0)
                        if v > best:
                            best, arg = v, kt
                    cov_q += best
                    if arg is not None:
                        matched_k.add(arg)
                cov_q /= len(sims)
                cov_k = len(matched_k) / len(ktoks)
                s = 0.95 * cov_q * (0.7 + 0.3 * cov_k)
                if s < 0.3 and len(qtoks) == 1 and len(qchars) >= 6:  # run-together words
                    kc = key.replace(" ", "")
                    if abs(len(kc) - len(qchars)) <= 2:
                        sim = _text.similarity(qchars, kc)
                        if sim >= 0.75:
                            s = max(s, 0.8 * sim)
            if s <= 0:
                continue
            for tid, prio in self._keys[key].items():
                v = s - 0.02 * prio
                if v > scores.get(tid, 0.0):
                    scores[tid] = v
        qset = set(qtoks) - _text.BAG_IGNORE
        if qset:
            for tid, dt in self._def_tokens.items():
                hit = len(qset & dt)
                if hit:
                    v = 0.4 * hit / len(qset)
                    if v > scores.get(tid, 0.0):
                        scores[tid] = v
        ranked = []
        for tid, s in scores.items():
            t = self._terms[tid]
            if kind is not None and t.kind != kind:
                continue
            if mod is not None and mod not in t.modalities:
                continue
            ranked.append((t, round(min(s, 1.0), 4)))
        ranked.sort(key=lambda ts: (-ts[1], ts[0].laterality != "none", len(ts[0].name), ts[0].id))
        return ranked[: max(int(k), 0)]

    def suggest(self, prompt: str, k: int = 5) -> list[str]:
        """Names of the ``k`` terms closest to ``prompt`` (each resolves back to its term)."""
        try:
            res = self.search(prompt, k=k)
        except MedGroundInputError:
            return []
        if not res:  # nothing shares a token: fall back to whole-string similarity
            q = _text.normalize(prompt) or _text.basic_clean(prompt)
            sc = sorted(((_text.similarity(q, t.name.lower()), t.name) for t in self._terms.values()), reverse=True)
            return [n for _, n in sc[:k]]
        return [t.name for t, _ in res]


@functools.lru_cache(maxsize=1)
def _default() -> Ontology:
    return Ontology.from_dir(DATA_DIR)


@functools.lru_cache(maxsize=1)
def anatomy_extents() -> dict[str, float]:
    """Term id -> the shortest complete head-to-foot extent (mm) of the structure among the training patients'
    references (``data/extents.json``, written by ``benchmarks/anatomy_extents.py``); terms never seen whole are
    missing."""
    import json

    f = DATA_DIR / "extents.json"
    if not f.exists():
        return {}
    return {t: float(d["min_extent_mm"]) for t, d in json.loads(f.read_text())["terms"].items()}
